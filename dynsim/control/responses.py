r"""Step responses of continuous transfer functions, and python-control's step metrics.

Exact closed forms for order ≤ 2 (through :func:`dynsim.ode.damped_oscillator_exact`,
Nakerst eq. (7)'s oscillator), a matrix exponential on the controllable canonical
realisation (:func:`tf2ss`) for any proper system, an RK4 check, :func:`step_info` and
the refined :func:`step_peak` (Wu's overshoot, eq. (31), and NAG's peak of 1.35).
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from dynsim import ode
from dynsim.control.polynomials import _float, _pad, characteristics, dc_gain

__all__ = ["tf2ss", "step_response", "step_response_expm", "step_response_rk4", "step_info", "step_peak"]


def _normalise(num, den):
    num, den = _float(num), _float(den)
    n = den.shape[-1] - 1
    if num.shape[-1] > n + 1:
        raise ValueError(f"improper transfer function: len(num)={num.shape[-1]} > len(den)={n + 1}")
    num = _pad(num, n + 1)
    lead = den[..., :1]
    return num / lead, den / lead, n


def step_response(num, den, t):
    r"""Exact unit-step response of a proper system of order ≤ 2, vectorised (JAX).

    Writing ``H = d + (b₁s + b₀)/(s² + a₁s + a₀)`` and letting ``x`` solve
    ``x'' + a₁x' + a₀x = 0, x(0)=1, x'(0)=0`` (closed form in every regime,
    :func:`dynsim.ode.damped_oscillator_exact`), the step response is

    .. math::  y(t) = d + \frac{b_0}{a_0}\,(1 - x(t)) - \frac{b_1}{a_0}\,x'(t),

    because ``(1 − x)/a₀`` is the step and ``−x'/a₀`` the impulse response of
    ``1/(s² + a₁s + a₀)``. First order: ``y = d + (b₀/a₀)(1 − e^{−a₀t})``. Needs
    ``a₀ ≠ 0`` for order 2 (closed loops; use :func:`step_response_expm` otherwise).
    Output shape: ``batch + t.shape``.
    """
    return _step_response(_float(num), _float(den), _float(t))


@jax.jit
def _step_response(num, den, t):
    num, den, n = _normalise(num, den)

    def expand(c):
        return c.reshape(c.shape + (1,) * t.ndim)

    d = expand(num[..., 0])
    strict = num - num[..., :1] * den
    if n == 0:
        return d * jnp.ones_like(t)
    if n == 1:
        a0, b0 = expand(den[..., 1]), expand(strict[..., 1])
        safe = jnp.where(a0 == 0, 1.0, a0)
        frac = jnp.where(a0 == 0, t, -jnp.expm1(-a0 * t) / safe)
        return d + b0 * frac
    if n == 2:
        a1, a0 = expand(den[..., 1]), expand(den[..., 2])
        b1, b0 = expand(strict[..., 1]), expand(strict[..., 2])
        x, v = ode.damped_oscillator_exact(t, a1, a0, 1.0, 0.0, velocity=True)
        return d + (b0 * (1 - x) - b1 * v) / a0
    raise ValueError(f"step_response: order {n} > 2; use step_response_expm")


def tf2ss(num, den):
    """Controllable canonical realisation ``(A, B, C, D)`` of one proper ``num/den``.

    ``A`` has first row ``−a₁ … −aₙ`` and ones on the sub-diagonal, ``B = e₁``,
    ``C`` holds the strictly proper numerator, ``D`` the feed-through.
    """
    num, den, n = _normalise(num, den)
    if num.ndim != 1:
        raise ValueError("tf2ss takes one system (1-D num, den); vmap for batches")
    D = num[0]
    C = (num - D * den)[1:]
    if n == 0:
        return jnp.zeros((0, 0)), jnp.zeros((0, 1)), jnp.zeros((1, 0)), D.reshape(1, 1)
    A = jnp.zeros((n, n), den.dtype).at[0].set(-den[1:])
    if n > 1:
        A = A.at[jnp.arange(1, n), jnp.arange(n - 1)].set(1.0)
    B = jnp.zeros((n, 1), den.dtype).at[0, 0].set(1.0)
    return A, B, C.reshape(1, n), D.reshape(1, 1)


def step_response_expm(num, den, t):
    r"""Exact step response of any proper single system via one matrix exponential per time.

    ``exp(t [[A, B], [0, 0]])`` has ``∫₀ᵗ e^{Aτ}B dτ`` in its last column, the state
    after a unit step from rest; ``y = Cx + D``. Works with singular ``A``.
    """
    return _step_response_expm(_float(num), _float(den), _float(t))


@jax.jit
def _step_response_expm(num, den, t):
    A, B, C, D = tf2ss(num, den)
    n = A.shape[0]
    if n == 0:
        return D[0, 0] * jnp.ones_like(t)
    M = jnp.zeros((n + 1, n + 1), A.dtype).at[:n, :n].set(A).at[:n, n].set(B[:, 0])

    def one(tt):
        x = jax.scipy.linalg.expm(tt * M)[:n, n]
        return (C @ x)[0] + D[0, 0]

    return jax.vmap(one)(t.reshape(-1)).reshape(t.shape)


def step_response_rk4(num, den, dt, steps: int):
    """Step response by integrating the state-space realisation with :func:`dynsim.ode.rk4`.

    Returns ``(t, y)`` on ``t = dt·(0, 1, …, steps)``.
    """
    A, B, C, D = tf2ss(num, den)

    def f(t, x, p):
        return A @ x + B[:, 0]

    xs = ode.rk4(f, jnp.zeros(A.shape[0], A.dtype), 0.0, dt, steps)
    return ode.times(0.0, dt, steps), xs @ C[0] + D[0, 0]


def step_info(t, y, *, settling_threshold: float = 0.02, rise_time_limits=(0.1, 0.9),
              yfinal=None, sys=None) -> dict:
    """Step-response metrics with python-control's names and definitions (numpy, host).

    Keys: ``RiseTime`` (first crossings of 10% and 90% of the final value),
    ``SettlingTime`` (first time after which ``|y/yfinal − 1| < threshold``; 2% by
    default, ``settling_threshold=0.05`` for Wu's 5%), ``SettlingMin``, ``SettlingMax``,
    ``Overshoot`` and ``Undershoot`` (%), ``Peak`` (max ``|y|``), ``PeakTime``,
    ``SteadyStateValue``. Same algorithm as ``control.step_info`` (no interpolation, so
    times are resolved to the grid). ``yfinal`` defaults to the DC gain of ``sys`` when
    ``sys=(num, den)`` is given, else to ``y[-1]``; with ``sys`` the dict also holds
    ``Order``, ``NaturalFrequency``, ``DampingRatio`` and ``Regime``
    (:func:`characteristics`).
    """
    t = np.asarray(t, dtype=float)
    y = np.asarray(y, dtype=float)
    if t.shape != y.shape or t.ndim != 1:
        raise ValueError(f"step_info: t and y must be 1-D of equal length, got {t.shape}, {y.shape}")
    if yfinal is None:
        yfinal = float(dc_gain(*sys)) if sys is not None else float(y[-1])
    inf = float(yfinal)
    out = dict.fromkeys(
        ("RiseTime", "SettlingTime", "SettlingMin", "SettlingMax", "Overshoot", "Undershoot"),
        math.nan)
    out.update(Peak=math.inf, PeakTime=math.inf, SteadyStateValue=math.nan)
    if np.isfinite(inf):
        sgn = np.sign(inf)
        lo = np.nonzero(sgn * (y - rise_time_limits[0] * inf) >= 0)[0]
        hi = np.nonzero(sgn * (y - rise_time_limits[1] * inf) >= 0)[0]
        if lo.size and hi.size:
            out["RiseTime"] = float(t[hi[0]] - t[lo[0]])
            out["SettlingMin"] = float(min(y[hi[0]:].min(), inf))
            out["SettlingMax"] = float(max(y[hi[0]:].max(), inf))
        outside = np.nonzero(np.abs(y / inf - 1) >= settling_threshold)[0]
        settled = 0 if outside.size == 0 else outside[-1] + 1
        if settled < len(t):
            out["SettlingTime"] = float(t[settled])
        dy = abs((sgn * y).max()) - abs(inf)
        out["Overshoot"] = float(abs(100.0 * dy / inf)) if dy > 0 else 0.0
        y_us = y[(sgn * y).argmin()]
        out["Undershoot"] = float(-100.0 * y_us / inf) if sgn * y_us < 0 else 0.0
        k = int(np.abs(y).argmax())
        out["Peak"] = float(abs(y[k]))
        out["PeakTime"] = float(t[k])
        out["SteadyStateValue"] = inf
    if sys is not None:
        ch = characteristics(*sys)
        out.update(
            Order=ch["Order"],
            NaturalFrequency=float(ch["NaturalFrequency"]),
            DampingRatio=float(ch["DampingRatio"]),
            Regime=ch["Regime"],
        )
    return out


def step_peak(num, den, t_max: float, n: int = 200_001):
    """Peak value and time of the exact step response (order ≤ 2), refined off the grid.

    Dense grid on ``[0, t_max]``, then a bounded scalar maximisation around the best
    grid point. Returns ``(peak, peak_time)`` as Python floats.
    """
    from scipy import optimize

    t = np.linspace(0.0, t_max, n)
    y = np.asarray(step_response(num, den, t))
    k = int(np.argmax(y))
    if k in (0, n - 1):
        return float(y[k]), float(t[k])

    def f(tt):
        return -float(step_response(num, den, jnp.asarray(tt)))

    res = optimize.minimize_scalar(f, bounds=(t[k - 1], t[k + 1]), method="bounded",
                                   options={"xatol": 1e-12})
    return float(-res.fun), float(res.x)

