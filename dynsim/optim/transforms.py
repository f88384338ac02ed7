r"""Direction pieces: the optax-style gradient transformations ``D`` of the look-ahead map.

Each gives the step ``δ`` from the look-ahead gradient: ``−η g`` (Nakerst eq. (1)),
an EMA (the student report's momentum), RMSProp's ``g/\sqrt{r+ε}`` (Nakerst eq. (16))
and Adam's bias-corrected ``\hat m/(\sqrt{\hat v}+ε)``. Hyperparameters are runtime
values (numbers, arrays or tracers).
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from dynsim.optim.core import PyTree, Scalar, _as

__all__ = ["scale_by_learning_rate", "scale_by_ema", "scale_by_rms_sa", "scale_by_adam_sa"]


class EmptyState(NamedTuple):
    pass


def scale_by_learning_rate(learning_rate: Scalar) -> optax.GradientTransformation:
    r"""``δ = -η g``: the gradient step of Nakerst eq. (1)."""

    def init(params):
        del params
        return EmptyState()

    def update(updates, state, params=None):
        del params
        # -(η·g), not (-η)·g: bitwise the same, but XLA then has no per-step "-η" to hoist
        # (it hoists one private copy per unrolled step, each an extra array read per step)
        return jax.tree.map(lambda g: -(_as(learning_rate, g) * g), updates), state

    return optax.GradientTransformation(init, update)


class EmaState(NamedTuple):
    ema: PyTree


def scale_by_ema(beta: Scalar) -> optax.GradientTransformation:
    r"""``v ← βv + (1-β)g``; output ``v`` (the student report's EMA momentum)."""

    def init(params):
        return EmaState(jax.tree.map(jnp.zeros_like, params))

    def update(updates, state, params=None):
        del params
        ema = jax.tree.map(lambda v, g: _as(beta, g) * v + (1 - _as(beta, g)) * g, state.ema, updates)
        return ema, EmaState(ema)

    return optax.GradientTransformation(init, update)


class RmsState(NamedTuple):
    nu: PyTree


def scale_by_rms_sa(decay: Scalar, eps: Scalar) -> optax.GradientTransformation:
    r"""``r ← β₂ r + (1-β₂) g²``; output ``g / \sqrt{r + ε}`` (Nakerst eq. (16)).

    ε sits *inside* the square root, as in the paper's eqs. (16)-(17); ``r₀ = 0``.
    """

    def init(params):
        return RmsState(jax.tree.map(jnp.zeros_like, params))

    def update(updates, state, params=None):
        del params
        nu = jax.tree.map(
            lambda r, g: _as(decay, g) * r + (1 - _as(decay, g)) * g * g, state.nu, updates
        )
        out = jax.tree.map(lambda g, r: g / jnp.sqrt(r + _as(eps, g)), updates, nu)
        return out, RmsState(nu)

    return optax.GradientTransformation(init, update)


class AdamState(NamedTuple):
    mu: PyTree
    nu: PyTree
    count: jax.Array  # type: ignore[assignment]  # a field named like tuple.count (optax's name)


def scale_by_adam_sa(b1: Scalar, b2: Scalar, eps: Scalar) -> optax.GradientTransformation:
    r"""Adam's direction ``\hat m / (\sqrt{\hat v} + ε)`` with bias correction (Kingma & Ba)."""

    def init(params):
        zeros = jax.tree.map(jnp.zeros_like, params)
        return AdamState(zeros, zeros, jnp.zeros([], jnp.int32))

    def update(updates, state, params=None):
        del params
        count = state.count + 1
        mu = jax.tree.map(lambda m, g: _as(b1, g) * m + (1 - _as(b1, g)) * g, state.mu, updates)
        nu = jax.tree.map(lambda v, g: _as(b2, g) * v + (1 - _as(b2, g)) * g * g, state.nu, updates)

        def direction(m, v):
            c = count.astype(m.dtype)
            m_hat = m / (1 - _as(b1, m) ** c)
            v_hat = v / (1 - _as(b2, v) ** c)
            return m_hat / (jnp.sqrt(v_hat) + _as(eps, m))

        return jax.tree.map(direction, mu, nu), AdamState(mu, nu, count)

    return optax.GradientTransformation(init, update)
