"""dynsim.simulate: shapes, purity, vmap, gradients, errors."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import dynsim
from dynsim import landscapes, optim
from dynsim.hessian import Hessian


def test_shapes_and_first_row():
    t = dynsim.simulate(optim.super_accelerated(0.1, 0.9, 2.0), landscapes.nakerst2d(), jnp.array([-1.0, -3.8]), 7)
    assert t.theta.shape == (8, 2) and t.loss.shape == (8,) and t.velocity.shape == (8, 2)
    np.testing.assert_array_equal(t.theta[0], [-1.0, -3.8])
    np.testing.assert_array_equal(t.velocity[0], [0.0, 0.0])
    np.testing.assert_allclose(np.diff(t.theta, axis=0), t.velocity[1:], rtol=1e-12)
    np.testing.assert_allclose(t.loss, jax.vmap(landscapes.nakerst2d().loss)(t.theta), rtol=1e-12)
    assert int(t.state.count) == 7
    assert dynsim.simulate(optim.gd(0.1), landscapes.quadratic(), jnp.ones(3), 0).theta.shape == (1, 3)


def test_vmap_over_initial_points_matches_loop():
    rule = optim.super_accelerated(0.01, 0.9, 3.0)
    starts = jnp.array([[-1.0, -3.8], [0.0, 0.0], [3.0, 1.0]])
    def f(x0):
        return dynsim.simulate(rule, landscapes.nakerst2d(), x0, 50).theta
    batched = jax.vmap(f)(starts)
    for i in range(3):
        np.testing.assert_allclose(batched[i], f(starts[i]), rtol=1e-12)


def test_plain_optax_transformation_is_accepted():
    t = dynsim.simulate(optax.sgd(0.1), landscapes.quadratic(2.0), jnp.array([1.0]), 3)
    np.testing.assert_allclose(t.theta[:, 0], [1.0, 0.8, 0.64, 0.512])


def objective(hp, steps=80):
    lr, mu, s = hp
    rule = optim.super_accelerated(lr, mu, s)
    t = dynsim.simulate(rule, landscapes.nakerst2d(), jnp.array([-1.0, -3.8]), steps)
    return jnp.log(jnp.sum((t.theta[-1] - landscapes.NAKERST2D_MINIMUM) ** 2)) + 0.1 * jnp.mean(t.loss)


@pytest.mark.slow
@pytest.mark.parametrize("hp", [(0.01, 0.9, 2.0), (0.005, 0.8, 4.0)])
def test_gradient_wrt_hyperparameters_matches_finite_differences(hp):
    hp = jnp.array(hp)
    g = jax.grad(objective)(hp)
    for i in range(3):
        h = 1e-6 * max(1.0, abs(float(hp[i])))
        e = jnp.zeros(3).at[i].set(h)
        fd = (objective(hp + e) - objective(hp - e)) / (2 * h)
        np.testing.assert_allclose(g[i], fd, rtol=2e-6, atol=1e-9)


def test_gradient_wrt_initial_point_matches_finite_differences():
    rule = optim.rmsprop_sa(0.01, 0.9, 2.0)
    def f(x0):
        return jnp.sum(dynsim.simulate(rule, landscapes.nakerst2d(), x0, 60).theta[-1] ** 2)
    x0 = jnp.array([-1.0, -3.8])
    g = jax.grad(f)(x0)
    for i in range(2):
        e = jnp.zeros(2).at[i].set(1e-6)
        np.testing.assert_allclose(g[i], (f(x0 + e) - f(x0 - e)) / 2e-6, rtol=1e-6)


def test_float32_stays_float32():
    t = dynsim.simulate(optim.super_accelerated(0.1, 0.9, 2.0), landscapes.quadratic(1.0), jnp.ones(2, jnp.float32), 5)
    assert t.theta.dtype == jnp.float32 and t.velocity.dtype == jnp.float32


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(steps=-1), "steps=-1"),
        (dict(steps=2.5), "steps=2.5"),
        (dict(theta0=jnp.array([1, 2])), "theta0"),
        (dict(loss_fn=3.0), "loss_fn"),
        (dict(optimizer="sa"), "optimizer="),
    ],
)
def test_bad_arguments(kwargs, match):
    args = dict(optimizer=optim.gd(0.1), loss_fn=landscapes.quadratic(), theta0=jnp.ones(2), steps=3)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        dynsim.simulate(**args)


# --------------------------------------------------------------------------- Hessian metrics (issue #14)


@pytest.mark.slow
@pytest.mark.parametrize("rule", [optim.super_accelerated(0.05, 0.9, 3.0), optim.rmsprop_sa(0.01, 0.9, 2.0)])
def test_tracked_sharpness_on_quadratic_nd_is_the_largest_eigenvalue(rule):
    eig = np.array([0.2, 0.7, 1.5, 4.0, 9.0])
    land = landscapes.quadratic_nd(eig, rotation_seed=3)
    t = dynsim.simulate(rule, land, jnp.ones(5), 30, hessian=Hessian(7, k=3))
    np.testing.assert_array_equal(t.hessian.step, [0, 7, 14, 21, 28])
    np.testing.assert_allclose(t.hessian.sharpness, 9.0, rtol=1e-10)
    np.testing.assert_allclose(t.hessian.eigenvalues, np.tile([9.0, 4.0, 1.5], (5, 1)), rtol=1e-10)
    plain = dynsim.simulate(rule, land, jnp.ones(5), 30)
    assert plain.hessian is None
    np.testing.assert_array_equal(t.theta, plain.theta)  # the metric does not touch the trajectory
    assert (t.hessian.preconditioned_sharpness is None) == (rule.name != "rmsprop_sa")


@pytest.mark.slow
def test_sharpness_is_taken_at_the_lookahead_point():
    """Rosenbrock (curvature varies): record i equals eigvalsh of the Hessian at θ_i + σ u_{i−1}."""
    land = landscapes.rosenbrock()
    sigma = 5.0
    t = dynsim.simulate(optim.super_accelerated(1e-4, 0.9, sigma), land, jnp.array([-1.2, 1.0]), 40,
                        hessian=Hessian(10, k=2))
    for j, i in enumerate(np.asarray(t.hessian.step)):
        phi = t.theta[i] + sigma * t.velocity[i]
        ref = np.linalg.eigvalsh(np.asarray(jax.hessian(land.loss)(phi)))[::-1]
        np.testing.assert_allclose(t.hessian.eigenvalues[j], ref, rtol=1e-10)
        at_theta = np.linalg.eigvalsh(np.asarray(jax.hessian(land.loss)(t.theta[i])))[-1]
        if i > 0:
            assert abs(at_theta / ref[0] - 1) > 1e-6  # θ and the look-ahead point really differ


@pytest.mark.slow
def test_preconditioned_sharpness_along_adam_sa():
    eig = np.array([0.5, 2.0, 6.0])
    land = landscapes.quadratic_nd(eig, rotation_seed=2)
    rule = optim.adam_sa(0.02, 0.9, 0.99, 1.5)
    t = dynsim.simulate(rule, land, jnp.array([1.0, -2.0, 0.5]), 20, hessian=Hessian(5))
    h = np.asarray(jax.hessian(land.loss)(jnp.zeros(3)))
    assert np.isnan(float(t.hessian.preconditioned_sharpness[0]))
    for j, i in enumerate(np.asarray(t.hessian.step)[1:], start=1):
        state = dynsim.simulate(rule, land, jnp.array([1.0, -2.0, 0.5]), int(i)).state
        p = np.asarray(dynsim.run.preconditioner(rule, state))
        ref = np.max(np.linalg.eigvals(h / p[:, None]).real)
        np.testing.assert_allclose(t.hessian.preconditioned_sharpness[j], ref, rtol=1e-10)


@pytest.mark.slow
def test_hessian_trace_vmaps_over_hyperparameters():
    land = landscapes.rosenbrock()
    f = jax.jit(jax.vmap(lambda s: dynsim.simulate(optim.super_accelerated(1e-4, 0.9, s), land,
                                                   jnp.array([-1.2, 1.0]), 30, hessian=Hessian(10)).hessian.sharpness))
    sig = jnp.array([0.0, 2.0, 8.0])
    batched = f(sig)
    for i, s in enumerate(sig):
        one = dynsim.simulate(optim.super_accelerated(1e-4, 0.9, s), land, jnp.array([-1.2, 1.0]), 30,
                              hessian=Hessian(10)).hessian.sharpness
        np.testing.assert_allclose(batched[i], one, rtol=1e-12)


@pytest.mark.parametrize("kwargs, match", [
    (dict(hessian=2), "hessian=2 must be a dynsim.hessian.Hessian"),
    (dict(hessian=Hessian(2, k=3)), r"Hessian\(k=3\) must be <= the dimension 2"),  # dim 2
])
def test_bad_hessian_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        dynsim.simulate(optim.gd(0.1), landscapes.nakerst2d(), jnp.zeros(2), 4, **kwargs)


def test_preconditioner_rejects_rules_without_one():
    rule = optim.heavy_ball(0.1, 0.9)
    with pytest.raises(ValueError, match="no diagonal preconditioner"):
        dynsim.run.preconditioner(rule, rule.init(jnp.zeros(2)))


# --------------------------------------------------------------------------- optimizer forms

MOVED = dynsim.landscapes.Landscape("moved", lambda t: 0.5 * jnp.sum(jnp.array([1.0, 4.0]) * (t - 1.7) ** 2),
                                    minimum=jnp.full(2, 1.7))
HYPER = {"learning_rate": 0.05, "momentum": 0.8, "sigma": 1.5}


@pytest.mark.parametrize("form", ["super_accelerated", "sa", optim.super_accelerated,
                                  "dynsim.optim:super_accelerated"])
def test_simulate_by_name_factory_or_path_equals_the_built_rule(form):
    built = dynsim.simulate(optim.super_accelerated(**HYPER), MOVED, jnp.zeros(2), 80)
    named = dynsim.simulate(form, MOVED, jnp.zeros(2), 80, hyper=HYPER)
    assert np.array_equal(np.asarray(named.theta), np.asarray(built.theta))
    assert np.array_equal(np.asarray(named.loss), np.asarray(built.loss))


@pytest.mark.parametrize("form", [optax.adam, "optax:adam"])
def test_simulate_takes_an_optax_factory_like_the_built_transformation(form):
    built = dynsim.simulate(optax.adam(0.1), MOVED, jnp.zeros(2), 60)
    named = dynsim.simulate(form, MOVED, jnp.zeros(2), 60, hyper={"learning_rate": 0.1})
    assert np.array_equal(np.asarray(named.theta), np.asarray(built.theta))


def test_simulate_hyper_is_differentiable():
    def final(lr):
        return dynsim.simulate("sa", MOVED, jnp.zeros(2), 30, hyper={**HYPER, "learning_rate": lr}).loss[-1]

    h = 1e-6
    fd = (final(0.05 + h) - final(0.05 - h)) / (2 * h)
    np.testing.assert_allclose(jax.grad(final)(0.05), fd, rtol=1e-6)


@pytest.mark.parametrize("args, match", [
    (dict(optimizer=optim.super_accelerated(0.1, 0.9, 0.0), hyper={"learning_rate": 0.1}), "already built"),
    (dict(optimizer="super_accelerated", hyper={"lr": 0.1}), "hyper: super_accelerated takes no 'lr'"),
    (dict(optimizer="super_accelerated", hyper={"learning_rate": 0.1}), "hyper"),
    (dict(optimizer="super_accelerated", hyper=[0.1]), "hyper"),
    (dict(optimizer="no_such_rule", hyper={}), "optimizer"),
])
def test_simulate_bad_optimizer_forms(args, match):
    with pytest.raises(ValueError, match=match):
        dynsim.simulate(args["optimizer"], MOVED, jnp.zeros(2), 5, hyper=args["hyper"])


def test_one_point_all_scalar_sweep_equals_simulate():
    ds = dynsim.sweep("super_accelerated", MOVED, HYPER, 200, ["final_loss", "final_distance"], theta0=[0.0, 0.0],
                      dtype="float64", progress=False)
    tr = dynsim.simulate("super_accelerated", MOVED, jnp.zeros(2), 200, hyper=HYPER)
    np.testing.assert_allclose(float(ds.final_loss), float(tr.loss[-1]), rtol=1e-12)
    np.testing.assert_allclose(float(ds.final_distance), float(jnp.linalg.norm(tr.theta[-1] - 1.7)), rtol=1e-12)
