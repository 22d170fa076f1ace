"""The tensorization SPEC: layer name or glob -> method and settings; validated before any work.

```yaml
classifier.0: {method: adtn, depth: 2}
features.3: {method: svd, compression: 5}       # plain truncation kept factorised (best cut)
"features.*": {method: tucker, rank: 0.5}      # rank: int, fraction of full rank, or [r_out, r_in]
conv2: {method: mpo, bond_dim: 8, factors: {in: [4, 8], out: [8, 8]}}
conv3: {method: cp, compression: 5}             # or a target compression ratio instead of a rank
```
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from ..errors import InputError
from ..io import read_yaml
from .factorized import CONV_CUTS, LINEAR_CUTS

SVD_CUTS = (*LINEAR_CUTS, *CONV_CUTS)

METHODS = ("svd", "mpo", "tucker", "cp", "adtn")
APPLIES_TO = {"Linear": ("svd", "mpo", "adtn"), "Conv2d": ("svd", "mpo", "tucker", "cp", "adtn")}
KEYS = {
    "svd": {"rank", "compression", "cut"},
    "mpo": {"bond_dim", "compression", "factors", "sites"},
    "tucker": {"rank", "compression"},
    "cp": {"rank", "compression", "n_iter_max"},
    "adtn": {"depth", "qubits", "share", "nonlinearity", "fit_steps", "fit_lr", "seed",
             "init_scale"},
}
DEFAULTS = {
    "svd": {"cut": "best"},
    "mpo": {"sites": 3},
    "tucker": {},
    "cp": {"n_iter_max": 200},
    "adtn": {"depth": 2, "nonlinearity": "tanh", "fit_steps": 0, "fit_lr": 0.02, "seed": 0,
             "init_scale": "rms"},
}


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _rank_like(where: str, key: str, value: Any, pair: bool = False) -> None:
    ok_frac = isinstance(value, float) and 0.0 < value <= 1.0
    ok_int = _is_int(value) and value >= 1
    ok_pair = pair and isinstance(value, list) and len(value) == 2 and all(
        _is_int(v) and v >= 1 for v in value
    )
    if not (ok_frac or ok_int or ok_pair):
        extra = ", or a pair [r_out, r_in]" if pair else ""
        raise InputError(
            f"spec {where}: {key}={value!r} must be an integer ≥ 1 or a fraction in (0, 1]{extra}"
        )


def _check_entry(pattern: str, entry: Any) -> dict[str, Any]:
    where = f"entry {pattern!r}"
    if not isinstance(pattern, str) or not pattern:
        raise InputError(f"spec key {pattern!r}: must be a layer name or glob (a string)")
    if not isinstance(entry, Mapping):
        raise InputError(f"spec {where}: must be a mapping like {{method: tucker, rank: 0.5}}")
    method = entry.get("method")
    if method not in METHODS:
        raise InputError(f"spec {where}: method {method!r} is unknown; use one of {METHODS}")
    unknown = set(entry) - KEYS[method] - {"method"}
    if unknown:
        raise InputError(
            f"spec {where}: unknown setting(s) {sorted(unknown)} for {method}; "
            f"valid: {sorted(KEYS[method])}"
        )
    out = {"method": method, **DEFAULTS[method], **dict(entry)}
    if method in ("svd", "mpo", "tucker", "cp"):
        rank_key = "bond_dim" if method == "mpo" else "rank"
        given = [k for k in (rank_key, "compression") if k in out]
        if len(given) != 1:
            raise InputError(f"spec {where}: give exactly one of {rank_key} or compression")
        if rank_key in out:
            _rank_like(where, rank_key, out[rank_key], pair=method == "tucker")
        else:
            c = out["compression"]
            if isinstance(c, bool) or not isinstance(c, (int, float)) or c <= 1:
                raise InputError(f"spec {where}: compression={c!r} must be a number > 1")
    if method == "svd" and out["cut"] != "best" and out["cut"] not in SVD_CUTS:
        raise InputError(f"spec {where}: cut={out['cut']!r}; use best or one of "
                         f"{', '.join(SVD_CUTS)}")
    if method == "mpo":
        if not _is_int(out["sites"]) or out["sites"] < 1:
            raise InputError(f"spec {where}: sites={out['sites']!r} must be an integer ≥ 1")
        if "factors" in out:
            f = out["factors"]
            good = (
                isinstance(f, Mapping) and set(f) == {"in", "out"}
                and all(isinstance(f[k], list) and f[k] for k in ("in", "out"))
                and all(_is_int(v) and v >= 1 for k in ("in", "out") for v in f[k])
                and len(f["in"]) == len(f["out"])
            )
            if not good:
                raise InputError(
                    f"spec {where}: factors={f!r} must be {{in: [..], out: [..]}}, "
                    "lists of positive integers of the same length"
                )
            out["factors"] = {"in": list(f["in"]), "out": list(f["out"])}
    if method == "cp" and (not _is_int(out["n_iter_max"]) or out["n_iter_max"] < 1):
        raise InputError(f"spec {where}: n_iter_max must be an integer ≥ 1")
    if method == "adtn":
        for key, low in (("depth", 1), ("fit_steps", 0), ("seed", 0)):
            if not _is_int(out[key]) or out[key] < low:
                raise InputError(f"spec {where}: {key}={out[key]!r} must be an integer ≥ {low}")
        if "qubits" in out and (not _is_int(out["qubits"]) or out["qubits"] < 2):
            raise InputError(f"spec {where}: qubits={out['qubits']!r} must be an integer ≥ 2")
        lr = out["fit_lr"]
        if isinstance(lr, bool) or not isinstance(lr, (int, float)) or lr <= 0:
            raise InputError(f"spec {where}: fit_lr={lr!r} must be a number > 0")
        if out["nonlinearity"] not in ("tanh", "relu", "none"):
            raise InputError(
                f"spec {where}: nonlinearity={out['nonlinearity']!r}; use tanh, relu or none"
            )
        if out["init_scale"] not in ("rms", "lstsq"):
            raise InputError(
                f"spec {where}: init_scale={out['init_scale']!r}; use rms (the trained weights' "
                "norm) or lstsq (the least-squares multiple)"
            )
        if "share" in out and not isinstance(out["share"], str):
            raise InputError(f"spec {where}: share={out['share']!r} must be a group name (string)")
    return out


def validate_spec(spec: Any) -> dict[str, dict[str, Any]]:
    """Check a spec mapping, fill in defaults; :class:`InputError` on the first problem."""
    if not isinstance(spec, Mapping) or not spec:
        raise InputError(
            "spec: must be a non-empty mapping of layer name/glob -> {method: ..., ...}"
        )
    return {str(k): _check_entry(k, v) for k, v in spec.items()}


def load_spec(path: str | os.PathLike) -> dict[str, dict[str, Any]]:
    """Read and validate a SPEC.yaml file."""
    data = read_yaml(path, "spec file")
    try:
        return validate_spec(data)
    except InputError as exc:
        raise InputError(f"spec file {str(path)!r}: {exc}") from exc
