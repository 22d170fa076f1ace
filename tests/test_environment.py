"""environment.yml and pyproject.toml pin the same versions."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
CONDA_NAMES = {"torch": "pytorch"}


def _pyproject_pins() -> dict[str, str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        reqs += extra
    pins = {}
    for req in reqs:
        name, version = re.fullmatch(r"([A-Za-z0-9_.\-\[\]]+)==([^;\s]+)", req).groups()
        pins[CONDA_NAMES.get(name.lower(), name.lower())] = version
    return pins


def _conda_pins() -> dict[str, str]:
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    assert "conda-forge" in env["channels"]
    pins = {}
    for dep in env["dependencies"]:
        if isinstance(dep, str) and "=" in dep:
            name, version = dep.split("=", 1)
            pins[name.lower()] = version
    return pins


def test_every_pyproject_pin_is_in_environment_yml_with_the_same_version():
    conda = _conda_pins()
    assert conda.pop("python") == "3.11"
    for name, version in _pyproject_pins().items():
        assert conda.get(name) == version, f"{name}: pyproject {version}, conda {conda.get(name)}"


def test_environment_yml_pins_nothing_pyproject_does_not_except_jupyterlab():
    extra = set(_conda_pins()) - set(_pyproject_pins()) - {"python", "jupyterlab"}
    assert not extra
