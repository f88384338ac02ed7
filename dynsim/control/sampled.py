r"""The super-accelerated map as a sampled feedback loop in the z-domain (Nakerst eq. (5)).

Open loop ``G(z) = kη((1+σ)z − σ)/((z−1)(z−g))``, the closed loops to θ and to the
look-ahead point, the companion matrix and its poles, and the discrete step response
of any ``num(z)/den(z)``.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from dynsim import analysis
from dynsim.control.loops import feedback
from dynsim.control.polynomials import _float, _poly, poles
from dynsim.control.responses import _normalise

__all__ = ["sa_open_loop_z", "sa_closed_loop_z", "sa_companion", "sa_poles_z", "discrete_step_response"]


def sa_open_loop_z(k_eta, momentum, sigma):
    """Open loop ``G(z) = kη((1+σ)z − σ)/((z−1)(z−g))`` of the SA map (loop gain kη)."""
    k_eta, g, s = jnp.broadcast_arrays(_float(k_eta), _float(momentum), _float(sigma))
    num = _poly(k_eta * (1 + s), -k_eta * s)
    den = _poly(jnp.ones_like(g), -(1 + g), g)
    return num, den


def sa_closed_loop_z(k_eta, momentum, sigma, output: str = "theta"):
    """Closed loop of the SA map from the reference ``w`` to ``θ`` (default) or the look-ahead point.

    ``output='theta'``: ``kη z/(z² − (1+b−kη)z + b)``; ``output='lookahead'``:
    ``G/(1+G)`` with :func:`sa_open_loop_z`. Both have DC gain 1 and the same poles.
    """
    if output == "lookahead":
        return feedback(*sa_open_loop_z(k_eta, momentum, sigma))
    if output != "theta":
        raise ValueError(f"output={output!r} must be 'theta' or 'lookahead'")
    k_eta, g, s = jnp.broadcast_arrays(_float(k_eta), _float(momentum), _float(sigma))
    b = g - k_eta * s
    return _poly(jnp.zeros_like(b), k_eta, jnp.zeros_like(b)), _poly(jnp.ones_like(b), -(1 + b - k_eta), b)


def sa_companion(k_eta, momentum, sigma):
    """Companion matrix ``[[1−kη, b], [−kη, b]]`` of the map on ``(θ_i, m_{i−1})``.

    The same matrix as :func:`dynsim.analysis.companion_matrix`.
    """
    return analysis.companion_matrix(k_eta, momentum, sigma)


def sa_poles_z(k_eta, momentum, sigma):
    """Closed-loop poles of the SA loop = eigenvalues of :func:`sa_companion`, shape ``(..., 2)``."""
    return poles(sa_closed_loop_z(k_eta, momentum, sigma)[1])


def discrete_step_response(num, den, steps: int):
    """Unit-step response ``y_0 … y_steps`` of ``num(z)/den(z)`` (``lax.scan``, transposed direct form II).

    Same convention as ``scipy.signal.lfilter`` with both polynomials padded to equal
    length. Single system; vmap for batches.
    """
    num, den, n = _normalise(num, den)
    if num.ndim != 1:
        raise ValueError("discrete_step_response takes one system; vmap for batches")
    b, a = num, den
    if n == 0:
        return b[0] * jnp.ones(steps + 1, b.dtype)

    def body(zst, _):
        y = b[0] + zst[0]
        new = b[1:] - a[1:] * y + jnp.concatenate([zst[1:], jnp.zeros(1, zst.dtype)])
        return new, y

    _, ys = jax.lax.scan(body, jnp.zeros(n, b.dtype), None, length=steps + 1)
    return ys
