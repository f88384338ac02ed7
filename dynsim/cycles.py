r"""Attractors and rates of optimizer maps beyond one dimension.

Two groups of helpers, all vectorised (``jnp``; leading batch axes allowed):

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
:func:`state_map` is ``F`` for a :mod:`dynsim.optim` rule, on the flat state ``(θ, u)``.

**Rates from trajectories.** :func:`log_slope` (masked least-squares slope of
``log y``, :func:`dynsim.numerics.slope_coefficients`), :func:`upper_envelope` and
:func:`envelope_decay` (Nakerst §5.1: fit ``|θ| ∝ A e^{−t/T}``, "averaging over the
oscillations" by fitting the upper envelope).

The optimal σ on an N-dim quadratic's spectrum (:func:`dynsim.analysis.optimal_sigma_spectrum`)
lives in :mod:`dynsim.analysis`.
"""
from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from dynsim.numerics import slope_coefficients

__all__ = [
    "CLASSES",
    "orbit_period",
    "classify_orbit",
    "cycle_points",
    "state_map",
    "refine_cycle",
    "floquet_multipliers",
    "log_slope",
    "upper_envelope",
    "EnvelopeFit",
    "envelope_decay",
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


def state_map(rule, loss) -> Callable:
    r"""The map ``F: x_i ↦ x_{i+1}`` of a :mod:`dynsim.optim` rule on the flat state ``x = (θ, u)``.

    ``θ`` and the velocity ``u`` are concatenated (``x.shape = (2D,)``), the form that
    :func:`refine_cycle` and :func:`floquet_multipliers` take. For rules whose state is
    ``(θ, u)`` only (GD, heavy ball, Nesterov, super-acceleration), not those with an
    inner state (RMSProp, Adam).

    >>> import jax.numpy as jnp
    >>> from dynsim import optim
    >>> F = state_map(optim.heavy_ball(0.1, 0.5), lambda th: 0.5 * jnp.sum(th ** 2))
    >>> F(jnp.array([1.0, 0.0])).round(6).tolist()           # u' = −η∇L, θ' = θ + u'
    [0.9, -0.1]
    """
    grad = jax.grad(loss)

    def step(x):
        d = x.shape[0] // 2
        theta, u = x[:d], x[d:]
        state = rule.map_init(theta)._replace(velocity=u)
        theta, state = rule.map_step(grad, theta, state)
        return jnp.concatenate([theta, state.velocity])

    return step


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


def _line_fit(y, w):
    """Weighted least-squares line ``y ≈ a + s·t``, ``t = 0, 1, …`` on the last axis: ``(s, a)``."""
    t = jnp.arange(y.shape[-1], dtype=y.dtype)
    n = jnp.maximum(jnp.sum(w, axis=-1, keepdims=True), 1.0)
    ym = jnp.sum(w * y, axis=-1, keepdims=True) / n
    tm = jnp.sum(w * t, axis=-1, keepdims=True) / n
    slope = jnp.sum(slope_coefficients(t, w) * (y - ym), axis=-1)  # Σ c = 0: centring only helps round-off
    return slope, (ym - slope[..., None] * tm)[..., 0]


def _masked_log(y, mask):
    y = jnp.asarray(y)
    y = y.astype(jnp.result_type(y.dtype, float))
    ok = jnp.isfinite(y) & (y > 0)
    if mask is not None:
        ok = ok & jnp.asarray(mask, bool)
    w = ok.astype(y.dtype)
    n = jnp.sum(w, axis=-1)
    s, a = _line_fit(jnp.log(jnp.where(ok, y, 1.0)), w)
    # fewer than two points: no slope (slope_coefficients is 0/0 there)
    few = n < 2
    return jnp.where(few, jnp.nan, s), jnp.where(few, jnp.nan, a), n.astype(jnp.int32)


def log_slope(y, mask=None):
    r"""Least-squares slope of ``log y_t`` against ``t`` over the last axis, where ``mask``.

    Non-positive or non-finite ``y`` are left out. Returns ``(slope, n_used)``;
    ``slope`` is NaN with fewer than two points. For ``y ∝ ρ^t`` the slope is ``ln ρ``.

    >>> s, n = log_slope(0.5 ** jnp.arange(10.0))
    >>> round(float(s), 6), int(n)
    (-0.693147, 10)
    """
    s, _, n = _masked_log(y, mask)
    return s, n


def upper_envelope(x, *, floor: float = 0.0):
    r"""Upper envelope ``e_t = max_{t ≤ s < stop} |x_s|`` of the leading part of a sequence.

    ``stop`` is the first step where ``|x_t| < floor`` or ``x_t`` is not finite (the end if
    none); the envelope removes the zero crossings of an oscillating, decaying sequence.
    Time is the last axis. Returns ``(e, keep)`` with ``keep = t < stop`` and ``e`` NaN
    where not kept.

    >>> e, keep = upper_envelope(jnp.array([1.0, -0.5, 0.8, 0.1, 1e-9, 2.0]), floor=1e-6)
    >>> e.tolist(), keep.tolist()
    ([1.0, 0.8, 0.8, 0.1, nan, nan], [True, True, True, True, False, False])
    """
    a = jnp.abs(jnp.asarray(x))
    t = jnp.arange(a.shape[-1])
    below = (a < floor) | ~jnp.isfinite(a)
    stop = jnp.where(jnp.any(below, axis=-1), jnp.argmax(below, axis=-1), a.shape[-1])
    keep = t < stop[..., None]
    env = jax.lax.cummax(jnp.where(keep, a, 0.0), axis=a.ndim - 1, reverse=True)
    return jnp.where(keep, env, jnp.nan), keep


class EnvelopeFit(NamedTuple):
    """Result of :func:`envelope_decay`: ``|x_t| ≈ exp(log_amplitude + slope·t)``.

    Attributes:
      slope: per step (≈ ``ln ρ``).
      timescale: ``T = −1/slope`` (``inf`` when not decaying).
      n_used: number of points fitted.
      log_amplitude: the intercept ``ln A`` at ``t = 0``.
    """

    slope: jax.Array
    timescale: jax.Array
    n_used: jax.Array
    log_amplitude: jax.Array


def envelope_decay(x, *, floor: float = 1e-12, start: int = 0) -> EnvelopeFit:
    r"""Fit ``|x_t| ∝ e^{−t/T}`` (Nakerst §5.1) through the upper envelope of ``|x|``.

    The envelope (:func:`upper_envelope`) removes the zero crossings of oscillating
    trajectories. The fit runs from ``start`` to the first step where ``|x_t| < floor``
    (the run has reached round-off or the ε-floor of RMSProp) or the end. ``x`` has time
    on its last axis; pass norms for vectors.

    Returns an :class:`EnvelopeFit` ``(slope, timescale, n_used, log_amplitude)``: ``slope``
    per step (≈ ``ln ρ``), ``T = −1/slope`` (``inf`` when not decaying).

    >>> s, T, n, _ = envelope_decay(0.9 ** jnp.arange(50.0) * jnp.cos(2.0 * jnp.arange(50.0)))
    >>> round(float(T), 1)                      # −1/ln 0.9 = 9.49, up to the envelope's wiggle
    9.5
    """
    env, keep = upper_envelope(x, floor=floor)
    t = jnp.arange(env.shape[-1])
    slope, log_amp, n = _masked_log(env, keep & (t >= start))
    T = jnp.where(slope < 0, -1.0 / jnp.where(slope < 0, slope, -1.0), jnp.inf)
    return EnvelopeFit(slope, T, n, log_amp)
