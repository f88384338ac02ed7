"""dynsim.ntk: the NTK Gram matrix against the Jacobian, its infinite-width limit, and training with optax."""
import jax
import jax.numpy as jnp
import numpy as np

import dynsim
from dynsim import landscapes, ntk, optim


def test_ntk_gram_equals_jacobian_product():
    x, _ = ntk.ntk_data(n=5, d=3, seed=2)
    w, a = ntk.two_layer_init(7, 3, seed=2)
    x, w, a = jnp.asarray(x), jnp.asarray(w), jnp.asarray(a)
    jac = jax.jacrev(lambda w: ntk.two_layer_apply(w, a, x))(w).reshape(5, -1)
    np.testing.assert_allclose(np.asarray(ntk.ntk_gram(w, a, x)), np.asarray(jac @ jac.T), rtol=0, atol=1e-14)


def test_ntk_gram_tends_to_infinite_width_kernel():
    x, _ = ntk.ntk_data(n=6, d=4, seed=3)
    w, a = ntk.two_layer_init(40000, 4, seed=3)
    h = np.asarray(ntk.ntk_gram(jnp.asarray(w), jnp.asarray(a), jnp.asarray(x)))
    h_inf = ntk.ntk_gram_infinite(x)
    np.testing.assert_allclose(np.diag(h_inf), 0.5, atol=1e-12)  # x on the sphere: P(wᵀx > 0) = 1/2
    assert np.max(np.abs(h - h_inf)) < 0.02  # Monte-Carlo error ~ 1/(2√m) = 0.0025


def test_ntk_data_and_lambda0():
    x, y = ntk.ntk_data(n=10, d=5, seed=1)
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0, rtol=1e-14)
    assert y.shape == (10,)
    lam = ntk.lambda0(x)
    assert lam == np.linalg.eigvalsh(ntk.ntk_gram_infinite(x)).min() and 0 < lam < 0.5
    # two parallel inputs make H∞ singular: λ₀ = 0
    assert abs(ntk.lambda0(np.stack([x[0], x[0], x[1]]))) < 1e-14


def test_train_optax_matches_simulate():
    """The optax view (Θ) of a rule, mapped to θ, reproduces dynsim.simulate's paper iterates."""
    L = landscapes.quadratic_nd(np.array([0.1, 0.5, 1.0]), rotation_seed=1)
    th0 = jnp.array([1.0, -0.5, 0.3])
    rules = (optim.heavy_ball(0.3, 0.8), optim.nesterov_time_varying(0.3, 3.0), optim.super_accelerated(0.3, 0.9, 2.0))
    for rule in rules:
        losses, th = ntk.train_optax(rule, L.loss, th0, 50)
        tr = dynsim.simulate(rule, L, th0, 50)
        np.testing.assert_allclose(np.asarray(losses), np.asarray(tr.loss), rtol=1e-10, atol=1e-14)
        np.testing.assert_allclose(np.asarray(th), np.asarray(tr.theta[-1]), rtol=1e-10, atol=1e-14)
