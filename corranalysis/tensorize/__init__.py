"""Tensorization: replace ``nn.Linear`` / ``nn.Conv2d`` layers by trainable tensor networks.

Methods: ``mpo`` (tensor-train / MPO, Linear and Conv2d), ``tucker`` (Tucker-2 Conv2d),
``cp`` (CP Conv2d) and ``adtn`` (deep tensor-network weight generator, Qing et al.
2305.06058; Linear and Conv2d, optionally shared by several layers).

>>> new_model, table = apply(model, {"features.*": {"method": "tucker", "rank": 0.5}})
"""

from __future__ import annotations

from .adtn import ADTN, ADTNConv2d, ADTNLinear
from .apply import apply
from .checkpoint import load, save
from .cp import CPConv2d
from .mpo import MPOConv2d, MPOLinear
from .plan import plan
from .spec import APPLIES_TO, METHODS, load_spec, validate_spec
from .tucker import TuckerConv2d

__all__ = [
    "ADTN", "ADTNConv2d", "ADTNLinear", "APPLIES_TO", "CPConv2d", "METHODS", "MPOConv2d",
    "MPOLinear", "TuckerConv2d", "apply", "load", "load_spec", "plan", "save", "validate_spec",
]
