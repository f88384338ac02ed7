r"""Trajectories of an optimizer map: :func:`simulate`.

The map runs inside one ``jax.lax.scan``. The function is pure, so it jits,
vmaps over hyperparameters and initial points, and differentiates end to end
(``jax.grad`` with respect to η, μ, σ or θ₀ goes through the whole scan).
"""
from __future__ import annotations

import operator
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax

from dynsim.landscapes import Landscape
from dynsim.optim import Rule, lookahead_momentum

PyTree = Any

__all__ = ["Trajectory", "simulate", "as_rule", "check_steps"]


class Trajectory(NamedTuple):
    """A simulated trajectory in the paper's coordinates.

    Attributes:
      theta: ``(steps + 1, *θ₀.shape)``, θ₀ first.
      loss: ``(steps + 1,)``, ``L(θ_i)`` (at θ, not at the look-ahead point).
      velocity: ``(steps + 1, *θ₀.shape)``, the displacement ``u_{i-1} = θ_i − θ_{i-1}``
        entering step ``i`` (Nakerst's ``m^{(i-1)}``); zero first.
      state: the rule's final state (moments, count), for continuing a run.
    """

    theta: PyTree
    loss: jax.Array
    velocity: PyTree
    state: Any


def as_rule(optimizer) -> Rule:
    """Accept a :class:`dynsim.optim.Rule` or any optax transformation.

    A plain optax transformation has no look-ahead, so its paper coordinates are its
    parameters: it is wrapped as a direction piece with ``μ = σ = 0``.
    """
    if isinstance(optimizer, Rule):
        return optimizer
    if isinstance(optimizer, optax.GradientTransformation) or (
        hasattr(optimizer, "init") and hasattr(optimizer, "update")
    ):
        return lookahead_momentum(optimizer, 0.0, 0.0, name=type(optimizer).__name__)
    raise ValueError(
        f"optimizer={optimizer!r} must be a dynsim.optim rule or an optax GradientTransformation"
    )


def check_steps(steps) -> int:
    """``steps`` as a non-negative Python int (it is a scan length); ValueError naming it otherwise."""
    try:
        n = operator.index(steps)
    except TypeError:
        raise ValueError(f"steps={steps!r} must be a Python int (it sets the scan length)") from None
    if n < 0:
        raise ValueError(f"steps={steps!r} must be >= 0")
    return n


def simulate(
    optimizer,
    loss_fn: Callable[[PyTree], jax.Array] | Landscape,
    theta0: PyTree,
    steps: int,
    *,
    unroll: int = 1,
) -> Trajectory:
    r"""Run ``steps`` steps of ``optimizer`` on ``loss_fn`` from ``theta0``.

    Args:
      optimizer: a :mod:`dynsim.optim` rule (or any optax transformation).
      loss_fn: ``θ -> scalar`` or a :class:`dynsim.landscapes.Landscape`.
      theta0: initial point (array or pytree of arrays).
      steps: number of steps (static: it is the scan length).
      unroll: ``lax.scan`` unroll factor.

    Returns:
      A :class:`Trajectory` in the paper's coordinates, θ₀ first.

    >>> import jax, jax.numpy as jnp, dynsim
    >>> run = jax.jit(lambda s: dynsim.simulate(dynsim.optim.super_accelerated(0.1, 0.9, s),
    ...                                         dynsim.landscapes.quadratic(1.0), jnp.ones(1), 50).theta[-1, 0])
    >>> jax.vmap(run)(jnp.array([0.0, 0.9, 4.0])).shape
    (3,)
    """
    n = check_steps(steps)
    rule = as_rule(optimizer)
    loss = loss_fn.loss if isinstance(loss_fn, Landscape) else loss_fn
    if not callable(loss):
        raise ValueError(f"loss_fn={loss_fn!r} must be callable or a Landscape")
    theta0 = jax.tree.map(jnp.asarray, theta0)
    leaves = jax.tree.leaves(theta0)
    if not leaves or not all(jnp.issubdtype(x.dtype, jnp.floating) for x in leaves):
        raise ValueError("theta0 must be a non-empty array (or pytree of arrays) of floats")
    grad_fn = jax.grad(loss)

    def body(carry, _):
        theta, state = carry
        theta, state = rule.map_step(grad_fn, theta, state)
        return (theta, state), (theta, state.velocity, loss(theta))

    state0 = rule.map_init(theta0)
    (_, state), (thetas, vels, losses) = jax.lax.scan(
        body, (theta0, state0), None, length=n, unroll=unroll
    )
    cat = lambda first, rest: jnp.concatenate([first[None], rest], axis=0)
    return Trajectory(
        theta=jax.tree.map(cat, theta0, thetas),
        loss=cat(jnp.asarray(loss(theta0)), losses),
        velocity=jax.tree.map(cat, state0.velocity, vels),
        state=state,
    )
