r"""Wu's transfer functions: the open loops of SGD, momentum and NAG, and unity feedback.

SGD ``K₀r/s`` (Wu eq. (12)), momentum ``K₀r/(g s² + s)`` (eq. (24)) and NAG
``(K₀rg s + K₀αr)/(g s² + s)`` (eq. (42)); :func:`closed_loop` gives their closed loops
(eqs. (13), (25) and the NAG loop derived in :mod:`dynsim.control`).
"""
from __future__ import annotations

from typing import Callable

import jax.numpy as jnp

from dynsim.control.polynomials import _float, _pad, _poly

__all__ = ["KINDS", "sgd_open_loop", "momentum_open_loop", "nag_open_loop", "open_loop", "feedback", "closed_loop"]

KINDS = ("sgd", "momentum", "nag")


def _g(mu, g: Callable | None):
    return _float(mu) if g is None else _float(g(mu))


def sgd_open_loop(K0, r):
    """SGD as an integrator with gain, ``G(s) = K₀r/s`` (Wu eq. (12))."""
    k = _float(K0) * _float(r)
    return _poly(k), _poly(jnp.ones_like(k), jnp.zeros_like(k))


def momentum_open_loop(K0, r, mu, g: Callable | None = None):
    """Momentum, ``G(s) = K₀r/(g(μ)s² + s)`` (Wu eq. (24)): SGD in series with a lag ``1/(g s + 1)``."""
    k = _float(K0) * _float(r)
    gm = _g(mu, g)
    k, gm = jnp.broadcast_arrays(k, gm)
    return _poly(k), _poly(gm, jnp.ones_like(gm), jnp.zeros_like(gm))


def nag_open_loop(K0, r, mu, alpha, g: Callable | None = None):
    """NAG, ``G(s) = (K₀r g(μ) s + K₀αr)/(g(μ)s² + s)`` (Wu eq. (42)): momentum plus a zero at ``−α/g``."""
    k = _float(K0) * _float(r)
    gm = _g(mu, g)
    k, gm, a = jnp.broadcast_arrays(k, gm, _float(alpha))
    return _poly(k * gm, k * a), _poly(gm, jnp.ones_like(gm), jnp.zeros_like(gm))


def open_loop(kind: str, K0, r, mu=None, alpha=None, g: Callable | None = None):
    """``(num, den)`` of Wu's open loop ``kind`` in ``('sgd', 'momentum', 'nag')``."""
    if kind == "sgd":
        return sgd_open_loop(K0, r)
    if kind == "momentum":
        if mu is None:
            raise ValueError("open_loop('momentum', ...) needs mu")
        return momentum_open_loop(K0, r, mu, g)
    if kind == "nag":
        if mu is None or alpha is None:
            raise ValueError("open_loop('nag', ...) needs mu and alpha")
        return nag_open_loop(K0, r, mu, alpha, g)
    raise ValueError(f"kind={kind!r} must be one of {KINDS}")


def feedback(num, den):
    """Unity negative feedback ``G/(1+G)``: ``(num, den + num)`` (num left-padded). Works in s or z."""
    num, den = _float(num), _float(den)
    n = max(num.shape[-1], den.shape[-1])
    num_p, den_p = _pad(num, n), _pad(den, n)
    num_p, den_p = jnp.broadcast_arrays(num_p, den_p)
    return num_p, den_p + num_p


def closed_loop(kind: str, K0, r, mu=None, alpha=None, g: Callable | None = None):
    """Closed loop ``G/(1+G)`` of Wu's model ``kind`` (eqs. (13), (25), and NAG derived in :mod:`dynsim.control`).

    Leading zero coefficients of the numerator are kept so ``num`` and ``den`` have the
    same length.
    """
    return feedback(*open_loop(kind, K0, r, mu, alpha, g))

