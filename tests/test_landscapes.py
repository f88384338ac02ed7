"""dynsim.landscapes: minima and Hessians against independent computations."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.optimize

from dynsim import landscapes


def test_nakerst2d_minimum():
    land = landscapes.nakerst2d()
    m = landscapes.NAKERST2D_MINIMUM
    np.testing.assert_allclose(m, [1.690, 1.963], atol=5e-4)  # the paper's reported value
    assert float(jnp.linalg.norm(jax.grad(land.loss)(jnp.asarray(m)))) < 1e-10
    # global: scipy from many starts (on an independent numpy transcription of eq. 15) finds nothing lower
    def eq15(x):
        return (x[0] ** 2 + 2 * x[1] - 7) ** 2 + (2 * x[0] + x[1] - 5) ** 2 + 1e-3 * (x[0] ** 6 + x[1] ** 6)

    assert abs(eq15(np.asarray(m)) - float(land.loss(jnp.asarray(m)))) < 1e-12
    best = min(
        scipy.optimize.minimize(eq15, x0, method="Nelder-Mead",
                                options=dict(xatol=1e-10, fatol=1e-14, maxiter=4000)).fun
        for x0 in np.random.default_rng(0).uniform(-5, 5, (20, 2))
    )
    assert float(land.loss(jnp.asarray(m))) <= best + 1e-9


@pytest.mark.slow
def test_linear_regression_recipe_and_hessian():
    land = landscapes.linear_regression()
    assert land.minimum.shape == (51,)
    assert float(jnp.linalg.norm(jax.grad(land.loss)(land.minimum))) < 1e-10
    h = jax.hessian(land.loss)(jnp.zeros(51))
    np.testing.assert_allclose(np.linalg.eigvalsh(np.asarray(h)), land.hessian_eigenvalues, rtol=1e-8, atol=1e-12)
    again = landscapes.linear_regression(seed=0)
    np.testing.assert_array_equal(again.minimum, land.minimum)
    assert not np.allclose(landscapes.linear_regression(seed=1).minimum, land.minimum)


def test_quadratic_nd_spectrum():
    eig = np.array([0.1, 0.5, 2.0, 7.0])
    land = landscapes.quadratic_nd(eig, rotation_seed=3)
    h = np.asarray(jax.hessian(land.loss)(jnp.zeros(4)))
    np.testing.assert_allclose(np.linalg.eigvalsh(h), eig, rtol=1e-12)
    assert not np.allclose(h, np.diag(np.diag(h)))  # really rotated


def test_rosenbrock_and_quadratic():
    rb = landscapes.rosenbrock()
    assert float(rb.loss(rb.minimum)) == 0.0
    assert float(jnp.linalg.norm(jax.grad(rb.loss)(rb.minimum))) == 0.0
    q = landscapes.quadratic(jnp.array([1.0, 3.0]))
    np.testing.assert_allclose(jax.grad(q.loss)(jnp.array([2.0, 2.0])), [2.0, 6.0])


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: landscapes.quadratic(-1.0), "k must be > 0"),
        (lambda: landscapes.quadratic(float("nan")), "k must be finite"),
        (lambda: landscapes.quadratic_nd(np.ones((2, 2))), "1-D"),
        (lambda: landscapes.get("himmelblau"), "landscape='himmelblau' is unknown"),
        (lambda: landscapes.linear_regression(n_features=0), "n_features"),
    ],
)
def test_bad_arguments(call, match):
    with pytest.raises(ValueError, match=match):
        call()
