"""Errors raised for bad user input.

Every user mistake (a missing file, an unknown layer or cut, an impossible keep
spec, NaN weights, ...) raises :class:`InputError` with one message naming the
input and what would be right. The CLI turns it into a red line and exit code 2.
"""

from __future__ import annotations

from collections.abc import Sequence


class InputError(ValueError):
    """Bad input from the user: the message names the input and what would be right."""


def check_opt(name: str, value: object, valid: Sequence[str]) -> str:
    """``value`` if it is one of ``valid``; else InputError naming ``name`` and the valid options.

    The one checker of string options (as quimb's ``check_opt``).
    """
    if not isinstance(value, str) or value not in valid:
        raise InputError(f"{name} {value!r} is unknown; valid: {', '.join(valid)}")
    return value
