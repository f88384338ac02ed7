"""Argument checks shared across the library: one copy of each, each raising one clear ValueError."""
from __future__ import annotations

import operator

import numpy as np

__all__ = ["check_int"]


def check_int(name: str, v, lo: int = 1) -> int:
    """``v`` as a Python int ``>= lo``; a ValueError naming ``name`` otherwise.

    For counts that fix loop lengths and array shapes, so they cannot be traced values.
    Bools are refused (``True`` is an int to Python, never a count to a user).

    >>> check_int("steps", np.int64(3), 1)
    3
    >>> check_int("steps", 2.0)
    Traceback (most recent call last):
    ...
    ValueError: steps=2.0 must be an integer >= 1 (it fixes a loop length or a shape)
    """
    if isinstance(v, (bool, np.bool_)):
        raise ValueError(f"{name}={v!r} must be an integer >= {lo}, not a bool")
    try:
        n = operator.index(v)
    except TypeError:
        raise ValueError(f"{name}={v!r} must be an integer >= {lo} (it fixes a loop length or a shape)") from None
    if n < lo:
        raise ValueError(f"{name}={v!r} must be an integer >= {lo}")
    return n
