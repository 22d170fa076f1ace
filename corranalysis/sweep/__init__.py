"""Sweeps: a grid of truncation trials evaluated on data, resumable and distributable.

``build_trials`` makes the grid, ``sweep`` evaluates it into the sweep dataset.
"""

from ._sweep import (
    PLAN_MODES,
    VARIABLES,
    CheckpointSource,
    ObjectSource,
    TrialSpec,
    build_trials,
    default_keeps,
    sweep,
)

__all__ = ["PLAN_MODES", "VARIABLES", "CheckpointSource", "ObjectSource", "TrialSpec",
           "build_trials", "default_keeps", "sweep"]
