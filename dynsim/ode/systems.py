r"""The continuous-time systems: vector fields and SDEs that the optimizers discretise.

Gradient flow (Su eq. (4)), heavy ball with friction (Su eq. (10); Bu et al. HBF),
Su–Boyd–Candès ``θ'' + (γ/t)θ' = −∇L``, the linear oscillator of Nakerst eq. (7) with
its exact solution, and the Langevin (Su eq. (8)) and Kramers (Su eqs. (21)-(22)) SDEs.
Conventions (vector fields, noise) are in :mod:`dynsim.ode`.
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp

PyTree = Any
VectorField = Callable[..., PyTree]  # f(t, y, params), params often optional (default None)

__all__ = [
    "SecondOrder",
    "SDE",
    "gradient_flow",
    "heavy_ball_friction",
    "su_boyd_candes",
    "damped_oscillator",
    "damped_oscillator_exact",
    "langevin",
    "kramers",
]

_tmap = jax.tree_util.tree_map


class SecondOrder(NamedTuple):
    r"""A second-order system ``x'' = force(t, x, params) − friction(t, params)·x'``.

    Kept in this split form so :func:`leapfrog` can treat the friction term
    separately; calling it gives the first-order field on ``y = (x, v)``, so
    :func:`rk4` and :func:`euler` integrate it too.
    """

    force: Callable[..., PyTree]  # force(t, x, params), params often optional
    friction: Callable[..., Any]  # friction(t, params), params often optional

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


def _oscillator_exact(t, A, B, x0, v0, *, velocity):
    x, v = _oscillator_xv(t, A, B, x0, v0)  # one compiled kernel instead of ~50 dispatches
    return (x, v) if velocity else x


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

    def drift(t, y, params=None):
        return _tmap(jnp.negative, grad(y, params))

    def diffusion(t, y, params=None):
        return _tmap(lambda x: s * jnp.ones_like(x), y)

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
