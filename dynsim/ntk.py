r"""Bu, Xu & Chen's (and Du et al.'s) two-layer ReLU network in the neural-tangent-kernel regime.

The model is

.. math:: f(x) = \frac{1}{\sqrt m} \sum_{r=1}^{m} a_r\, \mathrm{relu}(w_r^\top x),
          \qquad w_r \sim N(0, I_d)\ \text{(trained)},\quad a_r \sim U\{\pm 1\}\ \text{(fixed)},

on ``n`` inputs on the unit sphere ``S^{d−1}`` with the loss ``L = ½‖f − y‖²``. The
Gram matrix of the first-layer Jacobian, ``H = J Jᵀ`` (:func:`ntk_gram`), tends as
``m → ∞`` to ``H∞`` (:func:`ntk_gram_infinite`); its smallest eigenvalue
``λ₀ = λ_min(H∞)`` (:func:`lambda0`) sets the convergence rates: gradient flow at
``e^{−λ₀ t}``, heavy-ball flow with friction ``√(2λ₀)`` at ``e^{−√(λ₀/2) t}`` (a bound;
Bu et al., Theorem 1). For wide ``m`` the kernel barely moves in training, and the loss
follows the same rule on the frozen quadratic ``½vᵀH(0)v + r₀ᵀv``.

:func:`train_optax` runs any :mod:`dynsim.optim` rule on such a loss as a plain optax
transformation and records the loss at the paper's iterate ``θ = rule.to_paper(Θ, state)``.

References: S. S. Du, X. Zhai, B. Poczos, A. Singh, "Gradient descent provably optimizes
over-parameterized neural networks", ICLR 2019; Z. Bu, S. Xu, K. Chen, "A dynamical view
on optimization algorithms of overparameterized neural networks", AISTATS 2021.

>>> import jax.numpy as jnp
>>> x, y = ntk_data(n=4, d=3)
>>> w, a = two_layer_init(64, 3)
>>> ntk_gram(jnp.asarray(w), jnp.asarray(a), jnp.asarray(x)).shape
(4, 4)
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

__all__ = ["ntk_data", "two_layer_init", "two_layer_apply", "ntk_gram", "ntk_gram_infinite", "lambda0", "train_optax"]


def ntk_data(n: int = 30, d: int = 8, seed: int = 0):
    """``n`` inputs uniform on the unit sphere S^{d−1} and targets ``y ~ N(0, 1)`` (Du et al.'s setting)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x, rng.standard_normal(n)


def two_layer_init(m: int, d: int, seed: int = 0):
    """``w_r ~ N(0, I_d)`` (trained), ``a_r ~ U{±1}`` (fixed); ``(w, a)`` with shapes ``(m, d)``, ``(m,)``."""
    rng = np.random.default_rng(seed + 1)
    return rng.standard_normal((m, d)), rng.choice([-1.0, 1.0], size=m)


def two_layer_apply(w, a, x):
    r"""``f(x) = (1/√m) Σ_r a_r relu(w_rᵀx)`` for each row of ``x``."""
    return jax.nn.relu(x @ w.T) @ a / jnp.sqrt(w.shape[0])


def ntk_gram(w, a, x):
    r"""NTK Gram matrix of the first layer, ``H = J Jᵀ`` with ``J = ∂f/∂W``:
    ``H_ij = (x_iᵀx_j / m) Σ_r a_r² 1{w_rᵀx_i > 0} 1{w_rᵀx_j > 0}``.
    """
    s = (x @ w.T > 0).astype(x.dtype) * jnp.abs(a)
    return (x @ x.T) * (s @ s.T) / w.shape[0]


def ntk_gram_infinite(x):
    r"""``H∞_ij = x_iᵀx_j (π − arccos x_iᵀx_j) / 2π``: the ``m → ∞`` limit (Du et al.).

    For first-layer weights ``w ~ N(0, I)`` and unit inputs.

    >>> ntk_gram_infinite(np.eye(2)).tolist()          # orthogonal unit inputs: ½ on the diagonal, 0 off it
    [[0.5, 0.0], [0.0, 0.5]]
    """
    g = np.clip(np.asarray(x) @ np.asarray(x).T, -1.0, 1.0)
    return g * (np.pi - np.arccos(g)) / (2 * np.pi)


def lambda0(x) -> float:
    r"""``λ₀ = λ_min(H∞)`` (:func:`ntk_gram_infinite`), positive when no two inputs are parallel."""
    return float(np.linalg.eigvalsh(ntk_gram_infinite(x))[0])


def train_optax(rule, loss, params0, steps: int):
    """Train with ``rule`` used as a plain optax transformation (``init``/``update``), full batch.

    Returns the loss at the paper's iterate θ_k = ``rule.to_paper(Θ_k, state)`` for
    k = 0..steps, and the final θ. (Loss only: memory O(steps), not O(steps × params).)
    """
    grad = jax.grad(loss)

    def body(carry, _):
        params, state = carry
        theta = rule.to_paper(params, state)
        upd, state = rule.update(grad(params), state, params)
        return (optax.apply_updates(params, upd), state), loss(theta)

    (params, state), losses = jax.lax.scan(body, (params0, rule.init(params0)), None, length=steps)
    theta = rule.to_paper(params, state)
    return jnp.concatenate([losses, loss(theta)[None]]), theta
