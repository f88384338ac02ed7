r"""The rate of a floored run: its step linearised at the floor point, by power iteration."""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from dynsim.metrics.batched import bcast, exponent, max_abs, pow2, scale, sum_sq
from dynsim.metrics.config import UNRESCALED_EVERY
from dynsim.metrics.scan import Kernel
from dynsim.numerics import fit_weights, hann_window_weights

__all__ = ["tangent_rate"]


def tangent_rate(kern: Kernel, zs, inner, count, theta0, disp, tangent_steps: int, window: float):
    r"""Rate of the optimizer's map *linearised at the run's final point*, by power iteration.

    A run that reached its floating-point floor sits within a few ulps of θ*, where the map
    is linear to within rounding: its Jacobian there (the companion matrix of the Hessian's
    eigenvalues, for the momentum maps) sets the asymptotic rate. The floor cuts the loss
    series before a nearly degenerate slow pair of modes separates (float32 resolves ~13
    e-folds of the distance at θ* = (1, 1)); the tangent has no floor. The very same step
    (user optax transformations included) is linearised once at the final point
    (``jax.linearize``) and the tangent is pushed through it, started from a displacement of
    the run taken 2–4 decades above the floor (its slowest modes, already separated by the
    run; ``θ₀ − θ_T`` if there is none), rescaled by exact powers of two every
    ``UNRESCALED_EVERY`` steps, and ``ln‖(dθ, du)‖`` is fitted with the late-window Hann
    taper, like ``rate``. Integer leaves of the rule's state (step counts) stay as they are.
    """
    P, dtype = kern.P, kern.dtype
    x, u = kern.unpack(zs)
    leaves, treedef = jax.tree.flatten(inner)
    is_f = [jnp.issubdtype(v.dtype, jnp.inexact) for v in leaves]

    fl = [v for v, f in zip(leaves, is_f) if f]
    rest = [v for v, f in zip(leaves, is_f) if not f]

    def step(xf, uf, fl_):
        """The step on (θ, u, the float leaves of the state): the function that is linearised."""
        it, jt = iter(fl_), iter(rest)
        inn = jax.tree.unflatten(treedef, [next(it) if f else next(jt) for f in is_f])
        x2, u2, inn2 = kern.step(xf, uf, inn, count)
        return x2, u2, [v for v, f in zip(jax.tree.leaves(inn2), is_f) if f]
    moved = max_abs(disp, P) > 0
    dx = jnp.where(bcast(moved, x), disp[0], theta0 - x)
    du = jnp.where(bcast(moved, u), disp[1], 0.0)
    tan = (dx, du, [jnp.zeros_like(v) for v in fl])
    every = UNRESCALED_EVERY
    n_rec = tangent_steps // every
    # Sampled at every step (an under-damped pair aliases into a sparser series): the
    # Hann-weighted slope is accumulated online as Σ C_t (y_t − y_{t−1}) (fit_weights).
    times = np.arange(tangent_steps + 1, dtype=np.float64)
    C = jnp.asarray(fit_weights(times, hann_window_weights(times, tangent_steps, window)).reshape(n_rec, every),
                    dtype)

    def norm_tangent(t, E):
        a = max_abs(t, P)
        ok = (a > 0) & (a < jnp.inf)
        e = jnp.where(ok, exponent(jnp.where(ok, a, 1.0)), 0)
        return jax.tree.map(lambda v: scale(v, pow2(-e, dtype)), t), E + e.astype(dtype)

    def log_norm(t, E):
        return E * math.log(2.0) + 0.5 * jnp.log(sum_sq(t, P))

    # The map linearised once at the floor point (jax.linearize): each tangent step then costs
    # only the linear part, not a primal step as well.
    lin = jax.linearize(step, x, u, fl)[1]

    def interval(c, Cj):
        (t, E, y_prev, acc) = c

        def one(cc, Ck):
            t, y_prev, acc = cc
            t = lin(*t)
            y = log_norm(t, E)
            return (t, y, acc + Ck * (y - y_prev)), None

        (t, y_prev, acc) = jax.lax.scan(one, (t, y_prev, acc), Cj)[0]
        t, E = norm_tangent(t, E)
        return (t, E, y_prev, acc), None

    tan, E0 = norm_tangent(tan, jnp.zeros((P,), dtype))
    zeros = jnp.zeros((P,), dtype)
    c = jax.lax.scan(interval, (tan, E0, log_norm(tan, E0), zeros), C)[0]
    slope = c[-1]  # per step: fit_weights is in the units of `times`
    return -slope
