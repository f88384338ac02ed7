r"""Polynomial tools for transfer functions: coefficient arrays, roots, poles, zeros, characteristics.

A polynomial is an array of coefficients, highest power first, on the last axis
(leading axes are a batch). Roots of degree ≤ 2 are in closed form and vectorised;
:func:`characteristics` reads ``ωₙ``, ``ξ`` and the regime off a denominator
(Wu's closed loops (13), (25) are first and second order).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["quadratic_roots", "poles", "zeros", "dc_gain", "characteristics"]


def _float(x):
    x = jnp.asarray(x)
    return x if jnp.issubdtype(x.dtype, jnp.inexact) else x.astype(jnp.result_type(float))


def _poly(*coeffs):
    """Stack broadcast coefficients along a new last axis."""
    cs = jnp.broadcast_arrays(*(_float(c) for c in coeffs))
    return jnp.stack(cs, axis=-1)


def _pad(p, n):
    p = _float(p)
    extra = n - p.shape[-1]
    if extra < 0:
        raise ValueError(f"polynomial of length {p.shape[-1]} longer than {n}")
    return jnp.concatenate([jnp.zeros(p.shape[:-1] + (extra,), p.dtype), p], axis=-1)


def quadratic_roots(a, b, c):
    """Both roots of ``a x² + b x + c`` (complex, vectorised), stably.

    Returns shape ``(..., 2)``: the ``+√Δ`` root first, then ``−√Δ``. Uses
    ``q = −(b + sign(b)√Δ)/2``, roots ``q/a`` and ``c/q``, to avoid cancellation.
    """
    return _quadratic_roots(_float(a), _float(b), _float(c))


@jax.jit
def _quadratic_roots(a, b, c):
    a, b, c = jnp.broadcast_arrays(a, b, c)
    ctype = jnp.result_type(a.dtype, jnp.complex64)
    sq = jnp.sqrt((b * b - 4 * a * c).astype(ctype))
    pos = b >= 0
    q = -(b + jnp.where(pos, sq, -sq)) / 2
    safe_q = jnp.where(q == 0, 1, q)
    big = q / a
    small = jnp.where(q == 0, 0, c / safe_q)
    # for b >= 0, q/a is the −√Δ root; for b < 0 it is the +√Δ root
    r_plus = jnp.where(pos, small, big)
    r_minus = jnp.where(pos, big, small)
    return jnp.stack([r_plus, r_minus], axis=-1)


def _trim_roots(p):
    """Roots of a (batched) polynomial of degree ≤ 2 in closed form, else numpy."""
    p = _float(p)
    n = p.shape[-1] - 1
    if n == 0:
        return jnp.zeros(p.shape[:-1] + (0,), jnp.result_type(p.dtype, jnp.complex64))
    if n == 1:
        r = -p[..., 1] / p[..., 0]
        return r[..., None].astype(jnp.result_type(p.dtype, jnp.complex64))
    if n == 2:
        return quadratic_roots(p[..., 0], p[..., 1], p[..., 2])
    flat = np.asarray(p).reshape(-1, n + 1)
    return jnp.asarray(np.stack([np.roots(row) for row in flat]).reshape(p.shape[:-1] + (n,)))


def poles(den):
    """Roots of ``den`` (degree ≤ 2 in closed form, vectorised; a zero leading coefficient
    is not allowed)."""
    return _trim_roots(den)


def zeros(num):
    """Roots of ``num`` after dropping leading zero coefficients (unbatched if it has any)."""
    num = _float(num)
    if num.ndim == 1:
        nz = np.flatnonzero(np.asarray(num) != 0)
        num = num[nz[0]:] if nz.size else num[-1:]
    return _trim_roots(num)


def dc_gain(num, den):
    """``H(0) = num[-1]/den[-1]`` (continuous time)."""
    return _float(num)[..., -1] / _float(den)[..., -1]


def characteristics(num, den, critical_tol: float = 1e-9):
    """Order, poles, zeros, DC gain, ``ωₙ``, ``ξ`` and regime of a 1st/2nd-order system.

    Second order: ``den ∝ s² + 2ξωₙ s + ωₙ²``. First order ``s + a``: ``ωₙ = |a|``,
    ``ξ = 1`` (python-control's ``damp`` convention). The regime (``'first-order'``,
    ``'underdamped'``, ``'critical'`` (``|ξ − 1| ≤ critical_tol``), ``'overdamped'``,
    ``'unstable'``) refers to the poles only; a zero (NAG) can still cause overshoot.
    """
    den = _float(den)
    n = den.shape[-1] - 1
    if n not in (1, 2):
        raise ValueError(f"characteristics: order {n} not supported (1 or 2)")
    if n == 1:
        a = den[..., 1] / den[..., 0]
        wn = jnp.abs(a)
        zeta = jnp.sign(a)
        regime = np.where(np.asarray(a) > 0, "first-order", "unstable")
    else:
        a1 = den[..., 1] / den[..., 0]
        a0 = den[..., 2] / den[..., 0]
        wn = jnp.sqrt(a0)
        zeta = a1 / (2 * wn)
        z = np.asarray(zeta)
        regime = np.where(
            ~(z > 0) | ~(np.asarray(a0) > 0),
            "unstable",
            np.where(np.abs(z - 1) <= critical_tol, "critical",
                     np.where(z < 1, "underdamped", "overdamped")),
        )
    regime = regime.item() if regime.ndim == 0 else regime
    return {
        "Order": n,
        "Poles": poles(den),
        "Zeros": zeros(num),
        "DCGain": dc_gain(num, den),
        "NaturalFrequency": wn,
        "DampingRatio": zeta,
        "Regime": regime,
    }

