"""dynsim.optim: every rule against a float64 numpy loop of its paper equation.

Oracles are written independently of the library (plain numpy, the paper's
notation), so a shared mistake cannot make both sides agree.
"""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import dynsim
from dynsim import landscapes, optim

K = 1.7  # curvature of the test parabola


def grad_quad(theta):
    return K * theta


def grad_nakerst2d(t):
    t1, t2 = t
    a = t1**2 + 2 * t2 - 7
    b = 2 * t1 + t2 - 5
    return np.array([4 * t1 * a + 4 * b + 6e-3 * t1**5, 4 * a + 2 * b + 6e-3 * t2**5])


# ---------------------------------------------------------------- numpy oracles (paper notation)


def np_super_accelerated(grad, theta0, eta, g, sigma, steps):
    """Nakerst eq. (4)."""
    theta, m = np.array(theta0, float), np.zeros_like(theta0, dtype=float)
    out = [theta.copy()]
    for _ in range(steps):
        m = g * m - eta * grad(theta + sigma * m)
        theta = theta + m
        out.append(theta.copy())
    return np.array(out)


def np_heavy_ball(grad, theta0, eta, g, steps):
    """Nakerst eq. (2): eq. (4) with the gradient at θ_i (σ = 0)."""
    return np_super_accelerated(grad, theta0, eta, g, 0.0, steps)


def np_nesterov(grad, theta0, eta, g, steps):
    """Nakerst eq. (3): eq. (4) with the gradient at θ_i + μ m_{i−1} (σ = μ)."""
    return np_super_accelerated(grad, theta0, eta, g, g, steps)


def np_su_midpoint(grad, theta0, alpha, beta, steps):
    """Su eq. (20): v_{n+1} = βv_n − α∇L(θ_n + (β/2)v_n), θ_{n+1} = θ_n + v_{n+1} (eq. (4) at σ = β/2)."""
    return np_super_accelerated(grad, theta0, alpha, beta, beta / 2, steps)


def np_rmsprop_sa(grad, theta0, eta, g, sigma, decay, eps, steps):
    """Nakerst eq. (16)/(17)."""
    theta = np.array(theta0, float)
    m, r = np.zeros_like(theta), np.zeros_like(theta)
    out = [theta.copy()]
    for _ in range(steps):
        gr = grad(theta + sigma * m)
        r = decay * r + (1 - decay) * gr**2
        m = g * m - eta * gr / np.sqrt(r + eps)
        theta = theta + m
        out.append(theta.copy())
    return np.array(out)


def np_adam_sa(grad, theta0, eta, b1, b2, sigma, eps, steps):
    theta = np.array(theta0, float)
    m, v, u = np.zeros_like(theta), np.zeros_like(theta), np.zeros_like(theta)
    out = [theta.copy()]
    for t in range(1, steps + 1):
        gr = grad(theta + sigma * u)
        m = b1 * m + (1 - b1) * gr
        v = b2 * v + (1 - b2) * gr**2
        u = -eta * (m / (1 - b1**t)) / (np.sqrt(v / (1 - b2**t)) + eps)
        theta = theta + u
        out.append(theta.copy())
    return np.array(out)


def np_ema(grad, theta0, eta, beta, lookahead, steps):
    """Student report: v = βv + (1−β)g, θ −= ηv; look-ahead at θ − ηβv."""
    theta, v = np.array(theta0, float), np.zeros_like(theta0, dtype=float)
    out = [theta.copy()]
    for _ in range(steps):
        point = theta - eta * beta * v if lookahead else theta
        v = beta * v + (1 - beta) * grad(point)
        theta = theta - eta * v
        out.append(theta.copy())
    return np.array(out)


def np_sbc_nesterov(grad, x0, s, steps):
    """Su–Boyd–Candès form of Nesterov: x_k = y_{k-1} − s∇f(y_{k-1}); y_k = x_k + (k−1)/(k+2)(x_k − x_{k-1})."""
    x_prev = np.array(x0, float)
    y = x_prev.copy()
    out = [x_prev.copy()]
    for k in range(1, steps + 1):
        x = y - s * grad(y)
        y = x + (k - 1) / (k + 2) * (x - x_prev)
        x_prev = x
        out.append(x.copy())
    return np.array(out)


def traj(rule, grad_np_unused, theta0, steps, loss):
    return np.asarray(dynsim.simulate(rule, loss, jnp.asarray(theta0, jnp.float64), steps).theta)


QUAD = landscapes.quadratic(K)
N2D = landscapes.nakerst2d()


# ---------------------------------------------------------------- trajectories vs oracles


@pytest.mark.parametrize("sigma", [0.0, 0.45, 0.9, 2.0, 7.5])
def test_super_accelerated_matches_eq4_on_quadratic(sigma):
    ours = traj(optim.super_accelerated(0.05, 0.9, sigma), None, [1.0, -0.3], 200, QUAD)
    ref = np_super_accelerated(grad_quad, np.array([1.0, -0.3]), 0.05, 0.9, sigma, 200)
    np.testing.assert_allclose(ours, ref, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("sigma", [0.0, 0.9, 3.0])
def test_super_accelerated_matches_eq4_on_nakerst2d(sigma):
    theta0 = np.array([-1.0, -3.8])
    ours = traj(optim.super_accelerated(0.01, 0.9, sigma), None, theta0, 180, N2D)
    ref = np_super_accelerated(grad_nakerst2d, theta0, 0.01, 0.9, sigma, 180)
    np.testing.assert_allclose(ours, ref, rtol=1e-10, atol=1e-12)


def test_sigma_zero_is_heavy_ball_and_sigma_mu_is_nesterov():
    theta0 = np.array([-1.0, -3.8])
    sa0 = traj(optim.super_accelerated(0.01, 0.9, 0.0), None, theta0, 150, N2D)
    hb = traj(optim.heavy_ball(0.01, 0.9), None, theta0, 150, N2D)
    np.testing.assert_array_equal(sa0, hb)
    np.testing.assert_allclose(hb, np_heavy_ball(grad_nakerst2d, theta0, 0.01, 0.9, 150), rtol=1e-10)
    sa_mu = traj(optim.super_accelerated(0.01, 0.9, 0.9), None, theta0, 150, N2D)
    nag = traj(optim.nesterov(0.01, 0.9), None, theta0, 150, N2D)
    np.testing.assert_array_equal(sa_mu, nag)
    np.testing.assert_allclose(nag, np_nesterov(grad_nakerst2d, theta0, 0.01, 0.9, 150), rtol=1e-10)


def test_su_midpoint_nesterov_is_sigma_half_mu():
    """Su eq. (20) is super-acceleration with σ = β/2."""
    theta0 = np.array([-1.0, -3.8])
    ours = traj(optim.super_accelerated(0.01, 0.8, 0.4), None, theta0, 120, N2D)
    np.testing.assert_allclose(ours, np_su_midpoint(grad_nakerst2d, theta0, 0.01, 0.8, 120), rtol=1e-10)


def test_rmsprop_sa_matches_eq16():
    theta0 = np.array([-1.0, -3.8])
    ours = traj(optim.rmsprop_sa(0.01, 0.9, 3.0, 0.999, 1e-7), None, theta0, 150, N2D)
    ref = np_rmsprop_sa(grad_nakerst2d, theta0, 0.01, 0.9, 3.0, 0.999, 1e-7, 150)
    np.testing.assert_allclose(ours, ref, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("sigma", [0.0, 0.9, 3.0])
def test_adam_sa_matches_numpy(sigma):
    theta0 = np.array([-1.0, -3.8])
    ours = traj(optim.adam_sa(0.05, 0.9, 0.999, sigma, 1e-8), None, theta0, 150, N2D)
    ref = np_adam_sa(grad_nakerst2d, theta0, 0.05, 0.9, 0.999, sigma, 1e-8, 150)
    np.testing.assert_allclose(ours, ref, rtol=1e-10, atol=1e-12)


def test_adam_sa_sigma_zero_is_optax_adam():
    theta0 = jnp.array([-1.0, -3.8])
    ours = dynsim.simulate(optim.adam_sa(0.05, 0.9, 0.999, 0.0, 1e-8), N2D, theta0, 100).theta
    ref = dynsim.simulate(optax.adam(0.05, 0.9, 0.999, 1e-8), N2D, theta0, 100).theta
    np.testing.assert_allclose(ours, ref, rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("lookahead", [False, True])
def test_ema_momentum_matches_student_report(lookahead):
    theta0 = np.array([-1.0, -3.8])
    ours = traj(optim.ema_momentum(0.05, 0.8, lookahead=lookahead), None, theta0, 150, N2D)
    np.testing.assert_allclose(
        ours, np_ema(grad_nakerst2d, theta0, 0.05, 0.8, lookahead, 150), rtol=1e-10, atol=1e-12
    )


def test_ema_momentum_is_rescaled_heavy_ball():
    theta0 = np.array([-1.0, -3.8])
    ema = traj(optim.ema_momentum(0.05, 0.8, lookahead=True), None, theta0, 100, N2D)
    nag = traj(optim.nesterov(0.05 * 0.2, 0.8), None, theta0, 100, N2D)
    np.testing.assert_allclose(ema, nag, rtol=1e-10, atol=1e-12)


def test_nesterov_time_varying_matches_su_boyd_candes():
    theta0 = np.array([-1.0, -3.8])
    ours = traj(optim.nesterov_time_varying(0.01, 3.0), None, theta0, 200, N2D)
    np.testing.assert_allclose(ours, np_sbc_nesterov(grad_nakerst2d, theta0, 0.01, 200), rtol=1e-10)


# ---------------------------------------------------------------- the two coordinate systems


def run_optax_view(rule, loss, theta0, steps):
    """Drive the rule as a plain optax transformation and map Θ back to θ."""
    grad = jax.grad(loss)

    @jax.jit
    def step(params, state):
        updates, state = rule.update(grad(params), state, params)
        params = optax.apply_updates(params, updates)
        return params, state, rule.to_paper(params, state)

    params, state = jnp.asarray(theta0), rule.init(jnp.asarray(theta0))
    out = [rule.to_paper(params, state)]
    for _ in range(steps):
        params, state, theta = step(params, state)
        out.append(theta)
    return np.array(out)


@pytest.mark.parametrize(
    "rule",
    [
        optim.gd(0.01),
        optim.heavy_ball(0.01, 0.9),
        optim.nesterov(0.01, 0.9),
        optim.super_accelerated(0.01, 0.9, 4.0),
        optim.ema_momentum(0.05, 0.8, lookahead=True),
        optim.nesterov_time_varying(0.01),
        optim.rmsprop_sa(0.01, 0.9, 3.0),
        optim.adam_sa(0.05, sigma=2.0),
    ],
    ids=lambda r: r.name,
)
def test_reparametrised_view_agrees_with_paper_coordinates(rule):
    theta0 = np.array([-1.0, -3.8])
    paper = np.asarray(dynsim.simulate(rule, N2D, jnp.asarray(theta0), 60).theta)
    reparam = run_optax_view(rule, N2D, theta0, 60)
    np.testing.assert_allclose(reparam, paper, rtol=1e-10, atol=1e-11)


def test_rule_composes_with_optax_chain():
    rule = optim.super_accelerated(0.01, 0.9, 2.0)
    chained = optax.chain(optax.identity(), rule)
    theta = jnp.array([-1.0, -3.8])
    s1, s2 = rule.init(theta), chained.init(theta)
    g = jax.grad(N2D)(theta)
    np.testing.assert_allclose(rule.update(g, s1)[0], chained.update(g, s2)[0])


def test_pytree_parameters():
    params = {"w": jnp.array([[1.0, 2.0]]), "b": jnp.array(0.5)}
    loss = lambda p: jnp.sum(p["w"] ** 2) + p["b"] ** 2
    t = dynsim.simulate(optim.super_accelerated(0.1, 0.9, 2.0), loss, params, 5)
    assert t.theta["w"].shape == (6, 1, 2) and t.theta["b"].shape == (6,)
    flat = dynsim.simulate(
        optim.super_accelerated(0.1, 0.9, 2.0), lambda v: jnp.sum(v**2), jnp.array([1.0, 2.0, 0.5]), 5
    )
    np.testing.assert_allclose(t.theta["w"][:, 0, 1], flat.theta[:, 1], rtol=1e-13)


# ---------------------------------------------------------------- runtime hyperparameters


def test_vmap_over_grid_compiles_once_and_matches_loop():
    traces = []

    @jax.jit
    def final_theta(lr, mu, sigma):
        traces.append(1)  # runs only while tracing
        rule = optim.super_accelerated(lr, mu, sigma)
        return dynsim.simulate(rule, QUAD, jnp.array([1.0]), 100).theta[-1, 0]

    grid = jnp.array(np.random.default_rng(0).uniform([0.01, 0.5, 0.0], [0.3, 0.95, 5.0], (32, 3)))
    batched = jax.jit(jax.vmap(final_theta))(grid[:, 0], grid[:, 1], grid[:, 2])
    looped = [final_theta(*row) for row in grid]  # new values, same shapes: no retrace
    # vmap of a jitted function traces it once at scalar shapes; the scalar calls reuse it
    assert len(traces) == 1
    np.testing.assert_allclose(batched, np.array(looped), rtol=1e-12, atol=1e-300)
    for row, val in zip(np.asarray(grid), np.asarray(batched)):
        ref = np_super_accelerated(grad_quad, np.array([1.0]), row[0], row[1], row[2], 100)
        np.testing.assert_allclose(val, ref[-1, 0], rtol=1e-9, atol=1e-300)


def test_inject_hyperparams_works():
    opt = optax.inject_hyperparams(optim.super_accelerated)(learning_rate=0.1, momentum=0.9, sigma=2.0)
    state = opt.init(jnp.ones(2))
    updates, state = opt.update(jnp.ones(2), state)
    assert np.all(np.isfinite(updates))
    assert float(state.hyperparams["sigma"]) == 2.0


# ---------------------------------------------------------------- convergence with sane settings


@pytest.mark.parametrize(
    "rule, steps",
    [
        (optim.gd(1e-3), 40000),
        (optim.heavy_ball(1e-3, 0.9), 8000),
        (optim.nesterov(1e-3, 0.9), 8000),
        # Rosenbrock's stiff mode at the minimum (k ≈ 1002) needs σ < (1+μ)/(kη) − 1/2 ≈ 1.4
        (optim.super_accelerated(1e-3, 0.9, 1.2), 8000),
        (optim.ema_momentum(1e-2, 0.9, lookahead=True), 8000),
        (optim.nesterov_time_varying(1e-3), 20000),
        (optim.rmsprop_sa(1e-3, 0.9, 2.0), 8000),
        (optim.adam_sa(1e-2, sigma=1.0), 8000),
    ],
    ids=lambda r: getattr(r, "name", str(r)),
)
def test_every_rule_converges_on_quadratic_and_rosenbrock(rule, steps):
    quad = landscapes.quadratic(2.0)
    tq = dynsim.simulate(rule, quad, jnp.array([1.0, -2.0]), steps // 8)
    assert float(jnp.max(jnp.abs(tq.theta[-1]))) < 2e-2
    rb = landscapes.rosenbrock()
    tr = dynsim.simulate(rule, rb, jnp.array([-1.2, 1.0]), steps)
    assert float(rb.distance(tr.theta[-1])) < 5e-2, tr.theta[-1]


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: optim.gd(-0.1), "learning_rate=-0.1"),
        (lambda: optim.super_accelerated(0.1, float("nan"), 1.0), "momentum=nan must be finite"),
        (lambda: optim.super_accelerated(0.1, 0.9, jnp.ones(3)), "sigma must be a scalar"),
        (lambda: optim.rmsprop_sa(0.1, 0.9, 1.0, decay=1.5), "decay=1.5"),
        (lambda: optim.ema_momentum(0.1, 0.9, lookahead="yes"), "lookahead"),
        (lambda: optim.get("adamw"), "optimizer='adamw' is unknown"),
        (lambda: optim.get("sa", learning_rate=0.1), "takes hyperparameters"),
        (lambda: optim.heavy_ball("fast", 0.9), "learning_rate"),
    ],
)
def test_bad_hyperparameters_raise_clear_value_error(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_error_quotes_the_call():
    with pytest.raises(ValueError, match=r"super_accelerated\(learning_rate=-1"):
        optim.super_accelerated(-1, 0.9, 1.0)


def test_get_and_aliases():
    assert optim.get("sa", learning_rate=0.1, momentum=0.9, sigma=2.0).name == "super_accelerated"
    assert optim.hyperparameter_names("super_accelerated") == ("learning_rate", "momentum", "sigma")
