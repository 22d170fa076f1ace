"""Errors raised for bad user input.

Every user mistake (a missing file, an unknown layer or cut, an impossible keep
spec, NaN weights, ...) raises :class:`InputError` with one message naming the
input and what would be right. The CLI turns it into a red line and exit code 2.
"""

from __future__ import annotations


class InputError(ValueError):
    """Bad input from the user: the message names the input and what would be right."""


def check(condition: bool, message: str) -> None:
    """Raise :class:`InputError` with ``message`` unless ``condition`` holds."""
    if not condition:
        raise InputError(message)
