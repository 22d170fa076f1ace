"""Shared fixtures: small real models and a CLI runner."""

from __future__ import annotations

import os

import pytest
import torch
from torch import nn

os.environ.setdefault("MPLBACKEND", "Agg")
torch.set_num_threads(1)


@pytest.fixture
def small_cnn() -> nn.Module:
    """A small CNN with a conv, a grouped conv, a 1x1 conv and a linear head."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, groups=2, stride=2),
        nn.Conv2d(8, 16, 1),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(16, 10),
    )


@pytest.fixture
def run_cli(capsys):
    """Run ``corranalysis ARGS`` in-process; return (exit code, stdout + stderr)."""
    from corranalysis.cli import main

    def run(*args: str) -> tuple[int, str]:
        try:
            main([str(a) for a in args])
            code = 0
        except SystemExit as exc:
            code = int(exc.code or 0)
        captured = capsys.readouterr()
        return code, captured.out + captured.err

    return run
