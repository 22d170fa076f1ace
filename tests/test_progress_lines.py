"""Progress where output is not a terminal: a few plain lines with an estimate, no redraws."""

from __future__ import annotations

import io

import pytest
import torch
from test_retrain import learnable
from test_sweep import tiny_cnn
from tqdm.std import tqdm

from corranalysis import progress
from corranalysis.progress import PlainProgress, progress_bar
from corranalysis.runtime import Optim, fit


class Clock:
    """A clock that moves only when told."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture
def clock(monkeypatch) -> Clock:
    c = Clock()
    monkeypatch.setattr(progress, "_clock", c)
    return c


def test_piped_output_gets_at_most_one_line_per_step_and_per_interval(clock):
    out = io.StringIO()
    bar = progress_bar(total=1000, desc="sweep", unit="trial", file=out, every_s=30, step=0.1)
    assert isinstance(bar, PlainProgress)
    times = []
    for _ in range(1000):
        clock.now += 1.0  # 1,000 s in all
        before = out.getvalue().count("\n")
        bar.update(1)
        if out.getvalue().count("\n") > before:
            times.append(clock.now)
    bar.close()
    lines = out.getvalue().splitlines()
    assert "\r" not in out.getvalue()
    assert 2 <= len(lines) <= 11 and len(times) == len(lines) - 1
    assert all(b - a >= 30 for a, b in zip(times, times[1:], strict=False))
    assert lines[0] == "sweep: 100/1000 trial (10 %), 01:40 elapsed, about 15:00 left, 1 trial/s"
    assert lines[-1] == "sweep: done, 1000 trial in 16:40, 1 trial/s"


def test_slow_steps_print_every_step_with_time_per_step_and_the_postfix(clock):
    out = io.StringIO()
    with progress_bar(range(4), desc="train", unit="epoch", file=out) as bar:
        for _ in bar:
            clock.now += 120.0
            bar.set_postfix({"test_accuracy": "0.9100"})
    lines = out.getvalue().splitlines()
    assert lines == [
        "train: 1/4 epoch (25 %), 02:00 elapsed, about 06:00 left, 120 s/epoch "
        "· test_accuracy=0.9100",
        "train: 2/4 epoch (50 %), 04:00 elapsed, about 04:00 left, 120 s/epoch "
        "· test_accuracy=0.9100",
        "train: 3/4 epoch (75 %), 06:00 elapsed, about 02:00 left, 120 s/epoch "
        "· test_accuracy=0.9100",
        "train: done, 4 epoch in 08:00, 120 s/epoch · test_accuracy=0.9100",
    ]


def test_a_bar_that_does_not_stay_has_no_end_line_and_a_quick_one_prints_only_its_end(clock):
    out = io.StringIO()
    for _ in progress_bar(range(50), desc="epoch 1/3", leave=False, file=out):
        pass
    assert out.getvalue() == ""
    for _ in progress_bar(range(50), desc="quick", file=out):
        pass
    assert out.getvalue() == "quick: done, 50 it in 00:00\n"


def test_without_a_total_lines_come_by_time_and_sizes_are_scaled(clock):
    out = io.StringIO()
    bar = progress_bar(desc="download", unit="B", unit_scale=True, file=out, every_s=10)
    for _ in range(5):
        clock.now += 6.0
        bar.update(2_000_000)
    bar.close()
    lines = out.getvalue().splitlines()
    assert lines[0] == "download: 4.00MB, 00:12 elapsed, 333kB/s"
    assert lines[-1] == "download: done, 10.0MB in 00:30, 333kB/s"
    assert len(lines) == 3


def test_a_terminal_gets_tqdms_bar_and_disable_shows_nothing():
    assert isinstance(progress_bar(total=3, file=Terminal()), tqdm)
    out = io.StringIO()
    bar = progress_bar(range(3), total=3, disable=True, file=out)
    assert list(bar) == [0, 1, 2]
    bar.close()
    assert out.getvalue() == ""


def test_training_piped_into_a_log_writes_a_few_plain_lines(capsys):
    data = learnable(n=256)
    data = torch.utils.data.DataLoader(data.dataset, batch_size=2)  # 128 batches an epoch
    fit(tiny_cnn(), data, optim=Optim(lr=0.01), epochs=3, device="cpu", progress=True,
        desc="train")
    err = capsys.readouterr().err
    assert "\r" not in err
    lines = err.splitlines()
    assert lines and lines[-1].startswith("train: done, 3 epoch in ") and len(lines) <= 4
