"""The report renders in a real browser (headless Chromium): every image loads, page not blank."""

from __future__ import annotations

import re
import shutil
import subprocess

import matplotlib

matplotlib.use("Agg")

import matplotlib.image as mpimg  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from test_report import STEMS, example  # noqa: E402

BROWSER = next((b for b in ("chromium", "chromium-browser", "google-chrome")
                if shutil.which(b)), None)
pytestmark = pytest.mark.skipif(BROWSER is None, reason="chromium is not installed")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars", "--virtual-time-budget=10000")


def _chromium(tmp_path, *args: str) -> subprocess.CompletedProcess:
    profile = tmp_path / "profile"
    profile.mkdir(exist_ok=True)
    return subprocess.run([BROWSER, *FLAGS, f"--user-data-dir={profile}", *args],
                          capture_output=True, text=True, timeout=120, check=False)


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    return example(tmp_path_factory)[1]


def test_every_image_loads(report, tmp_path):
    url = (report / "index.html").resolve().as_uri()
    res = _chromium(tmp_path, "--dump-dom", url)
    assert res.returncode == 0, res.stderr[-2000:]
    body = re.search(r"<body[^>]*>", res.stdout)
    assert body, res.stdout[:2000]
    assert 'data-loaded="true"' in body.group(0), body.group(0)
    n = int(re.search(r'data-images="(\d+)"', body.group(0)).group(1))
    assert n == len(STEMS) + 1  # and the tensorization comparison of the run


def test_screenshot_is_not_blank(report, tmp_path):
    shot = tmp_path / "shot.png"
    url = (report / "index.html").resolve().as_uri()
    res = _chromium(tmp_path, f"--screenshot={shot}", "--window-size=1280,4000", url)
    assert shot.is_file(), res.stderr[-2000:]
    img = mpimg.imread(shot)[..., :3]
    assert img.shape[0] >= 3000 and img.shape[1] == 1280
    # many distinct colours and a real spread: text, tables and plots were drawn
    assert img.std() > 0.05
    assert len(np.unique((img[::7, ::7] * 255).astype(np.uint8).reshape(-1, 3), axis=0)) > 50


def test_the_answer_and_the_central_figure_fill_the_first_screen(report, tmp_path):
    url = (report / "index.html").resolve().as_uri()
    res = _chromium(tmp_path, "--window-size=1400,900", "--dump-dom", url)
    body = re.search(r"<body[^>]*>", res.stdout)
    assert body, res.stderr[-2000:]
    # the page area of a 1400×900 window: its width, the height less the browser's bars
    width, height = map(int, re.search(r'data-viewport="(\d+)x(\d+)"', body.group(0)).groups())
    assert width == 1400 and 700 <= height <= 900, body.group(0)
    visible = re.search(r'data-first-screen="([^"]*)"', body.group(0)).group(1).split()
    assert visible == ["headline", "fig-central"]  # both wholly inside, no scrolling
    shot = tmp_path / "first.png"
    _chromium(tmp_path, f"--screenshot={shot}", "--window-size=1400,900", url)
    img = mpimg.imread(shot)[..., :3]
    assert img.shape[:2] == (900, 1400)
    figure = img[450:850:5, 150:1250:5]  # where the central figure sits: a drawn plot
    assert len(np.unique((figure * 255).astype(np.uint8).reshape(-1, 3), axis=0)) > 50


def test_the_tensorization_report_loads_and_answers_on_its_first_screen(tmp_path):
    from test_report import _comparisons

    from corranalysis.report import build_tensorization_report, read_comparisons

    folder = _comparisons(tmp_path / "tensorize")
    report = build_tensorization_report(read_comparisons(folder), tmp_path / "report",
                                        source=folder)
    url = (report / "index.html").resolve().as_uri()
    res = _chromium(tmp_path, "--window-size=1400,900", "--dump-dom", url)
    body = re.search(r"<body[^>]*>", res.stdout)
    assert body, res.stderr[-2000:]
    assert 'data-loaded="true"' in body.group(0) and 'data-images="2"' in body.group(0)
    visible = re.search(r'data-first-screen="([^"]*)"', body.group(0)).group(1).split()
    assert visible == ["budgets", "headline"]
