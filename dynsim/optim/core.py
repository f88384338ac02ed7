r"""The one look-ahead momentum map (Nakerst et al. eq. (4), generalised) and its :class:`Rule` type.

:func:`lookahead_momentum` composes a direction piece with look-ahead momentum; the
result is a :class:`Rule`, an optax ``GradientTransformation`` in the reparametrised
coordinates Θ that also runs the paper's map in θ (:meth:`Rule.map_step`). The
maps and both coordinate systems are described in :mod:`dynsim.optim`.
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax

PyTree = Any
Scalar = Any  # float | jax.Array (possibly a tracer)

__all__ = ["LookaheadState", "Rule", "lookahead_momentum"]


def _as(x: Scalar, like: jax.Array) -> jax.Array:
    """Cast a hyperparameter to a leaf's dtype (keeps float32 runs float32)."""
    return jnp.asarray(x, dtype=like.dtype)


class LookaheadState(NamedTuple):
    """State of every rule, in either coordinate system.

    Attributes:
      velocity: last displacement ``u_{i-1} = θ_i − θ_{i-1}`` (Nakerst's ``m^{(i-1)}``);
        zero before the first step.
      inner: state of the direction piece (RMS/Adam moments, EMA, or empty).
      count: number of steps taken.
    """

    velocity: PyTree
    inner: PyTree
    count: jax.Array  # type: ignore[assignment]  # a field named like tuple.count (optax's name)


def _constant(x: Scalar) -> Callable[[jax.Array], Scalar]:
    return lambda count: x


class Rule(optax.GradientTransformation):
    """An optax ``GradientTransformation`` (Θ view) that also exposes its paper map (θ view).

    Use it anywhere optax is accepted (``init``/``update``, ``optax.chain``); use
    :meth:`map_step` / :func:`dynsim.simulate` for trajectories in the paper's θ.
    Build rules with the factories of :mod:`dynsim.optim`, not directly.
    """

    # NamedTuple subclass with attributes: fields stay (init, update) so optax.chain
    # and friends unpack it as a plain GradientTransformation.
    name: str
    hyperparams: dict[str, Scalar]
    direction: optax.GradientTransformation
    momentum_fn: Callable[[jax.Array], Scalar]
    sigma_fn: Callable[[jax.Array], Scalar]

    def map_init(self, theta: PyTree) -> LookaheadState:
        """State before the first step (zero velocity)."""
        return self.init(theta)

    def lookahead_point(self, theta: PyTree, state: LookaheadState) -> PyTree:
        """``φ = θ + σ_i u_{i-1}``, where the gradient is taken."""
        s = self.sigma_fn(state.count)
        return jax.tree.map(lambda t, u: t + _as(s, u) * u, theta, state.velocity)

    def map_step(self, grad_fn: Callable[[PyTree], PyTree], theta: PyTree, state: LookaheadState):
        """One step of the map in the paper's coordinates: returns ``(θ_{i+1}, state)``."""
        phi = self.lookahead_point(theta, state)
        # the direction piece sees the look-ahead point as its parameters: that is what the Θ
        # view passes (Θ = φ), e.g. to optax's weight decay
        u, new_state = self._core(grad_fn(phi), state, phi)
        return jax.tree.map(jnp.add, theta, u), new_state

    def to_paper(self, params: PyTree, state: LookaheadState) -> PyTree:
        """Θ (what optax updates) → θ (the paper's coordinates): ``θ = Θ − σ_i u_{i-1}``."""
        s = self.sigma_fn(state.count)
        return jax.tree.map(lambda p, u: p - _as(s, u) * u, params, state.velocity)

    def from_paper(self, theta: PyTree, state: LookaheadState) -> PyTree:
        """θ → Θ; the inverse of :meth:`to_paper`."""
        return self.lookahead_point(theta, state)

    def _core(self, g: PyTree, state: LookaheadState, params: PyTree = None):
        delta, inner = self.direction.update(g, state.inner, params)
        mu = self.momentum_fn(state.count)
        u = jax.tree.map(lambda v, d: _as(mu, v) * v + d, state.velocity, delta)
        return u, LookaheadState(u, inner, state.count + 1)

    def __repr__(self) -> str:
        hp = ", ".join(f"{k}={v!r}" for k, v in self.hyperparams.items())
        return f"{self.name}({hp})"


def lookahead_momentum(
    direction: optax.GradientTransformation,
    momentum: Scalar | Callable[[jax.Array], Scalar] = 0.0,
    sigma: Scalar | Callable[[jax.Array], Scalar] = 0.0,
    *,
    name: str = "lookahead_momentum",
    hyperparams: dict[str, Scalar] | None = None,
) -> Rule:
    r"""Compose a direction piece with look-ahead momentum (the map in :mod:`dynsim.optim`).

    Args:
      direction: optax-style transformation giving the step ``δ`` from the
        look-ahead gradient (it must include the sign and the learning rate).
      momentum: ``μ`` or a function ``count -> μ_i`` (step ``i = count + 1``).
      sigma: look-ahead ``σ`` or a function ``count -> σ_i``.
    """
    momentum_fn = momentum if callable(momentum) else _constant(momentum)
    sigma_fn = sigma if callable(sigma) else _constant(sigma)

    def init(params):
        return LookaheadState(
            velocity=jax.tree.map(jnp.zeros_like, params),
            inner=direction.init(params),
            count=jnp.zeros([], jnp.int32),
        )

    def update(updates, state, params=None):
        sigma_old = sigma_fn(state.count)
        u, new_state = rule._core(updates, state, params)
        sigma_new = sigma_fn(new_state.count)
        # Θ_{i+1} − Θ_i = (1 + σ_{i+1}) u_i − σ_i u_{i-1}   (see dynsim.optim's docstring)
        step = jax.tree.map(
            lambda un, uo: (1 + _as(sigma_new, un)) * un - _as(sigma_old, uo) * uo,
            u,
            state.velocity,
        )
        return step, new_state

    rule = Rule(init, update)
    rule.name = name
    rule.hyperparams = dict(hyperparams or {})
    rule.direction = direction
    rule.momentum_fn = momentum_fn
    rule.sigma_fn = sigma_fn
    return rule
