"""Gradients through the dynamics: jax.grad through dynsim.simulate / simulate_lognorm /
training unrolls against float64 central finite differences and against the analytic
derivative of the spectral radius, including the one-sided behaviour at the kink σ*."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import dynsim
from dynsim import analysis, landscapes, optim
from dynsim import tuning as tune

NAKERST_START = jnp.array([-1.0, -3.8])


def fd_jacobian(F, x, rel_h=1e-5, VF=None):
    """4th-order central differences of ``F: R^d -> R^m`` at ``x`` (float64), steps relative
    to |x_i|; all 4d evaluations in one vmapped call (``VF``: a jitted ``vmap(F)`` to reuse).
    Returns (m, d)."""
    x = np.asarray(x, dtype=float)
    h = rel_h * np.where(x != 0, np.abs(x), 1.0)
    d = x.size
    offs = np.array([2.0, 1.0, -1.0, -2.0])
    pts = x[None, None, :] + offs[:, None, None] * np.eye(d)[None] * h[None, :, None]  # (4, d, d)
    VF = VF or jax.jit(jax.vmap(F))
    vals = np.asarray(VF(jnp.asarray(pts.reshape(-1, d)))).reshape(4, d, -1)
    jac = (-vals[0] + 8 * vals[1] - 8 * vals[2] + vals[3]) / (12 * h[:, None])
    return jac.T


def check_jacobian(jac, F, x0, rtol=1e-6):
    """AD Jacobian vs finite differences.

    The finite-difference error is estimated from two step sizes (1e-5 and 1e-6, relative):
    an entry passes if ``|AD − FD| ≤ rtol·scale + 2·|FD(h₁) − FD(h₂)|``. Entries that are zero
    analytically (e.g. ∂rate/∂θ₀) are measured on 1e-5 of their row's largest entry.
    """
    jac = np.asarray(jac)
    assert np.all(np.isfinite(jac)), jac
    VF = jax.jit(jax.vmap(F))  # one compile for both step sizes
    fd1, fd2 = fd_jacobian(F, x0, 1e-5, VF), fd_jacobian(F, x0, 1e-6, VF)
    scale = np.maximum(np.abs(fd1), 1e-5 * np.max(np.abs(fd1), axis=1, keepdims=True))
    bad = np.abs(jac - fd1) > rtol * scale + 2 * np.abs(fd1 - fd2)
    assert not bad.any(), f"AD vs FD disagree at {np.argwhere(bad).tolist()}:\n{jac}\n{fd1}\n{fd2}"


# --------------------------------------------------------------------------- finite differences through simulate

RULE_CASES = {
    # rule name: (hyperparameters, names to differentiate)
    "super_accelerated": ({"learning_rate": 0.01, "momentum": 0.9, "sigma": 3.0},
                          ("learning_rate", "momentum", "sigma")),
    "rmsprop_sa": ({"learning_rate": 0.01, "momentum": 0.8, "sigma": 2.0, "decay": 0.99, "eps": 1e-7},
                   ("learning_rate", "momentum", "sigma", "decay")),
    "adam_sa": ({"learning_rate": 0.05, "b1": 0.9, "b2": 0.99, "sigma": 1.5, "eps": 1e-8},
                ("learning_rate", "b1", "b2", "sigma")),
}


def smooth_objectives(tr):
    """Every smooth objective of dynsim.tune on one trajectory of eq. (15), as a vector."""
    mn = landscapes.NAKERST2D_MINIMUM
    return jnp.stack([
        tune.log_distance(tr, mn),
        tune.log_loss_after(tr, landscapes.nakerst2d()),
        tune.smoothed_rate(tr, 30, minimum=mn),
        tune.smoothed_rate(tr, 61, taper="hann2", minimum=mn),
        tune.soft_steps_to_eps(tr, 0.5, temperature=0.3, minimum=mn),
        tune.soft_steps_to_eps(tr, 0.5, temperature=0.3, settle=True, minimum=mn),
    ])


@pytest.mark.parametrize("rule", list(RULE_CASES))
def test_grad_matches_finite_differences(rule):
    """∂(objective)/∂(η, μ or β₁, σ, β₂, θ₀) through 60 steps of dynsim.simulate on eq. (15)."""
    hp, names = RULE_CASES[rule]
    land = landscapes.nakerst2d()
    x0 = np.array([hp[n] for n in names] + list(np.asarray(NAKERST_START)))

    def F(x):
        h = dict(hp)
        h.update({n: x[i] for i, n in enumerate(names)})
        th0 = x[len(names):]
        return smooth_objectives(dynsim.simulate(optim.get(rule, **h), land, th0, 60))

    jac = jax.jit(jax.jacrev(F))(jnp.asarray(x0))  # reverse mode, as jax.grad
    check_jacobian(jac, F, x0)


def test_simulate_lognorm_grad_matches_fd_and_plain_simulate():
    # The renormalised simulation is the same function as the plain one (log-norms
    # agree), and so are its derivatives, w.r.t. every hyperparameter and θ0.
    land = landscapes.quadratic_nd([0.5, 2.0, 7.0], rotation_seed=3)
    x0 = np.array([0.1, 0.8, 1.7, 1.0, -0.5, 0.25])  # η, μ, σ, θ0

    def F(x, tracked=True):
        r = optim.super_accelerated(x[0], x[1], x[2])
        tr = tune.simulate_lognorm(r, land, x[3:], 120) if tracked else dynsim.simulate(r, land, x[3:], 120)
        return jnp.stack([tune.smoothed_rate(tr, 80, taper="hann"), tune.smoothed_rate(tr, 121)])

    a = jax.jit(F)(jnp.asarray(x0))
    b = jax.jit(lambda x: F(x, False))(jnp.asarray(x0))
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-12)
    ja = jax.jit(jax.jacrev(F))(jnp.asarray(x0))
    jb = jax.jit(jax.jacrev(lambda x: F(x, False)))(jnp.asarray(x0))
    np.testing.assert_allclose(np.asarray(ja), np.asarray(jb), rtol=1e-9, atol=1e-14)
    check_jacobian(ja, F, x0)


# --------------------------------------------------------------------------- analytic ∂ρ/∂σ


def dlogrho_dsigma(k_eta, mu, sigma):
    """Closed form of d log ρ / dσ on L = kθ²/2 (independent of dynsim.analysis)."""
    b = mu - k_eta * sigma
    p = 1 + b - k_eta
    disc = p * p - 4 * b
    if disc < 0:  # ρ = √b, dρ/dσ = −kη/(2√b)
        return -k_eta / (2 * b)
    rho = (abs(p) + np.sqrt(disc)) / 2
    ddisc = 2 * p * (-k_eta) + 4 * k_eta
    drho = (np.sign(p) * (-k_eta) + ddisc / (2 * np.sqrt(disc))) / 2
    return drho / rho


def long_rate(k_eta, mu, steps, taper="hann2"):
    def f(s):
        r = optim.super_accelerated(k_eta, mu, s)
        ell = tune.simulate_lognorm(r, landscapes.quadratic(1.0), jnp.ones(1), steps)
        return tune.smoothed_rate(ell, steps + 1, taper=taper)

    return jax.jit(jax.value_and_grad(f))


@pytest.mark.parametrize("k_eta,mu", [(0.1, 0.9), (0.3, 0.5), (0.02, 0.95)])
def test_grad_of_long_horizon_rate_matches_analytic_derivative(k_eta, mu):
    ss = float(analysis.critical_sigma(k_eta, mu))
    lo, hi = (float(x) for x in analysis.stable_sigma_interval(k_eta, mu))
    vg = long_rate(k_eta, mu, 6000)
    for sigma in (ss - 0.5 * (ss - lo), ss - 0.2 * (ss - lo), ss + 0.3 * (hi - ss)):
        v, g = vg(jnp.asarray(sigma))
        rho = float(analysis.spectral_radius(k_eta, mu, sigma))
        exact = dlogrho_dsigma(k_eta, mu, sigma)
        assert float(v) == pytest.approx(np.log(rho), rel=2e-3)
        assert float(g) == pytest.approx(exact, rel=2e-2), (sigma, float(g), exact)
        # and dynsim.analysis.spectral_radius differentiates to the same closed form
        ga = float(jax.grad(lambda s: jnp.log(analysis.spectral_radius(k_eta, mu, s)))(sigma))
        assert ga == pytest.approx(exact, rel=1e-10)


def test_one_sided_derivatives_at_the_kink():
    """At σ* the rate has one-sided derivatives −kη/(2b*) (under-damped) and +∞ (over-damped).

    jax.grad of the long-horizon smoothed rate follows the analytic derivative on each
    side as σ → σ*: finite and → −kη/(2b*) from below, growing like |σ − σ*|^{-1/2}
    from above. Exactly at σ* the finite-horizon objective is smooth with slope +O(N).
    """
    k_eta, mu = 0.1, 0.9
    ss = float(analysis.critical_sigma(k_eta, mu))
    b_star = (1 - np.sqrt(k_eta)) ** 2
    left_limit = -k_eta / (2 * b_star)
    vg = long_rate(k_eta, mu, 20000)
    # under-damped side: converges to the finite one-sided derivative
    for delta in (1e-1, 1e-2):
        g = float(vg(jnp.asarray(ss - delta))[1])
        exact = dlogrho_dsigma(k_eta, mu, ss - delta)
        assert g == pytest.approx(exact, rel=2e-2)
        assert abs(exact - left_limit) < 2 * k_eta * delta  # exact → left limit linearly
    g_close = float(vg(jnp.asarray(ss - 1e-2))[1])
    assert g_close == pytest.approx(left_limit, rel=2e-2)
    # over-damped side: matches the analytic derivative, which diverges like δ^{-1/2}
    gs = []
    for delta in (1e-2, 1e-3, 1e-4):
        g = float(vg(jnp.asarray(ss + delta))[1])
        exact = dlogrho_dsigma(k_eta, mu, ss + delta)
        assert g == pytest.approx(exact, rel=3e-2), (delta, g, exact)
        gs.append(g)
    assert gs[0] > 0 and gs[2] / gs[0] == pytest.approx(10.0, rel=0.15)
    # exactly at σ*: finite, positive, and growing linearly with the horizon
    g1 = float(long_rate(k_eta, mu, 1000)(jnp.asarray(ss))[1])
    g4 = float(long_rate(k_eta, mu, 4000)(jnp.asarray(ss))[1])
    assert 0 < g1 < g4 and 3.0 < g4 / g1 < 5.0


@pytest.mark.slow
def test_float32_smoothed_rate_does_not_underflow():
    k_eta, mu, sigma, steps = 0.1, 0.9, 0.0, 20000
    land = landscapes.quadratic(1.0)
    th0 = jnp.ones(1, jnp.float32)

    def f(s):
        r = optim.super_accelerated(jnp.float32(k_eta), jnp.float32(mu), s)
        return tune.smoothed_rate(tune.simulate_lognorm(r, land, th0, steps), steps + 1, taper="hann2")

    ell = tune.simulate_lognorm(optim.super_accelerated(k_eta, mu, sigma), land, th0, steps).log_norm
    assert ell.dtype == jnp.float32
    assert bool(jnp.all(jnp.isfinite(ell))) and float(ell[-1]) < -1000  # far below float32's ~ -103
    v, g = jax.value_and_grad(f)(jnp.float32(sigma))
    assert v.dtype == jnp.float32
    assert float(v) == pytest.approx(0.5 * np.log(mu), rel=1e-4)  # ρ = √b, b = μ at σ = 0
    assert float(g) == pytest.approx(dlogrho_dsigma(k_eta, mu, sigma), rel=1e-3)
    # without renormalisation the float32 state underflows (ρ^4000 ≈ 1e-91): the late
    # log-norms freeze at the denormal floor and the same estimator reads "no decay"
    tr = dynsim.simulate(optim.super_accelerated(k_eta, mu, sigma), land, th0, 4000)
    plain = float(tune.smoothed_rate(tr, 2001, taper="hann2"))
    assert not abs(plain - 0.5 * np.log(mu)) < 0.01, plain


def test_log_norm_is_exact_and_safe():
    x = jnp.array([3e-30, 4e-30], jnp.float32)
    assert float(tune.log_norm(x)) == pytest.approx(np.log(5e-30), rel=1e-6)
    assert float(tune.log_norm(jnp.zeros(3))) == -np.inf
    # a diverged state must never look converged
    assert np.isnan(float(tune.log_norm(jnp.array([1.0, np.nan]))))
    assert float(tune.log_norm(jnp.array([1.0, -np.inf]))) == np.inf
    g = jax.grad(tune.log_norm)(jnp.array([3.0, 4.0]))
    np.testing.assert_allclose(np.asarray(g), [3 / 25, 4 / 25], rtol=1e-12)
    # pytrees
    assert float(tune.log_norm((jnp.array([3.0]), {"a": jnp.array([4.0])}))) == pytest.approx(np.log(5.0))


# --------------------------------------------------------------------------- the sweep engine's metrics


@pytest.mark.slow
def test_sweep_metrics_are_classified_and_differentiable():
    """Every metric of dynsim.metrics is classified; smooth ones match finite differences
    through run_metrics (both with and without renormalisation), the others are flagged
    with a surrogate and indeed have zero gradient."""
    metrics = pytest.importorskip("dynsim.metrics")
    registry = getattr(metrics, "METRICS", None)
    if registry is None:
        pytest.skip("dynsim.metrics has no METRICS registry")
    unclassified = set(registry) - set(tune.METRIC_GRADIENTS)
    assert not unclassified, f"classify these sweep metrics in dynsim.tuning.METRIC_GRADIENTS: {unclassified}"
    names = tuple(registry)
    smooth = [n for n in names if tune.METRIC_GRADIENTS[n] != "none"]
    flat = [n for n in names if tune.METRIC_GRADIENTS[n] == "none"]
    for n in flat:
        assert tune.surrogate_for(n)

    for renormalise in (True, False):
        def F(x, which, renormalise=renormalise):
            # x = (σ, θ0); one run of the sweep kernel, the metrics in `which` as a vector
            out = metrics.run_metrics(
                optim.super_accelerated,
                {"learning_rate": jnp.array([0.1]), "momentum": jnp.array([0.9]), "sigma": x[:1]},
                landscapes.quadratic, {}, x[None, 1:], 512, metrics=names,
                options=metrics.MetricConfig(renormalise=renormalise),
            )
            return jnp.stack([out[n][0].astype(jnp.float64) for n in which])

        x0 = np.array([2.0, 1.0])
        jac = jax.jit(jax.jacfwd(lambda x: F(x, smooth)))(jnp.asarray(x0))
        check_jacobian(jac, lambda x: F(x, smooth), x0)
        jflat = jax.jit(jax.jacfwd(lambda x: F(x, flat)))(jnp.asarray(x0))
        assert np.all(np.asarray(jflat) == 0.0)


# --------------------------------------------------------------------------- hypergradients through training


@pytest.fixture(scope="module")
def tiny_problem():
    from dynsim import data, models

    try:
        ds = data.load("digits")
    except Exception as e:  # scikit-learn missing
        pytest.skip(f"digits unavailable: {e}")
    model = models.nielsen_mlp((6,), input_dim=64)
    return tune.training_problem(ds, model, n_train=150, n_val=100, dtype="float64")


HP = {"learning_rate": 0.8, "momentum": 0.9, "sigma": 3.0}
WRT = ("learning_rate", "momentum", "sigma")


@pytest.mark.slow
def test_hypergradient_matches_finite_differences(tiny_problem):
    steps = 6
    v, g = tune.hypergradient(tiny_problem, "super_accelerated", HP, [0, 1], steps, wrt=WRT)
    f = tune.training_objective(tiny_problem, "super_accelerated", [0, 1], steps, log=False)
    F = lambda x: jnp.atleast_1d(f(dict(zip(WRT, x))))
    x0 = np.array([HP[k] for k in WRT])
    assert float(F(jnp.asarray(x0))[0]) == pytest.approx(v, rel=1e-12)
    check_jacobian([[g[k] for k in WRT]], F, x0)
    # forward mode (every horizon at once) agrees with reverse mode at the last one
    out = tune.horizon_hypergradients(tiny_problem, "super_accelerated", HP, [0, 1], steps,
                                      wrt=("learning_rate", "sigma"))
    assert float(np.mean(out["val_loss"][:, -1])) == pytest.approx(v, rel=1e-12)
    for k in ("learning_rate", "sigma"):
        assert out[k].shape == (2, steps + 1) and np.all(out[k][:, 0] == 0)
        assert float(np.mean(out[k][:, -1])) == pytest.approx(g[k], rel=1e-9)


@pytest.mark.slow
def test_truncated_hypergradient(tiny_problem):
    m, P = tiny_problem.model, tiny_problem
    full = tune.hypergradient(P, "super_accelerated", HP, [0], 5, wrt=("sigma",))
    trunc = tune.hypergradient(P, "super_accelerated", HP, [0], 5, wrt=("sigma",), truncation=2)
    assert trunc[0] == pytest.approx(full[0], rel=1e-12)  # same forward pass
    assert not trunc[1]["sigma"] == pytest.approx(full[1]["sigma"], rel=1e-3)

    # truncation = the derivative through the last 2 steps, from the fixed state after 3
    @jax.jit
    def manual(s):
        def steps(rule, p, st, n):
            for _ in range(n):
                g = jax.grad(m.loss_fn)(p, P.x_train, P.y_train)
                upd, st = rule.update(g, st, p)
                p = jax.tree.map(jnp.add, p, upd)
            return p, st

        r0 = optim.super_accelerated(HP["learning_rate"], HP["momentum"], HP["sigma"])
        p0 = tune.init_params(P, 0)
        p, st = jax.lax.stop_gradient(steps(r0, p0, r0.init(p0), 3))
        r = optim.super_accelerated(HP["learning_rate"], HP["momentum"], s)
        p, st = steps(r, p, st, 2)
        return m.loss_fn(r.to_paper(p, st), P.x_val, P.y_val)

    assert trunc[1]["sigma"] == pytest.approx(float(jax.grad(manual)(3.0)), rel=1e-9)


@pytest.mark.slow
def test_unroll_matches_training_engine(tiny_problem):
    """dynsim.tune's differentiable unroll reproduces dynsim.training.train's loss curve."""
    train = pytest.importorskip("dynsim.training")
    from dynsim import data, models

    ds = data.validation_split(data.load("digits"), 100, seed=0)
    res = train.train("super_accelerated", models.nielsen_mlp((6,), input_dim=64), ds, HP, steps=6,
                      eval_on=("test",), seeds=[0, 1], train_subset=150, dtype="float64", progress=False)
    ours = tune.validation_curve(tiny_problem, "super_accelerated", HP, [0, 1], 6)
    np.testing.assert_allclose(np.asarray(res["test_loss"]).reshape(2, 7), ours, rtol=1e-10)
