r"""Trajectories of an optimizer map: :func:`simulate`.

The map runs inside one ``jax.lax.scan``. The function is pure, so it jits,
vmaps over hyperparameters and initial points, and differentiates end to end
(``jax.grad`` with respect to η, μ, σ or θ₀ goes through the whole scan).

With ``hessian=Hessian(N)`` (:class:`dynsim.hessian.Hessian`) the scan also records the top
Hessian eigenvalues (sharpness) every ``N`` steps at the look-ahead point, and for ``rmsprop_sa``/``adam_sa`` the
preconditioned sharpness (:class:`HessianTrace`, :func:`preconditioner`).
"""
from __future__ import annotations

from typing import Any, Callable, Mapping, NamedTuple

import jax
import jax.numpy as jnp
import optax

from dynsim import hessian as _hessian
from dynsim.checks import check_int
from dynsim.landscapes import Landscape
from dynsim.optim import Rule
from dynsim.optim.spec import as_rule, resolve_optimizer

PyTree = Any

__all__ = ["Trajectory", "HessianTrace", "simulate", "as_rule", "build_rule", "check_steps", "preconditioner",
           "PRECONDITIONED_RULES"]


class HessianTrace(NamedTuple):
    """Hessian-spectrum metrics along a trajectory, every ``hessian.every`` steps.

    Attributes:
      step: ``(R,)``, the steps recorded: ``0, N, 2N, …`` (``≤ steps``).
      sharpness: ``(R,)``, ``λ_max`` of ``∇²L`` at the look-ahead point
        ``φ_i = θ_i + σ_i u_{i−1}`` (where step ``i+1`` takes its gradient; at θ_i with
        ``Hessian(at="theta")``).
      eigenvalues: ``(R, k)``, the top ``k`` eigenvalues there, descending.
      residual: ``(R,)``, Lanczos residual bound of ``sharpness`` (convergence check).
      preconditioned_sharpness: ``(R,)``, ``λ_max(P^{-1}∇²L(φ_i))`` with the rule's current
        preconditioner (:func:`preconditioner`; NaN at step 0, before one exists), for
        ``rmsprop_sa``/``adam_sa``; ``None`` for other rules.
    """

    step: jax.Array
    sharpness: jax.Array
    eigenvalues: jax.Array
    residual: jax.Array
    preconditioned_sharpness: jax.Array | None = None


#: Rules with a diagonal preconditioner (:func:`preconditioner`).
PRECONDITIONED_RULES = ("rmsprop_sa", "adam_sa")


def preconditioner(rule: Rule, state) -> PyTree:
    r"""The diagonal preconditioner ``P`` of an adaptive rule's *current* state (step ``−η P^{-1}·``).

    * ``rmsprop_sa`` (Nakerst eq. (16)): ``P = √(r + ε)``, ε inside the root;
    * ``adam_sa``: ``P = √v̂ + ε`` with ``v̂ = v/(1 − β₂^t)``, ``t`` the steps taken
      (Cohen et al. 2022's ``P``; the ``(1−β₁)`` of the momentum EMA is *not* in ``P`` but in
      :func:`dynsim.analysis.preconditioned_stability_threshold` with ``ema=True``).

    ``P`` is the denominator the last step used; NaN before the first step (no second
    moment yet). Works in both coordinate systems (the state is the same).
    """
    name = getattr(rule, "name", None)
    if name not in PRECONDITIONED_RULES:
        raise ValueError(f"preconditioner: rule {name!r} has no diagonal preconditioner "
                         f"(only {', '.join(PRECONDITIONED_RULES)})")
    inner = state.inner[0]  # optax.chain(scale_by_{rms,adam}_sa, scale_by_learning_rate)
    hp = rule.hyperparams
    started = state.count > 0
    if name == "rmsprop_sa":
        return jax.tree.map(
            lambda r: jnp.where(started, jnp.sqrt(r + jnp.asarray(hp["eps"], r.dtype)), jnp.nan), inner.nu)

    def adam(v):
        c = jnp.maximum(inner.count, 1).astype(v.dtype)
        v_hat = v / (1 - jnp.asarray(hp["b2"], v.dtype) ** c)
        return jnp.where(started, jnp.sqrt(v_hat) + jnp.asarray(hp["eps"], v.dtype), jnp.nan)

    return jax.tree.map(adam, inner.nu)


class Trajectory(NamedTuple):
    """A simulated trajectory in the paper's coordinates.

    Attributes:
      theta: ``(steps + 1, *θ₀.shape)``, θ₀ first.
      loss: ``(steps + 1,)``, ``L(θ_i)`` (at θ, not at the look-ahead point).
      velocity: ``(steps + 1, *θ₀.shape)``, the displacement ``u_{i-1} = θ_i − θ_{i-1}``
        entering step ``i`` (Nakerst's ``m^{(i-1)}``); zero first.
      state: the rule's final state (moments, count), for continuing a run.
      hessian: a :class:`HessianTrace` when ``simulate(..., hessian=Hessian(N))``, else ``None``.
    """

    theta: PyTree
    loss: jax.Array
    velocity: PyTree
    state: Any
    hessian: HessianTrace | None = None


def _is_built(optimizer) -> bool:
    return isinstance(optimizer, (Rule, optax.GradientTransformation)) or (
        hasattr(optimizer, "init") and hasattr(optimizer, "update"))


def build_rule(optimizer, hyper: Mapping[str, Any] | None = None) -> Rule:
    """The rule for ``optimizer`` at the hyperparameters ``hyper`` (the forms :func:`simulate` takes).

    ``optimizer`` is a built rule or optax transformation (``hyper`` must then be ``None``), or
    a rule name (``"super_accelerated"``), a :mod:`dynsim.optim` factory, an optax factory
    (``optax.adam``) or an import path (``"optax:adam"``), called with ``**hyper``. Names are
    resolved by the one resolver (:func:`dynsim.optim.spec.resolve_optimizer`),
    so every entry point reads them alike. ``hyper`` values may be traced arrays (``jax.grad``
    with respect to η goes through).
    """
    if _is_built(optimizer):
        if hyper is not None:
            raise ValueError(f"hyper={dict(hyper)!r}: the optimizer is already built (its hyperparameters are "
                             "fixed); pass its name or factory (e.g. 'super_accelerated', optax.adam) with hyper=")
        return as_rule(optimizer)
    if hyper is not None and not isinstance(hyper, Mapping):
        raise ValueError(f"hyper={hyper!r} must be a mapping of hyperparameter names to values")
    spec = resolve_optimizer(optimizer)
    hyper = dict(hyper or {})
    unknown = sorted(k for k in hyper if not spec.accepts(k))
    if unknown:
        raise ValueError(f"hyper: {spec.name} takes no {', '.join(map(repr, unknown))} "
                         f"(it takes {', '.join(spec.params) or 'none'})")
    try:
        return spec.build(**hyper)
    except TypeError as e:
        raise ValueError(f"optimizer={spec.name!r}: building it with hyper={hyper!r} failed ({e}); give its "
                         "hyperparameters as hyper={...}, or pass a built rule") from None


def check_steps(steps) -> int:
    """``steps`` as a non-negative Python int (it is a scan length); ValueError naming it otherwise."""
    return check_int("steps", steps, 0)


def simulate(
    optimizer,
    loss_fn: Callable[[PyTree], jax.Array] | Landscape,
    theta0: PyTree,
    steps: int,
    *,
    hyper: Mapping[str, Any] | None = None,
    unroll: int = 1,
    hessian: _hessian.Hessian | None = None,
    hessian_key: jax.Array | None = None,
) -> Trajectory:
    r"""Run ``steps`` steps of ``optimizer`` on ``loss_fn`` from ``theta0``.

    Args:
      optimizer: a built :mod:`dynsim.optim` rule or optax transformation; or a rule name
        (``"super_accelerated"``), a :mod:`dynsim.optim` factory, an optax factory
        (``optax.adam``) or an import path (``"optax:adam"``), built with ``hyper``
        (:func:`build_rule`), as :func:`dynsim.sweep` reads them.
      loss_fn: ``θ -> scalar`` or a :class:`dynsim.landscapes.Landscape`.
      theta0: initial point (array or pytree of arrays).
      steps: number of steps (static: it is the scan length).
      hyper: the hyperparameters of a named or factory ``optimizer``, ``name -> value``
        (e.g. ``{"learning_rate": 0.1, "momentum": 0.9, "sigma": 2.0}``): one point of a
        :func:`dynsim.sweep` grid. Values may be traced (``jax.grad`` with respect to them).
      unroll: ``lax.scan`` unroll factor.
      hessian: a :class:`dynsim.hessian.Hessian` (``Hessian(every, k=1, iters=20,
        at="lookahead")``): record the top ``k`` Hessian eigenvalues every ``every`` steps by
        Lanczos with ``iters`` Hessian-vector products (clipped to the dimension, exact there);
        ``None`` (the default): off. They are taken at the look-ahead point ``φ_i = θ_i + σ_i u_{i−1}``, the point whose
        gradient drives the next step: linearising the map around the run, a perturbation
        ``δ`` of θ evolves by ``δu_i = μδu_{i−1} − η∇²L(φ_i)(δθ_i + σδu_{i−1})``, so
        ``∇²L(φ_i)`` is the curvature that
        :func:`dynsim.analysis.stability_threshold` bounds (φ = θ for σ = 0);
        ``at="theta"`` takes them at θ instead.
      hessian_key: PRNG key of the Lanczos start vectors (default ``PRNGKey(0)``; record
        ``j`` uses ``fold_in(key, j)``).

    Returns:
      A :class:`Trajectory` in the paper's coordinates, θ₀ first (with a
      :class:`HessianTrace` in ``hessian`` when ``hessian`` is given).

    >>> import jax, jax.numpy as jnp, dynsim
    >>> run = jax.jit(lambda s: dynsim.simulate(dynsim.optim.super_accelerated(0.1, 0.9, s),
    ...                                         dynsim.landscapes.quadratic(1.0), jnp.ones(1), 50).theta[-1, 0])
    >>> jax.vmap(run)(jnp.array([0.0, 0.9, 4.0])).shape
    (3,)

    By name, with the hyperparameters as one point of a sweep's grid:

    >>> tr = dynsim.simulate("super_accelerated", dynsim.landscapes.quadratic(1.0), jnp.ones(1), 50,
    ...                      hyper={"learning_rate": 0.1, "momentum": 0.9, "sigma": 0.0})
    >>> tr.theta.shape
    (51, 1)
    """
    n = check_steps(steps)
    rule = build_rule(optimizer, hyper)
    loss = loss_fn.loss if isinstance(loss_fn, Landscape) else loss_fn
    if not callable(loss):
        raise ValueError(f"loss_fn={loss_fn!r} must be callable or a Landscape")
    theta0 = jax.tree.map(jnp.asarray, theta0)
    leaves = jax.tree.leaves(theta0)
    if not leaves or not all(jnp.issubdtype(x.dtype, jnp.floating) for x in leaves):
        raise ValueError("theta0 must be a non-empty array (or pytree of arrays) of floats")
    grad_fn = jax.grad(loss)
    if hessian is not None:
        if not isinstance(hessian, _hessian.Hessian):
            raise ValueError(f"hessian={hessian!r} must be a dynsim.hessian.Hessian(every, k, iters, at) or None")
        return _simulate_with_hessian(rule, loss, theta0, n, unroll, hessian, hessian_key)

    def body(carry, _):
        theta, state = carry
        theta, state = rule.map_step(grad_fn, theta, state)
        return (theta, state), (theta, state.velocity, loss(theta))

    state0 = rule.map_init(theta0)
    (_, state), (thetas, vels, losses) = jax.lax.scan(
        body, (theta0, state0), None, length=n, unroll=unroll
    )
    cat = lambda first, rest: jnp.concatenate([first[None], rest], axis=0)  # noqa: E731
    return Trajectory(
        theta=jax.tree.map(cat, theta0, thetas),
        loss=cat(jnp.asarray(loss(theta0)), losses),
        velocity=jax.tree.map(cat, state0.velocity, vels),
        state=state,
    )


def _simulate_with_hessian(rule, loss, theta0, n, unroll, hessian: _hessian.Hessian, key):
    """:func:`simulate` plus Hessian metrics every ``hessian.every`` steps (a ``lax.cond`` on the
    step number, which no ``vmap`` batches: off-record steps cost nothing)."""
    grad_fn = jax.grad(loss)
    key = jax.random.PRNGKey(0) if key is None else key
    pre = getattr(rule, "name", None) in PRECONDITIONED_RULES
    dim = sum(x.size for x in jax.tree.leaves(theta0))
    every, k, iters = hessian.every, hessian.k, hessian.iters
    if k > dim:
        raise ValueError(f"hessian=Hessian(k={k}) must be <= the dimension {dim}")
    dtype = jax.tree.leaves(theta0)[0].dtype

    def measure(theta, state, record):
        phi = rule.lookahead_point(theta, state) if hessian.at == "lookahead" else theta
        kk = jax.random.fold_in(key, record)
        mv = lambda v: _hessian.hvp(loss, phi, v)  # noqa: E731
        res = _hessian.lanczos_top_k(mv, phi, k, iters, kk)
        out = (res.eigenvalues[0], res.eigenvalues, res.residuals[0])
        if pre:
            pmv = _hessian.preconditioned_matvec(mv, preconditioner(rule, state))
            ps = _hessian.lanczos_top_k(pmv, phi, 1, iters, jax.random.fold_in(kk, 1)).eigenvalues[0]
            out = out + (ps,)
        return jax.tree.map(lambda a: a.astype(dtype), out)

    def skip(theta, state, record):
        nan = jnp.full((), jnp.nan, dtype)
        out = (nan, jnp.full((k,), jnp.nan, dtype), nan)
        return out + ((nan,) if pre else ())

    def body(carry, i):
        theta, state = carry
        theta, state = rule.map_step(grad_fn, theta, state)
        h = jax.lax.cond(i % every == 0, measure, skip, theta, state, i // every)
        return (theta, state), (theta, state.velocity, loss(theta), h)

    state0 = rule.map_init(theta0)
    h0 = measure(theta0, state0, 0)
    (_, state), (thetas, vels, losses, hs) = jax.lax.scan(
        body, (theta0, state0), jnp.arange(1, n + 1), unroll=unroll
    )
    cat = lambda first, rest: jnp.concatenate([first[None], rest], axis=0)  # noqa: E731
    rec = jnp.arange(0, n + 1, every)
    hs = jax.tree.map(lambda a, b: cat(a, b)[rec], h0, hs)
    trace = HessianTrace(rec, hs[0], hs[1], hs[2], hs[3] if pre else None)
    return Trajectory(
        theta=jax.tree.map(cat, theta0, thetas),
        loss=cat(jnp.asarray(loss(theta0)), losses),
        velocity=jax.tree.map(cat, state0.velocity, vels),
        state=state,
        hessian=trace,
    )
