"""dynsim.hessian (Lanczos on HVPs) and the edge-of-stability thresholds, against independent oracles.

Oracles: ``numpy.linalg.eigvalsh`` of the dense ``jax.hessian``; the companion-matrix
spectral radius (``numpy.linalg.eigvals``); the Jacobian of the real adaptive rules.
"""
import dataclasses
import operator

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from dynsim import data, hessian, landscapes, models


@pytest.fixture(scope="module")
def small_net():
    """64-6-10 sigmoid net (460 parameters) on 200 sklearn digits: the loss as a function of a pytree."""
    d = data.load("digits")
    net = models.nielsen_mlp((6,), input_dim=64)

    def make(dtype):
        params = net.init(0, (64,), dtype)
        x = jnp.asarray(d.x_train[:200].reshape(200, -1), dtype)
        y = jnp.asarray(d.y_train[:200])
        return (lambda p: net.loss_fn(p, x, y)), params

    return make


def _dense_eigvalsh(loss, params):
    flat, unravel = ravel_pytree(params)
    h = jax.hessian(lambda f: loss(unravel(f)))(flat.astype(jnp.float64))
    return np.linalg.eigvalsh(np.asarray(h, np.float64))[::-1]


@pytest.mark.slow
def test_hvp_is_dense_hessian_times_vector(small_net, rng):
    loss, params = small_net(jnp.float64)
    flat, unravel = ravel_pytree(params)
    h = np.asarray(jax.hessian(lambda f: loss(unravel(f)))(flat))
    v = rng.standard_normal(flat.size)
    got = ravel_pytree(hessian.hvp(loss, params, unravel(jnp.asarray(v))))[0]
    np.testing.assert_allclose(got, h @ v, rtol=1e-10, atol=1e-12)


@pytest.mark.slow
def test_lanczos_top3_matches_eigvalsh_float64(small_net):
    loss, params = small_net(jnp.float64)
    ref = _dense_eigvalsh(loss, params)[:3]
    r = hessian.lanczos_top_k(lambda v: hessian.hvp(loss, params, v), params, 3, 40, jax.random.PRNGKey(3),
                              return_vectors=True)
    np.testing.assert_allclose(r.eigenvalues, ref, rtol=1e-4)
    # the residual bound is honest: |λ_i − true| ≤ residual (+ rounding)
    assert np.all(np.abs(np.asarray(r.eigenvalues) - ref) <= np.asarray(r.residuals) + 1e-12 * ref[0])
    # Ritz vectors: unit, orthogonal, and H y ≈ λ y
    y = jax.vmap(lambda t: ravel_pytree(t)[0])(r.eigenvectors)
    np.testing.assert_allclose(np.asarray(y @ y.T), np.eye(3), atol=1e-10)
    hy = ravel_pytree(hessian.hvp(loss, params, jax.tree.map(lambda a: a[0], r.eigenvectors)))[0]
    np.testing.assert_allclose(hy, r.eigenvalues[0] * y[0], atol=10 * float(r.residuals[0]) + 1e-10)
    # the convenience wrappers agree
    np.testing.assert_allclose(hessian.top_eigenvalues(loss, params, 3, iters=40, key=jax.random.PRNGKey(3)),
                               r.eigenvalues, rtol=1e-12)
    assert abs(float(hessian.sharpness(loss, params, iters=40)) - ref[0]) < 1e-4 * ref[0]


@pytest.mark.slow
def test_lanczos_top3_float32_within_rounding_tolerance(small_net):
    """float32: the HVP itself carries rounding ~ ε₃₂·‖H‖ times a modest accumulation factor (sums
    over 200 examples × 10 outputs, two passes); Lanczos adds nothing once converged. Measured
    errors are ~3e-7·λ_max; we allow 2e-5·λ_max (≈ 170 ε₃₂), still 5x tighter than the 1e-4 of
    the float64 test, so a real bug (a wrong eigenvalue, a lost orthogonality) cannot pass."""
    loss32, params32 = small_net(jnp.float32)
    loss64, params64 = small_net(jnp.float64)
    ref = _dense_eigvalsh(loss64, params64)[:3]
    got = hessian.top_eigenvalues(loss32, params32, 3, iters=40, key=jax.random.PRNGKey(3))
    assert got.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(got, np.float64), ref, atol=2e-5 * ref[0], rtol=0)


@pytest.mark.parametrize("rotation_seed", [None, 4])
def test_quadratic_nd_every_eigenvalue_when_iters_reach_dim(rotation_seed):
    """With iters ≥ n the Krylov space is everything: Ritz values are the exact spectrum
    (also with repeated eigenvalues, where plain Lanczos breaks down and we restart)."""
    eig = np.array([0.1, 0.5, 0.5, 2.0, 3.0, 3.0, 7.5])
    land = landscapes.quadratic_nd(eig, rotation_seed=rotation_seed)
    got = hessian.top_eigenvalues(land.loss, jnp.zeros(7), 7, iters=50, key=jax.random.PRNGKey(1))
    np.testing.assert_allclose(got, np.sort(eig)[::-1], rtol=1e-10, atol=1e-12)
    assert np.all(np.isfinite(np.asarray(got)))


@pytest.mark.slow
def test_vmapped_lanczos_equals_loop(small_net):
    """Three models' parameters (and keys) vmapped == each one alone."""
    loss, _ = small_net(jnp.float64)
    net = models.nielsen_mlp((6,), input_dim=64)
    stack = jax.tree.map(lambda *a: jnp.stack(a), *[net.init(s, (64,), jnp.float64) for s in range(3)])
    keys = jax.random.split(jax.random.PRNGKey(0), 3)
    f = lambda p, k: hessian.top_eigenvalues(loss, p, 3, iters=25, key=k)  # noqa: E731
    batched = jax.jit(jax.vmap(f))(stack, keys)
    for i in range(3):
        one = f(jax.tree.map(operator.itemgetter(i), stack), keys[i])
        np.testing.assert_allclose(batched[i], one, rtol=1e-10)
    # and a grid of preconditioners
    pre = jax.tree.map(lambda a: 1.0 + jnp.abs(a), stack)
    g = lambda p, q, k: hessian.preconditioned_sharpness(loss, p, q, iters=25, key=k)  # noqa: E731
    pb = jax.vmap(g)(stack, pre, keys)
    for i in range(3):
        one = g(*(jax.tree.map(operator.itemgetter(i), t) for t in (stack, pre)), keys[i])
        np.testing.assert_allclose(pb[i], one, rtol=1e-10)


@pytest.mark.slow
def test_preconditioned_sharpness_is_top_eigenvalue_of_p_inverse_h(small_net, rng):
    loss, params = small_net(jnp.float64)
    flat, unravel = ravel_pytree(params)
    h = np.asarray(jax.hessian(lambda f: loss(unravel(f)))(flat))
    p = rng.uniform(0.1, 3.0, flat.size)
    ref = np.max(np.linalg.eigvals(h / p[:, None]).real)  # P⁻¹H, not symmetrised: independent
    got = hessian.preconditioned_sharpness(loss, params, unravel(jnp.asarray(p)), iters=60)
    np.testing.assert_allclose(got, ref, rtol=1e-6)


@pytest.mark.slow
def test_deterministic_in_key_and_bad_arguments(small_net):
    loss, params = small_net(jnp.float64)
    a = hessian.top_eigenvalues(loss, params, 2, iters=8, key=jax.random.PRNGKey(5))
    b = hessian.top_eigenvalues(loss, params, 2, iters=8, key=jax.random.PRNGKey(5))
    np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="k=5"):
        hessian.lanczos_top_k(lambda v: v, 4, k=5, iters=10)
    with pytest.raises(ValueError, match="iters"):
        hessian.lanczos_top_k(lambda v: v, 4, k=1, iters=0)
    with pytest.raises(ValueError, match="k="):
        hessian.lanczos_top_k(lambda v: v, 4, k=1.5)
    with pytest.raises(ValueError, match="dim_or_params"):
        hessian.lanczos_top_k(lambda v: v, {"a": jnp.zeros(3, jnp.int32)})
    with pytest.raises(ValueError, match="preconditioner"):
        hessian.preconditioned_sharpness(loss, params, jnp.ones(3))


@pytest.mark.parametrize("kwargs, match", [
    (dict(every=-1), "every=-1"),
    (dict(every=1.5), "every=1.5"),
    (dict(every=0), "every=0"),
    (dict(every=2, k=5, iters=4), "k=5 must be <= iters=4"),
    (dict(every=2, iters=0), "iters=0"),
    (dict(every=2, at="phi"), "at='phi'"),
])
def test_hessian_options_are_checked_at_construction(kwargs, match):
    with pytest.raises(ValueError, match=match):
        hessian.Hessian(**kwargs)


def test_hessian_options_are_frozen_and_hashable():
    h = hessian.Hessian(10, k=3, iters=30, at="theta")
    assert (h.every, h.k, h.iters, h.at) == (10, 3, 30, "theta")
    assert hash(h) == hash(hessian.Hessian(10, 3, 30, "theta"))
    with pytest.raises(dataclasses.FrozenInstanceError):
        h.every = 5
