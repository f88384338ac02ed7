r"""Continuous-time counterparts of the optimizers: vector fields, fixed-step integrators, closed forms.

Every optimizer in :mod:`dynsim.optim` is (approximately) a discretisation of an ODE
or SDE. This module writes those equations down as pure JAX vector fields and
integrates them with fixed-step schemes built on :func:`jax.lax.scan`, so that
solutions jit, vmap over parameters and differentiate end to end.

**Equations** (``L`` is the loss, ``∇L`` its gradient):

* gradient flow ``θ' = −∇L`` (Su eq. (4)); plain GD is its Euler method with step η;
* damped second order / heavy ball with friction ``θ'' + λθ' = −∇L`` (Su eq. (10),
  Bu et al. "HBF" with ``λ = √(2λ₀)``); momentum ``v ← βv − α∇L`` is exactly the
  leapfrog scheme (Su eqs. (13)-(16)) with the map :func:`su_momentum_from_ode`;
* Su–Boyd–Candès ``θ'' + (γ/t)θ' = −∇L`` (the NAG limit in Bu et al.), started at ``t₀ > 0``;
* Nakerst's three damped oscillators (9)-(11) for the super-accelerated map on
  ``L = kθ²/2``: :func:`nakerst_oscillator`, with critical σ (12)-(14):
  :func:`nakerst_critical_sigma`;
* Langevin ``dθ = −∇L dt + s dW`` (Su eq. (8)) and Kramers
  ``dθ = v dt, dv = (−λv − ∇L) dt + s dW`` (Su eq. (21)).

**Noise convention** (derived, and tested). For ``dθ = −∇L dt + s dW`` with a standard
Wiener process ``W`` the Fokker–Planck equation ``∂ₜp = ∇·(p∇L) + (s²/2)Δp`` has the
stationary density ``p ∝ exp(−2L/s²)``, i.e. temperature ``T = s²/2``. Su writes
``θ' = −∇L + σξ`` with ``p ∝ exp(−L/σ²)``: that holds for ``s = √2·σ`` (``T = σ²``),
i.e. when ``ξ`` is white noise of intensity 2. :func:`langevin` and :func:`kramers`
take either ``noise=s`` or ``temperature=T``. For Kramers the fluctuation–dissipation
relation gives ``p ∝ exp(−(v²/2 + L)/T)`` with ``T = s²/(2λ)``; Su's eq. (22) is quoted
"for λ = 0", where no stationary density exists (with no friction the energy
diffuses without bound), so read it as the ``λ > 0`` result with ``σ² = T``.

**Conventions.** A vector field is ``f(t, y, params) -> dy/dt`` on arrays or pytrees.
A loss is called as ``loss(θ)`` when ``params is None`` and as ``loss(θ, params)``
otherwise. Coefficients (friction, γ, A, B) are plain arguments of the constructors
and may be traced values, so ``jax.vmap(lambda lam: rk4(heavy_ball_friction(L, lam),
...))(lams)`` vectorises over them. Second-order systems are :class:`SecondOrder`
fields on the state ``y = (x, v)``; they also work with :func:`rk4` and :func:`euler`.

Integrators return the path with a leading time axis of length ``steps + 1`` (``y₀``
first); ``save_every=k`` keeps every k-th state (``steps // k + 1`` of them) and
``final_only=True`` only the end state. The state dtype follows ``y₀``.

>>> import jax.numpy as jnp
>>> osc = damped_oscillator(0.5, 4.0)
>>> path = rk4(osc, (jnp.array(1.0), jnp.array(0.0)), 0.0, 0.01, 200)
>>> path[0].shape
(201,)
>>> bool(abs(path[0][-1] - damped_oscillator_exact(2.0, 0.5, 4.0, 1.0, 0.0)) < 1e-5)
True
"""
from __future__ import annotations

import operator
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp

from dynsim import analysis

PyTree = Any
VectorField = Callable[[Any, PyTree, Any], PyTree]

__all__ = [
    "SecondOrder",
    "SDE",
    "gradient_flow",
    "heavy_ball_friction",
    "su_boyd_candes",
    "damped_oscillator",
    "damped_oscillator_exact",
    "su_momentum_from_ode",
    "su_ode_from_momentum",
    "nakerst_alpha",
    "nakerst_oscillator",
    "nakerst_critical_sigma",
    "sa_critical_sigma",
    "langevin",
    "kramers",
    "euler",
    "rk4",
    "leapfrog",
    "euler_maruyama",
    "times",
    "solve_diffrax",
]

_tmap = jax.tree_util.tree_map


# ---------------------------------------------------------------------------
# vector fields


class SecondOrder(NamedTuple):
    r"""A second-order system ``x'' = force(t, x, params) − friction(t, params)·x'``.

    Kept in this split form so :func:`leapfrog` can treat the friction term
    separately; calling it gives the first-order field on ``y = (x, v)``, so
    :func:`rk4` and :func:`euler` integrate it too.
    """

    force: Callable[[Any, PyTree, Any], PyTree]
    friction: Callable[[Any, Any], Any]

    def __call__(self, t, y, params=None):
        x, v = y
        c = self.friction(t, params)
        a = self.force(t, x, params)
        return (v, _tmap(lambda ai, vi: ai - c * vi, a, v))


class SDE(NamedTuple):
    """Itô SDE ``dy = drift(t, y, p) dt + diffusion(t, y, p) ⊙ dW`` (diagonal noise).

    ``diffusion`` returns a pytree shaped like ``y``; unpack into
    :func:`euler_maruyama` as ``euler_maruyama(*sde, y0, ...)``.
    """

    drift: VectorField
    diffusion: VectorField


def _grad(loss):
    g = jax.grad(loss)

    def grad(x, params):
        return g(x) if params is None else g(x, params)

    return grad


def gradient_flow(loss) -> VectorField:
    r"""Gradient flow ``θ' = −∇L(θ)`` (Su eq. (4)).

    GD ``θ ← θ − η∇L`` is :func:`euler` on this field with ``dt = η``.

    >>> import jax.numpy as jnp
    >>> f = gradient_flow(lambda th: 0.5 * 3.0 * th**2)
    >>> float(f(0.0, jnp.array(2.0), None))
    -6.0
    """
    grad = _grad(loss)
    return lambda t, theta, params=None: _tmap(jnp.negative, grad(theta, params))


def heavy_ball_friction(loss, friction) -> SecondOrder:
    r"""Heavy ball with friction ``θ'' + λθ' = −∇L`` (Su eq. (10); Bu et al. HBF).

    Su obtains heavy-ball momentum as the leapfrog discretisation of this ODE
    (see :func:`su_momentum_from_ode`). Bu et al. take ``λ = √(2λ₀)`` with ``λ₀`` the
    smallest NTK eigenvalue and prove exponential convergence ``∝ exp(−√(λ₀/2)·t)``.
    """
    grad = _grad(loss)
    return SecondOrder(
        force=lambda t, x, params=None: _tmap(jnp.negative, grad(x, params)),
        friction=lambda t, params=None: friction,
    )


def su_boyd_candes(loss, gamma=3.0) -> SecondOrder:
    r"""Su–Boyd–Candès ``θ'' + (γ/t)θ' + ∇L = 0``, the continuous limit of NAG with
    momentum ``(k−1)/(k+γ−1)`` (Bu et al.; ``γ = 3`` is Nesterov's choice).

    The friction ``γ/t`` is singular at ``t = 0``: start the integrators at ``t₀ > 0``
    (from ``t₀ = 0`` the first step produces ``inf``/``nan``). Convergence is
    polynomial (``L − L* = O(t⁻²)`` for convex L and ``γ ≥ 3``), unlike HBF's
    exponential rate (Bu et al.).
    On ``L = θ²/2`` with ``γ = 3`` the solution with ``θ(0)=1, θ'(0)=0`` is ``2J₁(t)/t``.
    """
    grad = _grad(loss)
    return SecondOrder(
        force=lambda t, x, params=None: _tmap(jnp.negative, grad(x, params)),
        friction=lambda t, params=None: gamma / t,
    )


def damped_oscillator(A=None, B=None) -> SecondOrder:
    r"""Linear oscillator ``x'' + A x' + B x = 0`` (Nakerst eq. (7)).

    With ``A = B = None`` the coefficients are read from ``params = (A, B)``, so one
    field can be vmapped over a parameter array.
    """
    if (A is None) != (B is None):
        raise ValueError(f"damped_oscillator(A={A!r}, B={B!r}): give both or neither")
    if A is None:
        return SecondOrder(
            force=lambda t, x, params: _tmap(lambda xi: -params[1] * xi, x),
            friction=lambda t, params: params[0],
        )
    return SecondOrder(
        force=lambda t, x, params=None: _tmap(lambda xi: -B * xi, x),
        friction=lambda t, params=None: A,
    )


def damped_oscillator_exact(t, A, B, x0, v0, *, velocity: bool = False):
    r"""Exact solution of ``x'' + A x' + B x = 0``, ``x(0)=x₀, x'(0)=v₀``, all regimes.

    With ``d = B − A²/4``:

    .. math::  x(t) = e^{-At/2}\big[x_0\,C(t) + (v_0 + A x_0/2)\,S(t)\big],
               \qquad x'(t) = e^{-At/2}\big[v_0\,C(t) - (B x_0 + A v_0/2)\,S(t)\big],

    where ``C = cos(√d t), S = sin(√d t)/√d`` (under-damped, ``d > 0``),
    ``C = cosh(√−d t), S = sinh(√−d t)/√−d`` (over-damped) and ``C = 1, S = t`` at
    critical damping. Near ``d = 0`` a Taylor series is used, so the formula is
    continuous and differentiable across the regimes; in the over-damped branch the
    exponentials are combined (``e^{(±κ−A/2)t}``) so large ``t`` does not overflow.
    Broadcasts over all arguments. ``velocity=True`` returns ``(x, x')``.

    >>> round(float(damped_oscillator_exact(1.0, 2.0, 1.0, 1.0, 0.0)), 6)   # critical: (1+t)e^{-t}
    0.735759
    """
    args = [jnp.asarray(a) for a in (t, A, B, x0, v0)]
    return _oscillator_exact(*args, velocity=velocity)


@jax.jit
def _oscillator_xv(t, A, B, x0, v0):
    dtype = jnp.result_type(float, t, A, B, x0, v0)
    t, A, B, x0, v0 = jnp.broadcast_arrays(*(a.astype(dtype) for a in (t, A, B, x0, v0)))
    d = B - A * A / 4
    z = d * t * t
    small = jnp.abs(z) < 1e-4
    # under-damped
    w = jnp.sqrt(jnp.where(d > 0, d, 1.0))
    c_u = jnp.cos(w * t)
    s_u = jnp.sin(w * t) / w
    e = jnp.exp(-A * t / 2)
    # over-damped, exponentials combined with the decay e^{-At/2}
    # (in the unused branch pick k so that neither exponential overflows)
    k = jnp.where(d < 0, jnp.sqrt(jnp.where(d < 0, -d, 1.0)), jnp.where(A > 0, A / 2, 1.0))
    ep = jnp.exp((k - A / 2) * t)
    em = jnp.exp((-k - A / 2) * t)
    ec_o = (ep + em) / 2
    es_o = (ep - em) / (2 * k)
    # series at d t² -> 0: C = 1 - z/2 + z²/24 - z³/720, S = t (1 - z/6 + z²/120 - z³/5040)
    z = jnp.where(small, z, 0.0)
    c_s = 1 - z / 2 + z * z / 24 - z**3 / 720
    s_s = t * (1 - z / 6 + z * z / 120 - z**3 / 5040)
    ec = jnp.where(small, e * c_s, jnp.where(d > 0, e * c_u, ec_o))
    es = jnp.where(small, e * s_s, jnp.where(d > 0, e * s_u, es_o))
    x = x0 * ec + (v0 + A * x0 / 2) * es
    v = v0 * ec - (B * x0 + A * v0 / 2) * es
    return x, v


def _oscillator_exact(t, A, B, x0, v0, velocity):
    x, v = _oscillator_xv(t, A, B, x0, v0)  # one compiled kernel instead of ~50 dispatches
    return (x, v) if velocity else x


# ---------------------------------------------------------------------------
# Su's leapfrog mapping between the ODE and momentum


def su_momentum_from_ode(friction, step):
    r"""Momentum hyperparameters ``(β, α)`` of the leapfrog scheme for ``θ'' + λθ' = −∇L``.

    Su eq. (15): with time step γ, half-integer velocities and the trapezoidal rule
    for the friction (eqs. (13)-(14)), ``v_{n+1} = γ η_{n+1/2}`` obeys exactly the
    momentum update ``v_{n+1} = βv_n − α∇L(θ_n)``, ``θ_{n+1} = θ_n + v_{n+1}`` with

    .. math::  β = \frac{1 - λγ/2}{1 + λγ/2}, \qquad α = \frac{γ^2}{1 + λγ/2}.

    So a learning rate α advances the ODE by a step ``γ ≈ √α`` (Su's acceleration
    argument). Inverse: :func:`su_ode_from_momentum`.

    >>> beta, alpha = su_momentum_from_ode(0.2, 0.1)
    >>> round(float(beta), 6), round(float(alpha), 6)
    (0.980198, 0.009901)
    """
    half = friction * step / 2
    return (1 - half) / (1 + half), step * step / (1 + half)


def su_ode_from_momentum(beta, alpha):
    r"""Inverse of :func:`su_momentum_from_ode`: ``(λ, γ)`` from momentum ``(β, α)``.

    From ``λγ/2 = (1−β)/(1+β)``: ``γ = √(2α/(1+β))`` and ``λ = 2(1−β)/((1+β)γ)``.
    Needs ``−1 < β`` and ``α > 0``; ``β ≤ 1`` gives ``λ ≥ 0``.

    >>> lam, gamma = su_ode_from_momentum(*su_momentum_from_ode(0.2, 0.1))
    >>> round(float(lam), 5), round(float(gamma), 5)
    (0.2, 0.1)
    """
    step = jnp.sqrt(2 * alpha / (1 + beta))
    return 2 * (1 - beta) / ((1 + beta) * step), step


# ---------------------------------------------------------------------------
# Nakerst et al.: damped-oscillator ODEs for the super-accelerated map

_WHICH = {9: 9, 10: 10, 11: 11, "forward": 9, "backward": 10, "midpoint": 11}


def _which(which) -> int:
    try:
        return _WHICH[which]
    except (KeyError, TypeError):
        raise ValueError(
            f"which={which!r} must be 9, 10, 11 (Nakerst's equation numbers) or "
            "'forward', 'backward', 'midpoint'"
        ) from None


def nakerst_alpha(k_eta, momentum, sigma):
    """``α = g − kησ − 1`` of Nakerst eq. (6) (negative for a convergent map)."""
    return momentum - k_eta * sigma - 1


def nakerst_oscillator(which, k_eta, momentum, sigma):
    r"""Coefficients ``(A, B)`` of ``x'' + A x' + B x = 0`` approximating the SA map.

    The map ``m_i = g m_{i−1} − kη(θ_i + σm_{i−1})``, ``θ_{i+1} = θ_i + m_i`` (Nakerst
    eq. (5)) is read as a difference scheme with unit time step, ``α = g − kησ − 1``:

    * ``9`` / ``'forward'``: ``m_i − m_{i−1} ≈ x''``, both m's ≈ x' — eq. (9),
      ``A = −α, B = kη``;
    * ``10`` / ``'backward'``: ``m_i ≈ x'`` also in the first line — eq. (10),
      ``A = −α/(1+α), B = kη/(1+α)``;
    * ``11`` / ``'midpoint'``: ``(m_i + m_{i−1})/2 ≈ x'`` — eq. (11),
      ``A = −α/(1+α/2), B = kη/(1+α/2)``.

    To compare with the map started at ``θ₀ = 1, m_{−1} = 0`` use ``x(0) = 1,
    x'(0) = 0``. All three are first-order accurate; (11) is empirically the best
    (Nakerst §2.2, and our ``nakerst-fig2bc``).

    >>> [round(float(c), 6) for c in nakerst_oscillator(11, 0.01, 0.9, 1.0)]
    [0.116402, 0.010582]
    """
    w = _which(which)
    a = nakerst_alpha(k_eta, momentum, sigma)
    den = {9: 1.0, 10: 1 + a, 11: 1 + a / 2}[w]
    return -a / den, k_eta / den


def nakerst_critical_sigma(which, k_eta, momentum):
    r"""σ at which ODE ``which`` is critically damped, ``A² = 4B`` (Nakerst (12)-(14)).

    Derivation, with ``α = g − 1 − kησ < 0`` and then ``σ = (g − 1 − α)/kη``:

    * (9): ``α² = 4kη`` ⇒ ``α = −2√kη`` ⇒ ``σ* = 2/√kη − (1−g)/kη``  — eq. (12);
    * (10): ``α² = 4kη(1+α)`` ⇒ ``α = 2kη − 2√(kη(1+kη))`` ⇒
      ``σ* = −2 + 2√(1 + 1/kη) − (1−g)/kη`` — eq. (13);
    * (11): ``α² = 4kη(1+α/2)`` ⇒ ``α = kη − √(k²η² + 4kη)`` ⇒
      ``σ* = −1 + √(1 + 4/kη) − (1−g)/kη`` — eq. (14).

    The exact value from the map is :func:`sa_critical_sigma`; (11) differs from it by
    ``√(1+4/kη) − 2/√kη ≈ √kη/4``, (9) by +1 and (10) by ≈ −1.

    >>> [round(float(nakerst_critical_sigma(w, 0.01, 0.9)), 6) for w in (9, 10, 11)]
    [10.0, 8.09975, 9.024984]
    """
    formula = {9: analysis.sigma_star_ode12, 10: analysis.sigma_star_ode13, 11: analysis.sigma_star_ode14}
    return formula[_which(which)](k_eta, momentum)


def sa_critical_sigma(k_eta, momentum):
    r"""Exact critical (and optimal) σ of the SA map on ``L = kθ²/2``.

    The companion matrix ``[[1−kη, b], [−kη, b]]`` (``b = g − kησ``) has the
    characteristic polynomial ``λ² − (1+b−kη)λ + b``; its discriminant vanishes at
    ``b = (1 ± √kη)²``, and the stable root gives

    .. math::  σ^* = \frac{g - (1 - \sqrt{kη})^2}{kη} = \frac{2}{\sqrt{kη}} - \frac{1-g}{kη} - 1,

    which is Nakerst's eq. (12) minus one: :func:`dynsim.analysis.critical_sigma`, which computes it.

    >>> round(float(sa_critical_sigma(0.01, 0.9)), 4)
    9.0
    """
    return analysis.critical_sigma(k_eta, momentum)


# ---------------------------------------------------------------------------
# SDEs


def _noise_level(noise, temperature, scale, call):
    if (noise is None) == (temperature is None):
        raise ValueError(f"{call}: give exactly one of noise= or temperature=")
    return noise if noise is not None else jnp.sqrt(2 * scale * temperature)


def langevin(loss, noise=None, *, temperature=None) -> SDE:
    r"""Langevin SDE ``dθ = −∇L dt + s dW`` (Su eq. (8), a model of SGD).

    Stationary density ``∝ exp(−2L/s²)``: temperature ``T = s²/2``. Pass ``noise=s``
    or ``temperature=T`` (then ``s = √(2T)``); Su's ``σ`` (density ``exp(−L/σ²)``) is
    ``temperature=σ²``, i.e. ``noise=√2·σ``.
    """
    s = _noise_level(noise, temperature, 1.0, "langevin")
    grad = _grad(loss)
    drift = lambda t, y, params=None: _tmap(jnp.negative, grad(y, params))
    diffusion = lambda t, y, params=None: _tmap(lambda x: s * jnp.ones_like(x), y)
    return SDE(drift, diffusion)


def kramers(loss, friction, noise=None, *, temperature=None) -> SDE:
    r"""Kramers (underdamped Langevin) SDE on ``y = (θ, v)`` (Su eqs. (21)-(22)).

    ``dθ = v dt``, ``dv = (−λv − ∇L) dt + s dW``. For ``λ > 0`` the stationary density
    is ``∝ exp(−(v²/2 + L)/T)`` with ``T = s²/(2λ)`` (fluctuation–dissipation): the
    velocity marginal is Gaussian with variance ``T`` and the θ-marginal is the
    Langevin one. Pass ``noise=s`` or ``temperature=T`` (then ``s = √(2λT)``).
    """
    s = _noise_level(noise, temperature, friction, "kramers")
    grad = _grad(loss)

    def drift(t, y, params=None):
        x, v = y
        g = grad(x, params)
        return (v, _tmap(lambda gi, vi: -gi - friction * vi, g, v))

    def diffusion(t, y, params=None):
        x, v = y
        return (_tmap(jnp.zeros_like, x), _tmap(lambda vi: s * jnp.ones_like(vi), v))

    return SDE(drift, diffusion)


# ---------------------------------------------------------------------------
# integrators


def _as_state(y0):
    def conv(x):
        x = jnp.asarray(x)
        return x if jnp.issubdtype(x.dtype, jnp.inexact) else x.astype(jnp.result_type(float))

    return _tmap(conv, y0)


def _cast_like(new, old):
    return _tmap(lambda n, o: jnp.asarray(n, dtype=o.dtype), new, old)


def _check(steps, save_every, final_only):
    try:
        n = operator.index(steps)
        k = operator.index(save_every)
    except TypeError:
        raise ValueError(
            f"steps={steps!r} and save_every={save_every!r} must be Python ints"
        ) from None
    if n < 0:
        raise ValueError(f"steps={steps!r} must be >= 0")
    if k < 1:
        raise ValueError(f"save_every={save_every!r} must be >= 1")
    if not final_only and n % k:
        raise ValueError(f"steps={steps!r} must be a multiple of save_every={save_every!r}")
    return n, k


def _integrate(step, y0, t0, dt, steps, save_every, final_only, init=None, extract=None):
    """Drive ``step(i, t, state) -> state`` with ``lax.scan``; see module docstring."""
    n, k = _check(steps, save_every, final_only)
    y0 = _as_state(y0)
    init = init or (lambda y: y)
    extract = extract or (lambda s: s)
    s0 = init(y0)

    def body(carry, _):
        i, s = carry
        s_new = step(i, t0 + i * dt, s)
        return (i + 1, _cast_like(s_new, s)), None

    carry0 = (jnp.asarray(0, dtype=jnp.int32), s0)
    if final_only:
        (_, s), _ = jax.lax.scan(body, carry0, None, length=n)
        return extract(s)

    def outer(carry, _):
        carry, _ = jax.lax.scan(body, carry, None, length=k)
        return carry, extract(carry[1])

    _, ys = jax.lax.scan(outer, carry0, None, length=n // k)
    return _tmap(lambda a0, a: jnp.concatenate([a0[None], a], axis=0), y0, ys)


def times(t0, dt, steps, save_every: int = 1):
    """Time grid matching an integrator's path: ``t0 + dt·(0, k, 2k, …, steps)``."""
    return t0 + dt * jnp.arange(0, steps + 1, save_every)


def euler(f: VectorField, y0, t0, dt, steps: int, params=None, *, save_every: int = 1,
          final_only: bool = False):
    r"""Explicit Euler ``y_{n+1} = y_n + dt·f(t_n, y_n)`` (order 1).

    GD is Euler on :func:`gradient_flow` with ``dt = η`` (Su eq. (2)-(4)).
    """

    def step(i, t, y):
        dy = f(t, y, params)
        return _tmap(lambda yi, di: yi + dt * di, y, dy)

    return _integrate(step, y0, t0, dt, steps, save_every, final_only)


def rk4(f: VectorField, y0, t0, dt, steps: int, params=None, *, save_every: int = 1,
        final_only: bool = False):
    r"""Classical fourth-order Runge–Kutta with fixed step ``dt`` (global error ``O(dt⁴)``).

    >>> import jax.numpy as jnp
    >>> y = rk4(lambda t, y, p: -p * y, 1.0, 0.0, 0.1, 10, 2.0, final_only=True)
    >>> bool(abs(y - jnp.exp(-2.0)) < 1e-5)
    True
    """

    def axpy(a, x, y):
        return _tmap(lambda xi, yi: yi + a * xi, x, y)

    def step(i, t, y):
        k1 = f(t, y, params)
        k2 = f(t + dt / 2, axpy(dt / 2, k1, y), params)
        k3 = f(t + dt / 2, axpy(dt / 2, k2, y), params)
        k4 = f(t + dt, axpy(dt, k3, y), params)
        return _tmap(
            lambda yi, a, b, c, d: yi + dt / 6 * (a + 2 * b + 2 * c + d), y, k1, k2, k3, k4
        )

    return _integrate(step, y0, t0, dt, steps, save_every, final_only)


def leapfrog(system: SecondOrder, y0, t0, dt, steps: int, params=None, *,
             damping: str = "trapezoid", save_every: int = 1, final_only: bool = False):
    r"""Velocity-Verlet (leapfrog) for ``x'' = a(t, x) − c(t) x'`` with friction handled properly.

    ``damping="trapezoid"`` (default) is the synchronised form of Su's staggered
    scheme (eqs. (13)-(14)): with ``h = dt``, ``a_n = a(t_n, x_n)``, ``c_n = c(t_n)``,

    .. math::
        v_{n+1/2} = v_n + \tfrac h2 (a_n - c_n v_n),\quad
        x_{n+1} = x_n + h\,v_{n+1/2},\quad
        v_{n+1} = \frac{v_{n+1/2} + \tfrac h2 a_{n+1}}{1 + \tfrac h2 c_{n+1}},

    i.e. friction by the trapezoidal rule on ``v_n = (v_{n−1/2} + v_{n+1/2})/2``; the
    last half step is implicit in ``v`` but linear, hence solved in closed form. For
    constant ``c = λ`` the positions obey exactly heavy-ball momentum
    ``V_{n+1} = βV_n − α∇L(x_n)`` with ``V_{n+1} = h v_{n+1/2}`` and ``(β, α)`` from
    :func:`su_momentum_from_ode`; the momentum run from ``V_0 = 0`` corresponds to
    ``v_0 = h·a_0 / (2(1 + hλ/2))``.

    ``damping="exponential"`` is the conformal-symplectic Strang splitting: exact
    friction flow ``v ← v·exp(−(h/2)c)`` (``c`` at the half-step midpoints
    ``t_n + h/4`` and ``t_n + 3h/4``) around a Verlet kick–drift–kick. It contracts
    the symplectic form by exactly ``exp(−∫c)`` per step.

    Both are second order and use one force evaluation per step (the end-of-step
    force is carried to the next step). ``y0 = (x0, v0)``.
    """
    if damping not in ("trapezoid", "exponential"):
        raise ValueError(f"damping={damping!r} must be 'trapezoid' or 'exponential'")
    h = dt

    def kick(v, a, scale):
        return _tmap(lambda vi, ai: vi + scale * ai, v, a)

    def init(y):
        x, v = y
        return (x, v, system.force(t0, x, params))

    def extract(s):
        return (s[0], s[1])

    if damping == "trapezoid":

        def step(i, t, s):
            x, v, a = s
            c0 = system.friction(t, params)
            vh = _tmap(lambda vi, ai: vi + h / 2 * (ai - c0 * vi), v, a)
            x1 = _tmap(lambda xi, vi: xi + h * vi, x, vh)
            a1 = system.force(t + h, x1, params)
            c1 = system.friction(t + h, params)
            v1 = _tmap(lambda vi, ai: (vi + h / 2 * ai) / (1 + h / 2 * c1), vh, a1)
            return (x1, v1, a1)

    else:

        def step(i, t, s):
            x, v, a = s
            d0 = jnp.exp(-h / 2 * system.friction(t + h / 4, params))
            d1 = jnp.exp(-h / 2 * system.friction(t + 3 * h / 4, params))
            vh = kick(_tmap(lambda vi: d0 * vi, v), a, h / 2)
            x1 = _tmap(lambda xi, vi: xi + h * vi, x, vh)
            a1 = system.force(t + h, x1, params)
            v1 = _tmap(lambda vi: d1 * vi, kick(vh, a1, h / 2))
            return (x1, v1, a1)

    return _integrate(step, y0, t0, dt, steps, save_every, final_only, init, extract)


def euler_maruyama(drift: VectorField, diffusion: VectorField, y0, t0, dt, steps: int, key,
                   params=None, *, save_every: int = 1, final_only: bool = False):
    r"""Euler–Maruyama for the Itô SDE ``dy = drift dt + diffusion ⊙ dW`` (strong order ½).

    ``y_{n+1} = y_n + drift·dt + diffusion·√dt·ξ_n`` with ``ξ_n ~ N(0, I)`` drawn from
    ``fold_in(key, n)``: the noise of step ``n`` does not depend on ``save_every`` or
    ``final_only``. vmap over ``key`` for independent walkers (or integrate a batch of
    walkers as one array state: the noise is diagonal). The stationary law carries an
    ``O(dt)`` bias.

    >>> import jax, jax.numpy as jnp
    >>> sde = langevin(lambda x: 0.5 * jnp.sum(x**2), temperature=0.5)
    >>> y = euler_maruyama(*sde, jnp.zeros(3), 0.0, 0.01, 100, jax.random.key(0), final_only=True)
    >>> y.shape
    (3,)
    """
    sqdt = jnp.sqrt(jnp.asarray(dt, dtype=jnp.result_type(float, dt)))

    def step(i, t, y):
        leaves, tree = jax.tree_util.tree_flatten(y)
        keys = jax.random.split(jax.random.fold_in(key, i), len(leaves))
        xi = jax.tree_util.tree_unflatten(
            tree, [jax.random.normal(kk, leaf.shape, leaf.dtype) for kk, leaf in zip(keys, leaves)]
        )
        mu = drift(t, y, params)
        sg = diffusion(t, y, params)
        return _tmap(lambda yi, m, s, z: yi + m * dt + s * sqdt * z, y, mu, sg, xi)

    return _integrate(step, y0, t0, dt, steps, save_every, final_only)


# ---------------------------------------------------------------------------
# optional adaptive solver


def solve_diffrax(f: VectorField, y0, t0, t1, params=None, *, ts=None, dt0=None,
                  solver=None, rtol: float = 1e-8, atol: float = 1e-10,
                  max_steps: int = 100_000):
    """Adaptive reference solution with diffrax (optional dependency), ``Tsit5`` by default.

    Returns ``(ts, ys)`` at the requested times ``ts`` (default: only ``t1``).
    Imports diffrax lazily; raises ``ImportError`` with the install hint if missing.
    """
    try:
        import diffrax
    except ImportError as e:
        raise ImportError(
            "dynsim.ode.solve_diffrax needs the optional dependency diffrax; "
            "install it with `pip install dynsim[diffrax]` (or `pip install diffrax`)"
        ) from e
    term = diffrax.ODETerm(lambda t, y, args: f(t, y, args))
    saveat = diffrax.SaveAt(ts=jnp.asarray(ts)) if ts is not None else diffrax.SaveAt(t1=True)
    sol = diffrax.diffeqsolve(
        term,
        diffrax.Tsit5() if solver is None else solver,
        t0,
        t1,
        dt0,
        _as_state(y0),
        args=params,
        saveat=saveat,
        stepsize_controller=diffrax.PIDController(rtol=rtol, atol=atol),
        max_steps=max_steps,
    )
    return sol.ts, sol.ys
