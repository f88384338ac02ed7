r"""The least-squares fits of ``y = ln‖x‖`` and the floating-point floor of unrescaled runs.

:func:`window_slope` is the weighted slope (Hann-tapered late window, or uniform); and
:func:`series_fit` finds where an unrescaled run reached its floor and fits before it.
"""
from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np

__all__ = ["FLOOR_MARGIN", "DISP_MARGIN", "window_slope", "series_fit"]

# A flat tail: y (½ ln of the loss gap, or ln of the distance) fell by less than half of what
# the rate fitted before it predicts. The floor starts where y first came within
# FLOOR_MARGIN of the tail's upper envelope (a factor 10 in distance, 100 in the loss gap:
# there the floor's rounding moves y by < 0.5%); the fit ends at the checkpoint before.
FLOOR_MARGIN = math.log(10.0)
DISP_MARGIN = 2 * math.log(10.0)


def window_slope(ys, valid, times, j_end, steps: int, window: float | None):
    """Weighted least-squares slope of ``ys`` (n, P) against ``t`` per point, ending at ``j_end``.

    ``window=None``: uniform weights over ``[0, t_end]`` (``timescale``); else the Hann
    taper over the times in ``[t_end(1 − window), t_end]``, exactly
    :func:`dynsim.numerics.hann_window_weights` with ``steps = t_end``. Masked points get
    weight 0; fewer than 3 weighted points give NaN.
    """
    n, _ = ys.shape
    dtype = ys.dtype
    t = jnp.asarray(times, dtype)[:, None]
    idx = jnp.arange(n)[:, None]
    t_end = jnp.take(jnp.asarray(times, dtype), j_end)[None, :]
    upto = idx <= j_end[None, :]
    if window is None:
        w = upto.astype(dtype)
    else:
        inside = upto & (t >= t_end * (1.0 - window) - 1e-9)
        n_in = jnp.sum(inside, axis=0)
        first = jnp.argmax(inside, axis=0)
        span = t_end[0] - jnp.take(jnp.asarray(times, dtype), first)
        rank = (idx - first[None, :]).astype(dtype)
        h = jnp.sin(jnp.pi * (rank + 0.5) / jnp.maximum(n_in, 1)[None, :].astype(dtype)) ** 2
        w = jnp.where(inside, jnp.where((span > 0)[None, :], h, 1.0), 0.0).astype(dtype)
    w = jnp.where(valid, w, 0.0)
    y = jnp.where(valid, ys, 0.0)
    tau = t / steps
    s0, s1, s2 = jnp.sum(w, 0), jnp.sum(w * tau, 0), jnp.sum(w * tau * tau, 0)
    sy, sty = jnp.sum(w * y, 0), jnp.sum(w * tau * y, 0)
    den = s0 * s2 - s1 * s1
    num = s0 * sty - s1 * sy
    good = (den > 1e-12 * s0 * s0) & (jnp.sum(w > 0, 0) >= 3)
    return jnp.where(good, num / jnp.where(good, den, 1.0), jnp.nan) / steps


def series_fit(ys, times, steps: int, window: float):
    r"""The unrescaled fits, cut at the floating-point floor.

    Returns ``(rate slope, T slope, floored, j_end, tail envelope, stalled)`` per point.

    ``ys`` (n, P): ``y − y_init`` at the fit checkpoints, NaN where masked. Near a
    minimiser θ* ≠ 0 the iterate stops moving at a few ulps of θ*, so ``y`` stops falling
    at a floor (it does not underflow); fitting through it reads "slow". The floor is found
    from ``y`` alone: the tail (last 1/16 of the checkpoints) is *flat* when its upper
    envelope fell, against the block before it, by less than half of what the rate fitted
    up to the floor's start predicts; the floor then starts at the first checkpoint within
    :data:`FLOOR_MARGIN` of the tail's envelope. Upper envelopes ignore the downward
    spikes of oscillations (zero crossings). A run whose tail has no usable point (exact
    zeros, the subnormal range) ends at its last usable checkpoint. Floored runs are
    fitted over ``[0, t_end]`` and the late window of it; the others over the whole run,
    exactly as before.
    """
    n = ys.shape[0]
    valid = jnp.isfinite(ys)
    idx = jnp.arange(n)[:, None]
    m = max(2, -(-(n - 1) // 16))
    env = jnp.where(valid, ys, -jnp.inf)
    tail = jnp.max(env[n - m:], axis=0)
    prev = jnp.max(env[max(0, n - 2 * m): n - m], axis=0) if n >= m + 1 else tail
    tail_ok = tail > -jnp.inf
    last_valid = jnp.max(jnp.where(valid, idx, -1), axis=0)
    near = jnp.argmax(valid & (ys <= tail[None, :] + FLOOR_MARGIN), axis=0)
    j_cand = jnp.where(tail_ok, jnp.maximum(near - 1, 0), jnp.maximum(last_valid, 0))
    s_cand = window_slope(ys, valid, times, j_cand, steps, window)
    gap = float(np.mean(times[n - m:]) - np.mean(times[max(0, n - 2 * m): n - m])) if n >= m + 1 else 0.0
    expected = jnp.where(jnp.isfinite(s_cand) & (s_cand < 0), -s_cand * gap, 2 * FLOOR_MARGIN)
    flat = (prev - tail) < 0.5 * expected
    # A floor lies far below the start: at least 2·margin (a factor 100 in distance) and
    # √eps (¼ ln eps: the stagnation floors, ulp(θ*)/(ηλ), lie far lower). A run that barely
    # moved, or that slows down in a nonlinear valley far above the floor, is fitted whole.
    fell = tail < min(-2 * FLOOR_MARGIN, 0.25 * math.log(float(jnp.finfo(ys.dtype).eps)))
    floored = jnp.where(tail_ok, (j_cand < n - m) & flat & fell, last_valid >= 0)
    j_end = jnp.where(floored, j_cand, n - 1)
    s_rate = window_slope(ys, valid, times, j_end, steps, window)
    s_T = window_slope(ys, valid, times, j_end, steps, None)
    # Stopped decreasing although the run as a whole fell: the tail fell by less than 2% of
    # what the whole-run slope predicts (a run slowing down in a valley still falls by more).
    s_all = window_slope(ys, valid, times, jnp.full_like(j_end, n - 1), steps, None)
    stalled = tail_ok & (s_all < 0) & ((prev - tail) < 0.02 * -s_all * gap)
    return s_rate, s_T, floored, j_end, tail, stalled


# --------------------------------------------------------------------------- the kernel's pieces
