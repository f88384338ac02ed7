r"""Attractors and rates of optimizer maps beyond one dimension.

Three groups of helpers, all vectorised (``jnp``; leading batch axes allowed):

**Orbit classification.** A trajectory ``θ`` of shape ``(..., T, D)`` (time, then
parameters; pass ``θ[..., None]`` for scalars) settles, after a transient, into one
of :data:`CLASSES`:

* ``minimum`` — the tail stays within ``min_tol`` of the known minimiser;
* ``fixed_point`` — period 1 away from the minimiser (another critical point);
* ``cycle`` — a period-``k`` orbit, ``2 ≤ k ≤ max_period``, away from the minimiser:
  ``‖θ_{t+k} − θ_t‖ ≤ tol`` on the whole tail window while no shorter period fits
  (for ``k = 2``: ``‖θ_{t+2} − θ_t‖`` small, ``‖θ_{t+1} − θ_t‖`` not). These are the
  spurious attractors of Nakerst et al. §3.1 (Fig. 3c, σ = 7);
* ``diverged`` — a non-finite value in the tail;
* ``unsettled`` — none of the above (still moving, quasi-periodic or chaotic).

:func:`refine_cycle` polishes a cycle point with Newton's method on ``F^k(x) = x`` and
:func:`floquet_multipliers` gives the eigenvalues of the Jacobian of ``F^k`` there: all
inside the unit circle means the cycle is a genuine attractor, not a slow transient.

**Rates from trajectories.** :func:`log_slope` (masked least-squares slope of
``log y``) and :func:`envelope_decay` (Nakerst §5.1: fit ``|θ| ∝ e^{−t/T}``,
"averaging over the oscillations" by fitting the upper envelope).

**Optimal σ on a spectrum** (should move to :mod:`dynsim.analysis`). On an N-dim
quadratic the asymptotic rate of the super-accelerated map is the worst mode's,
``R(σ) = max_i ρ(k_i η, g, σ)``. Each ``ρ_i`` decreases in σ while mode ``i`` is
under-damped (``ρ = √(g − k_iησ)``) and increases once it is over-damped, so ``R`` is
quasi-convex and :func:`optimal_sigma_spectrum` finds its minimiser by a dense grid
and golden-section refinement. :func:`two_mode_optimal_sigma` is the closed form for
two modes: the optimum is a critical point ``σ*_i`` or the σ where one mode's
under-damped rate ``√(g − uσ)`` equals the other's over-damped rate, a cubic in ρ.
At ``σ = 0`` every under-damped mode has ``ρ = √g`` and every over-damped one
``ρ > √g``; hence (:func:`superacceleration_helps`) **σ > 0 beats heavy ball on
the worst mode iff** ``k_min η > (1 − √g)²`` — the 1-D threshold of Nakerst §2.4
applied to the flattest direction.
"""
from __future__ import annotations

import functools
import math
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from dynsim import analysis

__all__ = [
    "CLASSES",
    "orbit_period",
    "classify_orbit",
    "cycle_points",
    "refine_cycle",
    "floquet_multipliers",
    "log_slope",
    "envelope_decay",
    "worst_mode_rate",
    "optimal_sigma_spectrum",
    "two_mode_optimal_sigma",
    "superacceleration_helps",
]

CLASSES = ("minimum", "fixed_point", "cycle", "diverged", "unsettled")


# --------------------------------------------------------------------------- orbits


def _check_window(theta, window: int, max_period: int) -> None:
    if int(max_period) < 1:
        raise ValueError(f"max_period={max_period!r} must be >= 1")
    if int(window) < 1:
        raise ValueError(f"window={window!r} must be >= 1")
    if theta.ndim < 2:
        raise ValueError(
            f"theta must have shape (..., T, D), got {theta.shape}; pass theta[..., None] for scalars"
        )
    if theta.shape[-2] < window + max_period:
        raise ValueError(
            f"theta has {theta.shape[-2]} time points; need window + max_period = "
            f"{window + max_period}"
        )


def _norm(x):
    return jnp.sqrt(jnp.sum(x * x, axis=-1))


def orbit_period(theta, *, max_period: int = 8, window: int = 32, atol: float = 1e-9, rtol: float = 1e-7):
    r"""Smallest period ``k ≤ max_period`` of the tail of a trajectory; 0 if none.

    ``k`` fits when ``max_t ‖θ_{t+k} − θ_t‖ ≤ atol + rtol·max_t‖θ_t‖`` over the last
    ``window`` starting points ``t``. Period 1 is a fixed point.

    Args:
      theta: ``(..., T, D)``; needs ``T ≥ window + max_period``.

    Returns:
      int array of shape ``theta.shape[:-2]``.

    >>> x = jnp.array([0.2, 0.8] * 20)[:, None]           # an exact 2-cycle
    >>> int(orbit_period(x, window=8))
    2
    """
    theta = jnp.asarray(theta)
    _check_window(theta, window, max_period)
    tail = theta[..., -(window + max_period):, :]
    finite = jnp.all(jnp.isfinite(tail), axis=(-2, -1))
    tol = atol + rtol * jnp.max(_norm(jnp.where(jnp.isfinite(tail), tail, 0.0)), axis=-1)
    period = jnp.zeros(theta.shape[:-2], jnp.int32)
    for k in range(max_period, 0, -1):  # descending: the smallest fitting k wins
        err = jnp.max(_norm(tail[..., k : k + window, :] - tail[..., :window, :]), axis=-1)
        period = jnp.where(finite & (err <= tol), k, period)
    return period


def classify_orbit(
    theta,
    minimum=None,
    *,
    max_period: int = 8,
    window: int = 32,
    atol: float = 1e-9,
    rtol: float = 1e-7,
    min_tol: float = 1e-3,
):
    r"""Classify the tail of each trajectory into :data:`CLASSES`.

    Returns ``(code, period)``: ``code`` indexes :data:`CLASSES`; ``period`` is from
    :func:`orbit_period` (0 if none). ``minimum`` (shape ``(D,)``) enables the
    ``minimum`` class: the last ``window + max_period`` points all lie within
    ``min_tol`` of it (converged, or converging through oscillations — such a
    "cycle" at the minimum is not a spurious attractor).

    >>> r = 3.2                                           # logistic map: stable 2-cycle
    >>> xs = [0.3]
    >>> for _ in range(300): xs.append(r * xs[-1] * (1 - xs[-1]))
    >>> code, period = classify_orbit(jnp.array(xs)[:, None])
    >>> CLASSES[int(code)], int(period)
    ('cycle', 2)
    """
    theta = jnp.asarray(theta)
    period = orbit_period(theta, max_period=max_period, window=window, atol=atol, rtol=rtol)
    tail = theta[..., -(window + max_period):, :]
    finite = jnp.all(jnp.isfinite(tail), axis=(-2, -1))
    code = jnp.where(period == 1, 1, jnp.where(period >= 2, 2, 4))
    if minimum is not None:
        dist = jnp.max(_norm(tail - jnp.asarray(minimum, tail.dtype)), axis=-1)
        code = jnp.where(dist <= min_tol, 0, code)
    code = jnp.where(finite, code, 3)
    return code.astype(jnp.int32), period


def cycle_points(theta, period: int):
    """The last ``period`` points of a trajectory ``(..., T, D)``: one turn of the cycle."""
    if int(period) < 1:
        raise ValueError(f"period={period!r} must be >= 1")
    return jnp.asarray(theta)[..., -int(period):, :]


def _iterate(step: Callable, x, period: int):
    for _ in range(int(period)):
        x = step(x)
    return x


def refine_cycle(step: Callable, x0, period: int, iters: int = 30):
    r"""Newton's method on ``G(x) = F^k(x) − x``; returns ``(x, ‖G(x)‖)``.

    ``step`` is the map ``F`` on a flat state vector (e.g. ``(θ, m)`` for
    super-acceleration). Start from a point of a detected cycle.
    """
    if int(period) < 1:
        raise ValueError(f"period={period!r} must be >= 1")
    g = lambda x: _iterate(step, x, period) - x
    newton = jax.jit(lambda x: x - jnp.linalg.solve(jax.jacfwd(g)(x), g(x)))
    x = jnp.asarray(x0)
    for _ in range(int(iters)):
        x = newton(x)
    return x, jnp.linalg.norm(g(x))


def floquet_multipliers(step: Callable, x, period: int):
    r"""Eigenvalues of ``D(F^k)(x)`` at a cycle point ``x`` (complex, by modulus, largest first).

    The cycle attracts nearby orbits iff all multipliers lie inside the unit circle.
    """
    if int(period) < 1:
        raise ValueError(f"period={period!r} must be >= 1")
    jac = jax.jit(jax.jacfwd(lambda y: _iterate(step, y, period)))(jnp.asarray(x))
    ev = np.linalg.eigvals(np.asarray(jac))
    return ev[np.argsort(-np.abs(ev))]


# --------------------------------------------------------------------------- rates


def log_slope(y, mask=None):
    r"""Least-squares slope of ``log y_t`` against ``t`` over the last axis, where ``mask``.

    Non-positive or non-finite ``y`` are left out. Returns ``(slope, n_used)``;
    ``slope`` is NaN with fewer than two points. For ``y ∝ ρ^t`` the slope is ``ln ρ``.

    >>> s, n = log_slope(0.5 ** jnp.arange(10.0))
    >>> round(float(s), 6), int(n)
    (-0.693147, 10)
    """
    y = jnp.asarray(y)
    t = jnp.arange(y.shape[-1], dtype=jnp.result_type(y.dtype, float))
    ok = jnp.isfinite(y) & (y > 0)
    if mask is not None:
        ok = ok & jnp.asarray(mask, bool)
    w = ok.astype(t.dtype)
    ly = jnp.log(jnp.where(ok, y, 1.0))
    n = jnp.sum(w, axis=-1)
    nz = jnp.maximum(n, 1.0)
    tm = jnp.sum(w * t, axis=-1) / nz
    ym = jnp.sum(w * ly, axis=-1) / nz
    dt = (t - tm[..., None]) * w
    sxx = jnp.sum(dt * dt, axis=-1)
    sxy = jnp.sum(dt * (ly - ym[..., None]), axis=-1)
    slope = jnp.where((n >= 2) & (sxx > 0), sxy / jnp.where(sxx > 0, sxx, 1.0), jnp.nan)
    return slope, n.astype(jnp.int32)


def envelope_decay(x, *, floor: float = 1e-12, start: int = 0):
    r"""Fit ``|x_t| ∝ e^{−t/T}`` (Nakerst §5.1) through the upper envelope of ``|x|``.

    The envelope ``e_t = max_{s≥t} |x_s|`` (over the fitted range) removes the zero
    crossings of oscillating trajectories. The fit runs from ``start`` to the first
    step where ``|x_t| < floor`` (the run has reached round-off or the ε-floor of
    RMSProp) or the end. ``x`` has time on its last axis; pass norms for vectors.

    Returns ``(slope, T, n_used)``: ``slope`` per step (≈ ``ln ρ``), ``T = −1/slope``
    (``inf`` when not decaying).

    >>> s, T, n = envelope_decay(0.9 ** jnp.arange(50.0) * jnp.cos(2.0 * jnp.arange(50.0)))
    >>> round(float(T), 1)                      # −1/ln 0.9 = 9.49, up to the envelope's wiggle
    9.5
    """
    a = jnp.abs(jnp.asarray(x))
    t = jnp.arange(a.shape[-1])
    below = (a < floor) | ~jnp.isfinite(a)
    stop = jnp.where(jnp.any(below, axis=-1), jnp.argmax(below, axis=-1), a.shape[-1])
    keep = t < stop[..., None]
    env = jax.lax.cummax(jnp.where(keep, a, 0.0), axis=a.ndim - 1, reverse=True)
    slope, n = log_slope(env, keep & (t >= start))
    T = jnp.where(slope < 0, -1.0 / jnp.where(slope < 0, slope, -1.0), jnp.inf)
    return slope, T, n


# --------------------------------------------------------------------------- optimal σ on a spectrum


def worst_mode_rate(eigenvalues, learning_rate, momentum, sigma):
    """``R(σ) = max_i ρ(k_i η, g, σ)`` (alias of :func:`dynsim.analysis.spectral_radius_quadratic`)."""
    return analysis.spectral_radius_quadratic(eigenvalues, learning_rate, momentum, sigma)


_GOLD = (math.sqrt(5.0) - 1.0) / 2.0


def _optimal_sigma_scalar(eig, lr, mu, num: int, iters: int):
    kmax = jnp.max(eig) * lr
    lo = (mu - 1.0) / kmax  # Jury bounds of the stiffest mode (the others' are wider)
    hi = (mu + 1.0) / kmax - 0.5
    ok = hi > lo
    h = jnp.where(ok, hi - lo, 1.0)
    grid = lo + h * (jnp.arange(1, num + 1) / (num + 1))  # open interval
    r = analysis.spectral_radius_quadratic(eig, lr, mu, grid)
    j = jnp.argmin(r)
    a = jnp.where(j > 0, grid[jnp.maximum(j - 1, 0)], lo)
    b = jnp.where(j < num - 1, grid[jnp.minimum(j + 1, num - 1)], hi)
    f = lambda s: analysis.spectral_radius_quadratic(eig, lr, mu, s)

    def body(_, ab):  # golden section on the quasi-convex R(σ)
        a, b = ab
        c = b - _GOLD * (b - a)
        d = a + _GOLD * (b - a)
        left = f(c) <= f(d)
        return jnp.where(left, a, c), jnp.where(left, d, b)

    a, b = jax.lax.fori_loop(0, iters, body, (a, b))
    s = 0.5 * (a + b)
    # the optimum may sit exactly on a mode's critical σ*, where R has a √-kink that golden
    # section resolves only to √ε in ρ: offer every σ*_i as a candidate too
    crit = jnp.clip(analysis.critical_sigma(eig * lr, mu), lo, hi)
    cand = jnp.concatenate([jnp.stack([s, grid[j]]), crit])
    rc = jnp.concatenate([jnp.stack([f(s), r[j]]), jax.vmap(f)(crit)])
    k = jnp.argmin(rc)
    nan = jnp.asarray(jnp.nan, s.dtype)
    return jnp.where(ok, cand[k], nan), jnp.where(ok, rc[k], nan)


def optimal_sigma_spectrum(eigenvalues, learning_rate, momentum, *, num: int = 2049, iters: int = 80):
    r"""σ minimising the worst-mode rate ``max_i ρ(k_i η, g, σ)``; returns ``(σ_opt, ρ_opt)``.

    Exact up to the refinement tolerance: a dense grid over the stable σ-interval of the
    stiffest mode, ``((g−1)/k_max η, (g+1)/k_max η − 1/2)``, then golden section on
    the bracket around the grid minimum (``R`` is quasi-convex, so the bracket holds
    the minimiser); every mode's critical σ*ᵢ is also tried, since an optimum on a
    √-kink is otherwise resolved only to √ε in ρ. ``learning_rate`` and ``momentum`` broadcast; NaN where no σ is
    stable. One mode reduces to :func:`dynsim.analysis.critical_sigma`.

    >>> s, r = optimal_sigma_spectrum(jnp.array([1.0]), 0.01, 0.9)
    >>> round(float(s), 6), round(float(r), 6)          # σ* = 9, ρ = 1 − √0.01
    (9.0, 0.9)
    """
    eig = jnp.asarray(eigenvalues)
    if eig.ndim != 1 or eig.shape[0] == 0:
        raise ValueError(f"eigenvalues must be a non-empty 1-D array, got shape {eig.shape}")
    if not isinstance(eig, jax.core.Tracer) and not bool(jnp.all(eig > 0)):
        raise ValueError("eigenvalues must all be > 0")
    if int(num) < 3:
        raise ValueError(f"num={num!r} must be >= 3")
    lr, mu = jnp.broadcast_arrays(
        *(jnp.asarray(x, dtype=jnp.result_type(float, eig.dtype)) for x in (learning_rate, momentum))
    )
    flat = _optimal_sigma_batch(eig, lr.reshape(-1), mu.reshape(-1), int(num), int(iters))
    return tuple(v.reshape(lr.shape) for v in flat)


@functools.partial(jax.jit, static_argnums=(3, 4))
def _optimal_sigma_batch(eig, lr, mu, num, iters):
    return jax.vmap(lambda a, b: _optimal_sigma_scalar(eig, a, b, num, iters))(lr, mu)


def superacceleration_helps(eigenvalues, learning_rate, momentum):
    r"""Whether some σ > 0 beats heavy ball (σ = 0) on the worst-mode rate.

    True iff every mode is under-damped under heavy ball, i.e.
    ``k_min η > (1 − √g)²`` (and the stiffest mode is heavy-ball stable with
    ``k_max η < (1 + √g)²``): then ``ρ_i = √(g − k_iησ)`` falls for all modes as σ
    grows from 0; otherwise an over-damped mode, whose rate rises with σ, is already
    the worst at σ = 0.
    """
    k = jnp.asarray(eigenvalues) * jnp.asarray(learning_rate)[..., None]
    sg = jnp.sqrt(jnp.asarray(momentum))[..., None]
    return jnp.all((k > (1 - sg) ** 2) & (k < (1 + sg) ** 2), axis=-1)


def two_mode_optimal_sigma(k_eta_small, k_eta_large, momentum):
    r"""Closed-form optimum of ``max(ρ(a, g, σ), ρ(A, g, σ))`` for two modes ``a = k₁η``, ``A = k₂η``.

    Candidates: the critical points ``σ*(a)``, ``σ*(A)`` (one mode critically damped
    and dominant), and the balance points where an under-damped mode ``U`` (kη = u,
    ``ρ² = g − uσ``) and an over-damped mode ``O`` (kη = o, real root ``λ = sρ``,
    ``s = ±1``) have equal rates. Substituting ``σ = (g − ρ²)/u`` into
    ``λ² − (1 + b_O − o)λ + b_O = 0`` with ``b_O = g − oσ`` and ``r = o/u`` gives the cubic

    .. math::  −s\,r\,ρ^3 + (1 + r)\,ρ^2 − s\,(1 − o + g(1 − r))\,ρ + g(1 − r) = 0 .

    The answer is the admissible candidate with the smallest worst rate. NumPy,
    float64, scalars. Returns ``(σ_opt, ρ_opt, kind)``, ``kind`` one of
    ``"critical-small"``, ``"critical-large"``, ``"balance"``.
    """
    a, A, g = float(k_eta_small), float(k_eta_large), float(momentum)
    if not (a > 0 and A > 0):
        raise ValueError(f"k_eta_small={a}, k_eta_large={A} must be > 0")

    def rho(k, s):  # max |root| of λ² − (1 + b − k)λ + b, b = g − kσ (plain float64)
        b = g - k * s
        p = 1 + b - k
        disc = p * p - 4 * b
        return (abs(p) + math.sqrt(disc)) / 2 if disc >= 0 else math.sqrt(abs(b))

    def crit(k):
        return (g - (1 - math.sqrt(k)) ** 2) / k

    def worst(s):
        return max(rho(a, s), rho(A, s))

    cands = [(crit(a), "critical-small"), (crit(A), "critical-large")]
    for u, o in ((a, A), (A, a)):
        r = o / u
        for s in (1.0, -1.0):
            coeffs = [-s * r, 1 + r, -s * (1 - o + g * (1 - r)), g * (1 - r)]
            for root in np.roots(coeffs):
                if abs(root.imag) > 1e-9 * max(1.0, abs(root.real)):
                    continue
                p = root.real
                if not 0 < p < 1:
                    continue
                sig = (g - p * p) / u
                # admissible: U under-damped and O over-damped with the assumed sign, same rate
                pu, bu = 1 + (g - u * sig) - u, g - u * sig
                po, bo = 1 + (g - o * sig) - o, g - o * sig
                if pu * pu - 4 * bu > 1e-12 or po * po - 4 * bo < -1e-12 or np.sign(po) != s:
                    continue
                if abs(rho(u, sig) - rho(o, sig)) > 1e-8:
                    continue
                cands.append((sig, "balance"))
    best = min(cands, key=lambda c: worst(c[0]))
    return best[0], worst(best[0]), best[1]
