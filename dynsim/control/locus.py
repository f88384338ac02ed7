r"""Root loci: the closed-loop poles of Wu's models (eqs. (13), (25), NAG) as a parameter runs."""
from __future__ import annotations

from typing import Callable

from dynsim.control.loops import closed_loop
from dynsim.control.polynomials import _float, poles

__all__ = ["closed_loop_poles", "root_locus"]


def closed_loop_poles(kind: str, K0, r, mu=None, alpha=None, g: Callable | None = None):
    """Closed-loop poles of Wu's model; pass an array for one parameter to get a root locus.

    Shape ``(..., 1)`` for SGD (``−K₀r``), ``(..., 2)`` otherwise (``+√Δ`` branch first).
    """
    return poles(closed_loop(kind, K0, r, mu, alpha, g)[1])


def root_locus(kind: str, sweep: str, values, **fixed):
    """Root locus of Wu's closed loop as ``sweep`` (a name among ``K0, r, mu, alpha``) runs
    over ``values``; other parameters from ``fixed``. Returns ``(values, poles)``.

    >>> v, p = root_locus("momentum", "r", [0.001, 0.1], K0=100.0, mu=0.9)
    >>> p.shape
    (2, 2)
    """
    if sweep not in ("K0", "r", "mu", "alpha"):
        raise ValueError(f"sweep={sweep!r} must be one of 'K0', 'r', 'mu', 'alpha'")
    args = dict(fixed)
    values = _float(values)
    args[sweep] = values
    return values, closed_loop_poles(kind, **args)

