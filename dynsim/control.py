r"""Optimizers as feedback control systems (Wu et al. 2021), and the SA map in the z-domain.

**Representation.** A transfer function is a pair ``(num, den)`` of polynomial
coefficient arrays, highest power first (as in scipy / python-control). The last
axis holds the coefficients; leading axes are a batch, so sweeping a parameter is
just passing an array (everything broadcasts). Continuous systems are in ``s``,
the SA map in ``z``; :func:`feedback` and the root formulas apply to both.

**Wu's models** (``g(μ) = μ`` by default; pass ``g=callable`` for another choice):

* SGD, eq. (12): ``G = K₀r/s``; closed loop (13) ``K₀r/(s + K₀r)``, a first-order
  lag with ``T = 1/(K₀r)`` and 5% settling time ``ln 20/(K₀r) ≈ 3/(K₀r)``;
* momentum, eq. (24): ``G = K₀r/(g s² + s)``; closed loop (25)
  ``K₀r/(g s² + s + K₀r)``: ``ωₙ = √(K₀r/g)``, ``ξ = 1/√(4K₀rg)``; critical at
  ``K₀rg = 1/4``; overshoot ``exp(−π/√(4K₀rg − 1))`` (eq. (31));
* NAG, eq. (42): ``G = (K₀rg s + K₀αr)/(g s² + s)``. **The closed loop is derived
  here**, because the paper's (44) is garbled:

  .. math::  φ(s) = \frac{G}{1+G} = \frac{K_0 r g\,s + K_0 α r}{g s^2 + (1 + K_0 r g)\,s + K_0 α r},
             \qquad ω_n^2 = \frac{K_0 α r}{g},\quad ξ = \frac{1 + K_0 r g}{2\sqrt{K_0 α r g}} .

  Dividing by ``K₀αr`` gives the paper's (43) once its ``K₁ = K₀α`` is substituted,
  so (43) is right. In (44) the ``φ₂`` term is consistent with (43) but ``φ₁`` is
  not (``K₀`` in place of ``K₁`` and an ``r²``): as printed, ``φ₁ + φ₂`` has DC gain
  ``μ/α`` instead of 1. Table 1's ``ξ = (μK₀rα + 1)/(2√(μK₀rα))`` misplaces α in the
  numerator, and its momentum entry ``ξ = 1/√(4K₀rμ − 1)`` mixes up ξ with the
  overshoot exponent; Theorem 2's ``ξ = 1/√(4K₀rg)`` is the correct one. (Eq. (30)'s
  second line also has ``2K₀r`` where ``2g`` belongs in the frequency.)

**NAG's peak of 1.35** (Wu §3.3, ``μ = 0.9, K₀ = 100, r = 0.1``). The closed loop has
the zero ``z₀ = −α/g`` and ``den(z₀) = α(α − 1)/g``. For the paper's own constraint
``α < 1`` (Remark 3) the poles are real (the discriminant is ``≥ (1 − K₀rg)²``) and
``den(z₀) < 0`` puts the zero between them, so both modes enter with the same sign
and the step response rises monotonically: **no overshoot at all**. At ``α = 1`` the
zero cancels the pole ``−1/g`` and NAG is exactly SGD, ``1 − e^{−K₀rt}``. The peak
grows monotonically with α above 1, and a peak of 1.35 needs ``α ≈ 18.30`` (peak
time ≈ 0.18 s, settled within 1 s; see :func:`nag_alpha_for_peak`), well outside
``α < 1``. The paper's remark that the NAG root loci mostly have imaginary parts
also needs ``α > 1`` (for ``α ≤ 1`` they never leave the real axis), so its Fig. 5
was evidently drawn with a large α; ``α ≈ 18.3`` is the value that reproduces it.

**SA map as a sampled feedback loop.** With the reference (minimum) ``w`` and
``L = k(θ − w)²/2``, Nakerst's map ``m_i = g m_{i−1} + u_i``, ``θ_{i+1} = θ_i + m_i``
with ``u_i = kη(w_i − (θ_i + σm_{i−1}))`` is unity negative feedback of the
look-ahead point ``θ_i + σm_{i−1}`` through the loop gain ``kη``:

.. math::  G(z) = kη\,\frac{(1+σ)z - σ}{(z-1)(z-g)}, \qquad
           1 + G(z) = 0 \iff z^2 - (1 + b - kη)z + b = 0,\ b = g − kησ,

i.e. the closed-loop poles are the companion-matrix eigenvalues. The parameter
itself follows ``Θ(z)/W(z) = kη z/(z² − (1+b−kη)z + b)`` (DC gain 1); its step
response equals ``1 − θ_i`` of the map started at ``θ₀ = 1, m₋₁ = 0``.

>>> import numpy as np
>>> num, den = closed_loop("momentum", 100.0, 0.1, 0.9)
>>> np.round(np.asarray(den), 6).tolist()
[0.9, 1.0, 10.0]
"""
from __future__ import annotations

import math
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from dynsim import analysis, ode

__all__ = [
    "KINDS",
    "sgd_open_loop",
    "momentum_open_loop",
    "nag_open_loop",
    "open_loop",
    "feedback",
    "closed_loop",
    "quadratic_roots",
    "poles",
    "zeros",
    "dc_gain",
    "characteristics",
    "closed_loop_poles",
    "root_locus",
    "tf2ss",
    "step_response",
    "step_response_expm",
    "step_response_rk4",
    "step_info",
    "step_peak",
    "momentum_theory",
    "nag_damping_ratio",
    "first_order_settling_time",
    "nag_alpha_for_peak",
    "sa_open_loop_z",
    "sa_closed_loop_z",
    "sa_companion",
    "sa_poles_z",
    "discrete_step_response",
]

KINDS = ("sgd", "momentum", "nag")


def _float(x):
    x = jnp.asarray(x)
    return x if jnp.issubdtype(x.dtype, jnp.inexact) else x.astype(jnp.result_type(float))


def _poly(*coeffs):
    """Stack broadcast coefficients along a new last axis."""
    cs = jnp.broadcast_arrays(*(_float(c) for c in coeffs))
    return jnp.stack(cs, axis=-1)


def _g(mu, g: Callable | None):
    return _float(mu) if g is None else _float(g(mu))


# ---------------------------------------------------------------------------
# Wu's transfer functions


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


def _pad(p, n):
    p = _float(p)
    extra = n - p.shape[-1]
    if extra < 0:
        raise ValueError(f"polynomial of length {p.shape[-1]} longer than {n}")
    return jnp.concatenate([jnp.zeros(p.shape[:-1] + (extra,), p.dtype), p], axis=-1)


def feedback(num, den):
    """Unity negative feedback ``G/(1+G)``: ``(num, den + num)`` (num left-padded). Works in s or z."""
    num, den = _float(num), _float(den)
    n = max(num.shape[-1], den.shape[-1])
    num_p, den_p = _pad(num, n), _pad(den, n)
    num_p, den_p = jnp.broadcast_arrays(num_p, den_p)
    return num_p, den_p + num_p


def closed_loop(kind: str, K0, r, mu=None, alpha=None, g: Callable | None = None):
    """Closed loop ``G/(1+G)`` of Wu's model ``kind`` (eqs. (13), (25), and NAG derived above).

    Leading zero coefficients of the numerator are kept so ``num`` and ``den`` have the
    same length.
    """
    return feedback(*open_loop(kind, K0, r, mu, alpha, g))


# ---------------------------------------------------------------------------
# poles, zeros, characteristics


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


# ---------------------------------------------------------------------------
# step responses


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
    expand = lambda c: c.reshape(c.shape + (1,) * t.ndim)
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
    f = lambda t, x, p: A @ x + B[:, 0]
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
    f = lambda tt: -float(step_response(num, den, jnp.asarray(tt)))
    res = optimize.minimize_scalar(f, bounds=(t[k - 1], t[k + 1]), method="bounded",
                                   options={"xatol": 1e-12})
    return float(-res.fun), float(res.x)


# ---------------------------------------------------------------------------
# Wu's formulas


def momentum_theory(K0, r, mu, g: Callable | None = None) -> dict:
    """Wu's closed-form characteristics of the momentum loop (eqs. (26)-(31)).

    ``ωₙ = √(K₀r/g)``, ``ξ = 1/√(4K₀rg)``, overshoot ``100·exp(−π/√(4K₀rg − 1))`` %
    (0 when ``ξ ≥ 1``), envelope settling times ``t_s ≈ 6g`` (5%) and ``8g`` (2%), i.e.
    ``3/(ξωₙ)`` and ``4/(ξωₙ)``.
    """
    k = _float(K0) * _float(r)
    gm = _g(mu, g)
    prod = 4 * k * gm
    over = jnp.where(prod > 1, 100 * jnp.exp(-jnp.pi / jnp.sqrt(jnp.where(prod > 1, prod - 1, 1.0))), 0.0)
    return {
        "NaturalFrequency": jnp.sqrt(k / gm),
        "DampingRatio": 1 / jnp.sqrt(prod),
        "Overshoot": over,
        "SettlingTime5": 6 * gm,
        "SettlingTime2": 8 * gm,
    }


def nag_damping_ratio(K0, r, mu, alpha, g: Callable | None = None):
    """Damping ratio of the NAG closed loop, ``ξ = (1 + K₀rg)/(2√(K₀αrg))`` (derived; not Table 1's)."""
    k = _float(K0) * _float(r)
    gm = _g(mu, g)
    return (1 + k * gm) / (2 * jnp.sqrt(k * _float(alpha) * gm))


def first_order_settling_time(K0, r, threshold: float = 0.05):
    """Exact settling time of ``1 − e^{−K₀rt}``: ``ln(1/threshold)/(K₀r)`` (Wu rounds ln 20 ≈ 2.996 to 3)."""
    return math.log(1 / threshold) / (_float(K0) * _float(r))


def nag_alpha_for_peak(peak: float, K0, r, mu, g: Callable | None = None,
                       bracket=(1.0 + 1e-6, 1e4)) -> float:
    """α for which NAG's closed-loop step response peaks at ``peak`` (> 1), by Brent's method.

    For ``α ≤ 1`` the response never overshoots (see the module docstring), and the
    peak grows monotonically with α above 1, so the answer is unique.

    >>> round(nag_alpha_for_peak(1.35, 100.0, 0.1, 0.9), 2)
    18.3
    """
    from scipy import optimize

    K0, r, mu = float(K0), float(r), float(mu)
    gm = float(_g(mu, g))

    def excess(alpha):
        num, den = closed_loop("nag", K0, r, mu, alpha, g)
        wn = math.sqrt(K0 * alpha * r / gm)
        # slowest decay rate bounds how long to look for the peak
        decay = float(-jnp.max(jnp.real(poles(den))))
        t_max = min(20 / decay, 40 / wn + 20 / decay)
        return step_peak(num, den, t_max, n=20_001)[0] - peak

    return float(optimize.brentq(excess, *bracket, xtol=1e-10))


# ---------------------------------------------------------------------------
# the super-accelerated map in the z-domain


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
