r"""Small numerical tools shared by the library: one copy of each.

**Searches on the host** (:func:`golden_section`, :func:`bracket_walk`,
:func:`bisect_sign`, :func:`bracket_sign_change`): vectorised over independent problems
(numpy arrays of brackets), with the function evaluated on the host in batches, so the
expensive part (a compiled JAX program over all problems at once) runs once per
iteration. :func:`golden_section_traced` is the same golden-section step inside
``jax.lax.fori_loop``, for use under ``jit``/``vmap``.

**Least-squares slopes** (of ``log ‖x_t‖`` against ``t``, i.e. a decay rate):
:func:`slope_coefficients` is the one formula, ``slope = Σ c_i y_i`` with
``c_i = w_i (t_i − t̄)/Σ_j w_j (t_j − t̄)²``, for numpy (static weights) and JAX
(runtime weights, e.g. a mask) alike; :func:`fit_weights` rewrites it on increments
``y_j − y_{j−1}`` (no large ``y`` cancels); :func:`taper` and :func:`hann_window_weights`
give the weights. :func:`grid_argmin_parabolic` refines a grid minimum.

>>> import numpy as np
>>> x, fx = golden_section(lambda s: (s - np.array([1.0, 2.0])) ** 2, [0.0, 0.0], [3.0, 3.0], 1e-8)
>>> np.round(x, 6).tolist()
[1.0, 2.0]
>>> bisect_sign(lambda s: s - 0.25, np.array([0.0]), np.array([1.0]), rtol=0, atol=1e-10).round(8).tolist()
[0.25]
"""
from __future__ import annotations

import math

import numpy as np

__all__ = [
    "GOLDEN",
    "golden_section",
    "golden_section_traced",
    "bracket_walk",
    "bisect_sign",
    "bracket_sign_change",
    "grid_argmin_parabolic",
    "TAPERS",
    "taper",
    "slope_coefficients",
    "fit_weights",
    "hann_window_weights",
    "x64_enabled",
]

#: The inverse golden ratio (√5 − 1)/2.
GOLDEN = (math.sqrt(5.0) - 1.0) / 2.0


def _golden_step(f, state, where):
    """One golden-section step on ``(a, b, c, d, f(c), f(d))``; reuses the kept interior point."""
    a, b, c, d, fc, fd = state
    left = fc <= fd  # minimum in [a, d]
    a2 = where(left, a, c)
    b2 = where(left, d, b)
    new = where(left, b2 - GOLDEN * (b2 - a2), a2 + GOLDEN * (b2 - a2))
    fnew = f(new)
    c2 = where(left, new, d)
    fc2 = where(left, fnew, fd)
    d2 = where(left, c, new)
    fd2 = where(left, fc, fnew)
    return a2, b2, c2, d2, fc2, fd2


def golden_section(f, a, b, tol_abs, maxiter: int = 200):
    """Vectorised golden-section minimisation of ``f`` on brackets ``[a, b]``.

    ``f`` maps an array of points (one per problem) to their values. Each iteration
    costs one evaluation per problem (the kept interior point is reused); a problem
    whose bracket is below ``tol_abs`` is frozen. Returns ``(x, f(x))``: the better
    interior point, which lies within ``tol_abs`` of the minimiser of a unimodal ``f``.
    """
    a, b = np.array(a, float), np.array(b, float)
    c = b - GOLDEN * (b - a)
    d = a + GOLDEN * (b - a)
    state = (a, b, c, d, f(c), f(d))
    for _ in range(maxiter):
        if np.all(state[1] - state[0] <= tol_abs):
            break
        frozen = (state[1] - state[0]) <= tol_abs
        new = _golden_step(f, state, np.where)
        state = tuple(np.where(frozen, old, nw) for old, nw in zip(state, new))
    _, _, c, d, fc, fd = state
    better = fc <= fd
    return np.where(better, c, d), np.where(better, fc, fd)


def golden_section_traced(f, a, b, iters: int):
    """:func:`golden_section` for traced brackets: ``iters`` steps in ``jax.lax.fori_loop``.

    ``f`` maps points to values with JAX operations; ``a``, ``b`` may be tracers (use it
    under ``jit``/``vmap``). After ``n`` steps the bracket is ``GOLDEN**n`` of its
    width (80 steps: ~2e-17). Returns ``(x, f(x))``, the better interior point.

    >>> import jax.numpy as jnp
    >>> x, fx = golden_section_traced(lambda s: jnp.abs(s - 2.5), 2.0, 4.0, 60)
    >>> round(float(x), 5)
    2.5
    """
    import jax
    import jax.numpy as jnp

    a, b = jnp.asarray(a), jnp.asarray(b)
    c = b - GOLDEN * (b - a)
    d = a + GOLDEN * (b - a)
    state = jax.lax.fori_loop(0, int(iters), lambda _, st: _golden_step(f, st, jnp.where),
                              (a, b, c, d, f(c), f(d)))
    _, _, c, d, fc, fd = state
    better = fc <= fd
    return jnp.where(better, c, d), jnp.where(better, fc, fd)


def bracket_walk(f, grid, i0, max_steps: int | None = None):
    """Move each index downhill on ``grid`` until ``f`` at ``(i−1, i, i+1)`` brackets a minimum.

    Vectorised over problems; one new evaluation per problem and step. Returns the final
    indices and a flag for problems that ran into the grid edge.
    """
    n = len(grid)
    i = np.clip(np.asarray(i0), 1, n - 2)
    fl, fm, fr = f(grid[i - 1]), f(grid[i]), f(grid[i + 1])
    edge = np.zeros(i.shape, bool)
    for _ in range(max_steps or n):
        go_left = (fl < fm) & (fl <= fr) & ~edge
        go_right = (fr < fm) & (fr < fl) & ~edge
        if not np.any(go_left | go_right):
            break
        edge |= (go_left & (i - 1 < 1)) | (go_right & (i + 1 > n - 2))
        go_left &= ~edge
        go_right &= ~edge
        i_new = np.where(go_left, i - 1, np.where(go_right, i + 1, i))
        probe = np.where(go_left, i_new - 1, np.where(go_right, i_new + 1, i_new))
        fp = f(grid[probe])
        fl, fm, fr = (np.where(go_left, fp, np.where(go_right, fm, fl)),
                      np.where(go_left, fl, np.where(go_right, fr, fm)),
                      np.where(go_left, fm, np.where(go_right, fp, fr)))
        i = i_new
    return i, edge


def bisect_sign(f, lo, hi, rtol, atol, maxiter: int = 200):
    """Vectorised bisection for the sign change of ``f`` between ``lo`` and ``hi``.

    Only the sign of ``f > 0`` is used. Stops when every bracket is below
    ``rtol·|midpoint| + atol``; returns the midpoints.
    """
    lo, hi = np.array(lo, float), np.array(hi, float)
    flo = f(lo) > 0
    for _ in range(maxiter):
        if np.all(np.abs(hi - lo) <= rtol * np.abs(0.5 * (lo + hi)) + atol):
            break
        mid = 0.5 * (lo + hi)
        fm = f(mid) > 0
        same = fm == flo
        lo, hi = np.where(same, mid, lo), np.where(same, hi, mid)
    return 0.5 * (lo + hi)


def bracket_sign_change(f, x, width, max_doublings: int = 12):
    """Grow ``[x − w, x + w]`` until ``f(lo) < 0 < f(hi)``: the bracket for :func:`bisect_sign`.

    Vectorised over problems; a side that has the wrong sign moves out by the current
    width, which then doubles (at most ``max_doublings`` times). Used on a derivative,
    the bracket holds a minimum, smooth or a kink (where the derivative jumps from
    negative to positive without a zero). Returns ``(lo, hi, found)``.

    >>> lo, hi, ok = bracket_sign_change(lambda s: s - 1.0, np.array([0.0]), 0.1)
    >>> bool(lo[0] < 1.0 < hi[0]), bool(ok[0])
    (True, True)
    """
    x = np.asarray(x, dtype=float)
    w = np.full_like(x, width)
    lo, hi = x - w, x + w
    flo, fhi = np.asarray(f(lo)), np.asarray(f(hi))
    for _ in range(int(max_doublings)):
        need_lo, need_hi = ~(flo < 0), ~(fhi > 0)
        if not (need_lo.any() or need_hi.any()):
            break
        lo, hi = np.where(need_lo, lo - w, lo), np.where(need_hi, hi + w, hi)
        w = 2 * w
        if need_lo.any():
            flo = np.where(need_lo, np.asarray(f(lo)), flo)
        if need_hi.any():
            fhi = np.where(need_hi, np.asarray(f(hi)), fhi)
    return lo, hi, (flo < 0) & (fhi > 0)


def grid_argmin_parabolic(x, y):
    """Argmin of ``y`` along its last axis on the evenly spaced grid ``x``, refined by a parabola.

    The vertex of the parabola through the grid minimum and its two neighbours replaces
    the grid point when all three are finite, interior and convex. Returns
    ``(x_min, y_grid_min)`` per row; NaN where every ``y`` is infinite or NaN.

    >>> xs = np.linspace(0.0, 1.0, 11)
    >>> x_min, _ = grid_argmin_parabolic(xs, ((xs - 0.33) ** 2)[None])
    >>> round(float(x_min[0]), 12)
    0.33
    """
    xs = np.asarray(x)
    y = np.asarray(y)
    y = np.where(np.isfinite(y), y, np.inf)
    j = np.argmin(y, axis=-1)
    rows = np.arange(y.shape[0])
    x_min = xs[j].astype(float)
    y_min = y[rows, j]
    for r in rows:
        i = j[r]
        if 0 < i < len(xs) - 1 and np.all(np.isfinite(y[r, i - 1:i + 2])):
            y0, y1, y2 = y[r, i - 1:i + 2]
            den = y0 - 2 * y1 + y2
            if den > 0:
                x_min[r] = xs[i] + 0.5 * (xs[1] - xs[0]) * (y0 - y2) / den
    x_min = np.where(np.isfinite(y_min), x_min, np.nan)
    return x_min, y_min


# --------------------------------------------------------------------------- least-squares slopes

#: Weights of :func:`taper`: ordinary least squares, ``sin²`` (Hann) and ``sin⁴``.
TAPERS = ("none", "hann", "hann2")


def taper(n: int, kind: str = "hann") -> np.ndarray:
    r"""``n`` fit weights that vanish smoothly at both ends: ``sin^{2p}(π (i + ½)/n)``.

    ``kind``: ``"none"`` (ones), ``"hann"`` (``p = 1``) or ``"hann2"`` (``p = 2``).
    Half-sample offsets keep the end points' weights positive. A smooth taper suppresses
    the leakage of an oscillation of period ``P`` into a least-squares slope over a window
    ``W`` far below the ``O(P/W²)`` of uniform weights (by further powers of ``W/P``).

    >>> taper(4).round(3).tolist()
    [0.146, 0.854, 0.854, 0.146]
    """
    if kind not in TAPERS:
        raise ValueError(f"taper={kind!r} is unknown; choose one of {', '.join(TAPERS)}")
    if kind == "none":
        return np.ones(n)
    h = np.sin(np.pi * (np.arange(n) + 0.5) / n) ** 2
    return h if kind == "hann" else h * h


def slope_coefficients(times, weights):
    r"""``c`` with ``Σ_i c_i y_i`` = the weighted least-squares slope of ``y`` against ``times``.

    .. math:: c_i = \frac{w_i (t_i - \bar t)}{\sum_j w_j (t_j - \bar t)^2},\qquad
              \bar t = \frac{\sum_j w_j t_j}{\sum_j w_j},\qquad \sum_i c_i = 0 .

    Along the last axis; numpy arrays give numpy, JAX arrays (e.g. a runtime 0/1 mask as
    ``weights``) give JAX. NaN where fewer than two distinct times carry weight.

    >>> t = np.arange(4.0)
    >>> float(np.sum(slope_coefficients(t, np.ones(4)) * (2 * t + 1)))
    2.0
    """
    tbar = (weights * times).sum(-1, keepdims=True) / weights.sum(-1, keepdims=True)
    return weights * (times - tbar) / (weights * (times - tbar) ** 2).sum(-1, keepdims=True)


def fit_weights(times: np.ndarray, weights: np.ndarray) -> np.ndarray:
    r"""Coefficients ``C_j`` with ``slope = Σ_{j≥1} C_j (y_j − y_{j−1})`` (weighted least squares).

    The weighted LS slope is ``Σ c_j y_j`` (:func:`slope_coefficients`) with ``Σ c_j = 0``;
    summation by parts gives ``C_j = Σ_{i≥j} c_i``. Written on increments, the slope is a
    sum of small, well-scaled terms (no large ``y_j`` cancels). float64.

    >>> t = np.arange(5.0); C = fit_weights(t, np.ones(5))
    >>> round(float(np.sum(C * np.diff(3 * t))), 12)   # slope of y = 3t
    3.0
    """
    c = slope_coefficients(np.asarray(times, dtype=np.float64), np.asarray(weights, dtype=np.float64))
    return np.cumsum(c[::-1])[::-1][1:]


def hann_window_weights(times: np.ndarray, steps: int, window: float) -> np.ndarray:
    r"""Hann :func:`taper` over the ``times`` in the last ``window`` fraction of a ``steps``-step run.

    The ``n`` times inside the window get ``sin²(π (i + ½)/n)``, ``i = 0 … n−1``; the
    others get 0 (a single time inside gets 1).

    >>> hann_window_weights(np.arange(0.0, 9.0, 2.0), 8, 0.5).round(3).tolist()
    [0.0, 0.0, 0.25, 1.0, 0.25]
    """
    start = steps * (1.0 - window)
    inside = times >= start - 1e-9
    ti = times[inside]
    h = np.zeros_like(times)
    h[inside] = taper(len(ti), "hann") if ti[-1] - ti[0] > 0 else 1.0
    return h


def x64_enabled() -> bool:
    """Whether JAX's ``jax_enable_x64`` is on now (inside a ``jax.enable_x64`` context too)."""
    import jax

    # jax's Config holds its flags as attributes set at run time, which mypy cannot see
    return bool(jax.config.jax_enable_x64)  # type: ignore[attr-defined]
