r"""Fixed-step integrators on :func:`jax.lax.scan`: Euler, RK4, leapfrog and Euler–Maruyama.

All drive one shared loop (:func:`_integrate`), so paths jit, vmap and differentiate,
with ``save_every``/``final_only`` as in :mod:`dynsim.ode`. GD is Euler on gradient
flow (Su eqs. (2)-(4)); momentum is leapfrog on heavy ball with friction
(Su eqs. (13)-(16)).
"""
from __future__ import annotations

import operator

import jax
import jax.numpy as jnp

from dynsim.ode.systems import SecondOrder, VectorField, _tmap

__all__ = ["euler", "rk4", "leapfrog", "euler_maruyama", "times"]


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
    """Drive ``step(i, t, state) -> state`` with ``lax.scan``; see :mod:`dynsim.ode`."""
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


def euler(f: VectorField | SecondOrder, y0, t0, dt, steps: int, params=None, *, save_every: int = 1,
          final_only: bool = False):
    r"""Explicit Euler ``y_{n+1} = y_n + dt·f(t_n, y_n)`` (order 1).

    GD is Euler on :func:`gradient_flow` with ``dt = η`` (Su eq. (2)-(4)).
    """

    def step(i, t, y):
        dy = f(t, y, params)
        return _tmap(lambda yi, di: yi + dt * di, y, dy)

    return _integrate(step, y0, t0, dt, steps, save_every, final_only)


def rk4(f: VectorField | SecondOrder, y0, t0, dt, steps: int, params=None, *, save_every: int = 1,
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
    >>> from dynsim.ode import langevin
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
            tree, [jax.random.normal(kk, leaf.shape, leaf.dtype) for kk, leaf in zip(keys, leaves, strict=True)]
        )
        mu = drift(t, y, params)
        sg = diffusion(t, y, params)
        return _tmap(lambda yi, m, s, z: yi + m * dt + s * sqdt * z, y, mu, sg, xi)

    return _integrate(step, y0, t0, dt, steps, save_every, final_only)

