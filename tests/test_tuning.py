"""dynsim.tune: gradient-based tuning recovers the exact optimum σ on quadratics (1-D: the
kinked critical damping point; N-dim: the worst-mode optimum from an independent dense
grid), avoids the trapping σ on Nakerst eq. (15), and the smooth objectives behave."""
from __future__ import annotations

import json

import jax.numpy as jnp
import numpy as np
import pytest

import dynsim
from dynsim import analysis, landscapes, optim
from dynsim import tuning as tune

# --------------------------------------------------------------------------- 1-D quadratic: σ*


@pytest.mark.slow
def test_tune_recovers_critical_sigma():
    """|σ̂ − σ*| < 1e-3 (absolute) over several (kη, μ), all from σ₀ = 0, in one vmapped call."""
    pairs = [(0.01, 0.9), (0.05, 0.99), (0.1, 0.9), (0.3, 0.5), (0.5, 0.0), (0.02, 0.7)]
    k_eta = jnp.array([p[0] for p in pairs])
    mu = jnp.array([p[1] for p in pairs])
    res = tune.tune("super_accelerated", landscapes.quadratic(1.0), jnp.ones(1),
                    free={"sigma": 0.0}, starts={"learning_rate": k_eta, "momentum": mu},
                    steps=(150, 0, 0, 0), learning_rate=0.5)
    exact = np.asarray(analysis.critical_sigma(k_eta, mu))
    err = res.params["sigma"] - exact
    assert np.all(np.abs(err) < 1e-3), err
    assert res.refined.all() and res.finite.all()
    # the finite-horizon minimiser sits on the under-damped side of the kink
    assert np.all(err <= 0)
    # its objective is the best rate there is: log|1 − √kη|
    np.testing.assert_allclose(res.values, np.log(np.asarray(analysis.min_spectral_radius(k_eta))), atol=2e-4)
    # the optax phase alone (no bisection) stops farther away: the refinement matters
    assert np.max(np.abs(res.history["sigma"][149] - exact)) > 1e-2


def test_tune_log_loss_objective_and_several_free_parameters():
    # Free (η, σ) with the log-loss objective: Adam with decaying steps, no bisection.
    # Both must move towards faster convergence (lower log-loss after N steps).
    land = landscapes.quadratic(1.0)
    res = tune.tune("super_accelerated", land, jnp.ones(1), free={"learning_rate": 0.05, "sigma": 0.0},
                    hyper={"momentum": 0.9}, objective="log_loss", horizons=(60,), steps=80, learning_rate=0.1)
    assert not res.refined.any()
    v0, v1 = res.history["value"][0, 0], res.values[0]
    assert v1 < v0 - 5
    f = tune.convergence_objective("super_accelerated", land, jnp.ones(1), 60, objective="log_loss")
    assert float(f({**res.best, "momentum": 0.9})) == pytest.approx(v1, rel=1e-12)


# --------------------------------------------------------------------------- N-dim quadratic: worst-mode optimum


def spectrum_optimal_sigma(eig, lr, mu):
    """Independent oracle: dense grid of max_i ρ(k_i η, μ, σ) over the stable interval, then
    golden-section search (the worst-mode rate is quasi-convex in σ)."""
    eig = np.asarray(eig, float)
    los, his = analysis.stable_sigma_interval(eig * lr, mu)
    lo, hi = float(np.max(los)), float(np.min(his))
    def rate(s):
        return np.asarray(analysis.spectral_radius_quadratic(eig, lr, mu, np.asarray(s)))
    grid = np.linspace(lo, hi, 200_001)[1:-1]
    i = int(np.argmin(rate(grid)))
    a, b = grid[max(i - 1, 0)], grid[min(i + 1, grid.size - 1)]
    g = (np.sqrt(5) - 1) / 2
    for _ in range(100):
        c, d = b - g * (b - a), a + g * (b - a)
        a, b = (a, d) if rate(c) < rate(d) else (c, b)
    s = 0.5 * (a + b)
    return s, float(rate(s))


@pytest.mark.slow
def test_tune_recovers_spectrum_optimal_sigma():
    eig = [0.2, 1.0, 3.0, 10.0]
    combos = [(0.05, 0.9), (0.02, 0.9), (0.1, 0.8), (0.03, 0.5), (0.15, 0.9)]
    land = landscapes.quadratic_nd(eig, rotation_seed=1)
    th0 = jnp.asarray(np.random.default_rng(0).standard_normal(len(eig)))
    res = tune.tune("super_accelerated", land, th0, free={"sigma": 0.0},
                    starts={"learning_rate": jnp.array([c[0] for c in combos]),
                            "momentum": jnp.array([c[1] for c in combos])},
                    steps=(150, 0, 0, 0), learning_rate=0.5)
    for j, (lr, mu) in enumerate(combos):
        s_opt, r_opt = spectrum_optimal_sigma(eig, lr, mu)
        s = res.params["sigma"][j]
        assert abs(s - s_opt) < 1e-3, (lr, mu, s, s_opt)
        r = float(analysis.spectral_radius_quadratic(jnp.asarray(eig), lr, mu, s))
        assert r == pytest.approx(r_opt, rel=1e-5)
    # the cases cover both kinds of optimum: a mode's own kink and a crossing of two modes
    crit = np.asarray(analysis.critical_sigma(np.outer([c[0] for c in combos], eig),
                                              np.array([c[1] for c in combos])[:, None]))
    at_kink = np.min(np.abs(crit - res.params["sigma"][:, None]), axis=1) < 1e-3
    assert at_kink.any() and not at_kink.all()


# --------------------------------------------------------------------------- Nakerst eq. (15)


def test_tune_eq15_finds_a_converging_sigma_not_a_trap():
    land = landscapes.nakerst2d()
    th0 = jnp.array([-1.0, -3.8])
    starts = jnp.array([0.5, 2.0, 4.5, 5.5, 6.5, 7.5])  # several start inside the trapping range
    res = tune.tune("super_accelerated", land, th0, free={"sigma": 0.0},
                    starts={"sigma": starts}, hyper={"learning_rate": 0.01, "momentum": 0.9}, objective="log_distance",
                    horizons=(300,), steps=150, learning_rate=0.3)
    s = res.best["sigma"]

    def final_distance(sigma, n=3000):
        tr = dynsim.simulate(optim.super_accelerated(0.01, 0.9, sigma), land, th0, n)
        return float(jnp.linalg.norm(tr.theta[-1] - landscapes.NAKERST2D_MINIMUM))

    assert final_distance(s) < 1e-9, s  # converges to the true minimum
    # the test can fail: σ = 7 (paper, Fig. 3c) stays trapped away from the minimum
    assert final_distance(7.0) > 0.1
    assert res.best_value < -8  # after 300 steps it is already within e^-8


# --------------------------------------------------------------------------- objectives and plumbing


@pytest.mark.slow
def test_smoothed_rate_and_soft_steps_are_exact_on_known_sequences():
    ell = np.log(0.8) * np.arange(200.0) + 0.3
    for taper in tune.TAPERS:
        assert float(tune.smoothed_rate(jnp.asarray(ell), 50, taper=taper)) == pytest.approx(np.log(0.8), rel=1e-12)
    # first passage vs settling on an oscillating sequence: dips below at 3, settles at 7
    seq = np.log(np.array([1.0, 0.5, 0.2, 0.05, 0.2, 0.3, 0.1, 0.04, 0.03, 0.01]))
    first = float(tune.soft_steps_to_eps(jnp.asarray(seq), 0.08, temperature=1e-3))
    settle = float(tune.soft_steps_to_eps(jnp.asarray(seq), 0.08, temperature=1e-3, settle=True))
    assert first == pytest.approx(3.0, abs=1e-6) and settle == pytest.approx(7.0, abs=1e-6)
    # and the settling surrogate agrees with the sweep engine's steps_to_eps (relative ε)
    metrics = pytest.importorskip("dynsim.metrics")
    hp = {"learning_rate": jnp.array([0.1]), "momentum": jnp.array([0.9]), "sigma": jnp.array([1.0])}
    out = metrics.run_metrics(optim.super_accelerated, hp, landscapes.quadratic, {}, jnp.ones((1, 1)), 512,
                              metrics=("steps_to_eps",), options=metrics.MetricConfig(eps=1e-6))
    tr = dynsim.simulate(optim.super_accelerated(0.1, 0.9, 1.0), landscapes.quadratic(1.0), jnp.ones(1), 512)
    dist = jnp.log(jnp.abs(tr.theta[:, 0]))  # the engine measures ‖θ − θ*‖ relative to the start
    soft = float(tune.soft_steps_to_eps(dist, 1e-6, temperature=1e-4, settle=True))
    assert soft == pytest.approx(float(out["steps_to_eps"][0]), abs=1e-6)


@pytest.mark.slow
def test_lognorm_objectives_match_plain_simulation_and_survive_float32():
    land = landscapes.quadratic_nd([0.5, 2.0, 7.0], rotation_seed=2)
    th0 = jnp.array([1.0, -0.5, 0.25])
    hp = {"learning_rate": 0.1, "momentum": 0.8, "sigma": 1.7}
    for obj in ("log_loss", "log_distance", "log_state"):  # log_rate: see test_gradients
        a = tune.convergence_objective("sa", land, th0, 150, objective=obj)(hp)
        b = tune.convergence_objective("sa", land, th0, 150, objective=obj, lognorm=False)(hp)
        assert float(a) == pytest.approx(float(b), rel=1e-9), obj
    # float32, 5000 steps: the plain trajectory underflows (loss → 0, log → -inf); tracked stays exact
    th32 = th0.astype(jnp.float32)
    hp32 = {k: np.float32(v) for k, v in hp.items()}
    tracked = float(tune.convergence_objective("sa", land, th32, 5000, objective="log_loss")(hp32))
    plain = float(tune.convergence_objective("sa", land, th32, 5000, objective="log_loss", lognorm=False)(hp32))
    rho = float(analysis.spectral_radius_quadratic(jnp.asarray([0.5, 2.0, 7.0]), 0.1, 0.8, 1.7))
    assert np.isfinite(tracked) and not np.isfinite(plain)
    assert tracked / 5000 == pytest.approx(2 * np.log(rho), rel=1e-2)  # excess loss ∝ ρ^{2N}


def test_non_differentiable_metrics_are_flagged():
    assert "soft_steps_to_eps" in tune.surrogate_for("steps_to_eps")
    assert "smoothed_rate" in tune.surrogate_for("diverged")
    with pytest.raises(ValueError, match="metric='rate'"):
        tune.surrogate_for("rate")
    assert set(tune.NON_DIFFERENTIABLE) >= {k for k, v in tune.METRIC_GRADIENTS.items() if v == "none"}


def test_parametrisation_roundtrip_and_domains():
    vals = {"learning_rate": 0.01, "momentum": 0.9, "sigma": -3.0, "b2": 0.999, "eps": 1e-7}
    back = tune.constrain(tune.unconstrain(vals))
    for k, v in vals.items():
        assert float(back[k]) == pytest.approx(v, rel=1e-9)
    with pytest.raises(ValueError, match=r"init\['momentum'\]"):
        tune.unconstrain({"momentum": 1.5})
    with pytest.raises(ValueError, match=r"init\['learning_rate'\]"):
        tune.unconstrain({"learning_rate": 0.0})
    with pytest.raises(ValueError, match="transforms"):
        tune.unconstrain({"sigma": 1.0}, {"sigma": "tanh"})


def test_minimize_isolates_non_finite_starts():
    # start 1 sits where the objective is NaN: it is flagged, never chosen, never moves the others
    def f(h):
        return jnp.where(h["sigma"] > 10, jnp.nan, (h["sigma"] - 2.0) ** 2)
    res = tune.minimize(f, {"sigma": jnp.array([0.0, 20.0, 5.0])}, steps=100, learning_rate=0.5)
    assert res.finite.tolist() == [True, False, True]
    assert np.isnan(res.values[1]) and res.best_index != 1
    np.testing.assert_allclose(res.params["sigma"][[0, 2]], 2.0, atol=1e-9)
    assert res.params["sigma"][1] == pytest.approx(20.0)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"init": {}}, "init"),
        ({"init": {"sigma": jnp.zeros(3)}, "fixed": {"momentum": jnp.zeros(2)}}, "broadcast"),
        ({"init": {"sigma": 0.0}, "fixed": {"sigma": 1.0}}, "both"),
        ({"init": {"sigma": 0.0}, "steps": -1}, "steps"),
        ({"init": {"sigma": 0.0}, "steps": [1, 2]}, "steps"),
        ({"init": {"sigma": jnp.zeros((2, 2))}}, "1-D"),
    ],
)
def test_minimize_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        tune.minimize(lambda h: h["sigma"] ** 2, **kwargs)


def test_bad_input_elsewhere():
    q = landscapes.quadratic(1.0)
    with pytest.raises(ValueError, match="objective="):
        tune.convergence_objective("sa", q, jnp.ones(1), 10, objective="rate")
    with pytest.raises(ValueError, match="lognorm=True"):
        tune.convergence_objective("rmsprop_sa", q, jnp.ones(1), 10, lognorm=True)
    with pytest.raises(ValueError, match="optimizer='rmsprop_sa'"):
        tune.simulate_lognorm(optim.rmsprop_sa(0.1, 0.9, 1.0), q, jnp.ones(1), 10)
    with pytest.raises(ValueError, match="landscape='rosenbrock'"):
        tune.simulate_lognorm(optim.gd(0.1), landscapes.rosenbrock(), jnp.ones(2), 10)
    with pytest.raises(ValueError, match="window"):
        tune.smoothed_rate(jnp.zeros(10), 11)
    with pytest.raises(ValueError, match="taper"):
        tune.smoothed_rate(jnp.zeros(10), 5, taper="cosine")
    with pytest.raises(ValueError, match="horizons"):
        tune.tune("sa", q, jnp.ones(1), free={"sigma": 0.0}, hyper={"learning_rate": 0.1, "momentum": 0.9},
                  horizons=(2,))
    with pytest.raises(ValueError, match="hyperparameters"):
        f = tune.convergence_objective("gd", q, jnp.ones(1), 10)
        f({"learning_rate": 0.1, "sigma": 1.0})


# --------------------------------------------------------------------------- figures (quick mode)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["tune-quadratic", "hypergrad-chaos", "tune-mnist"])
def test_figure_quick(name, tmp_path):
    from dynsim import figures

    figs = figures.available()
    assert name in figs
    out = figures.run(name, tmp_path / name, quick=True)
    files = {p.name for p in out.iterdir()}
    assert {"config.json", "NOTES.md"} <= files
    assert any(f.endswith(".png") for f in files) and any(f.endswith(".csv") for f in files)
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["figure"] == name and cfg["config"]["quick"] is True


# --------------------------------------------------------------------------- the API: forms and parallel starts

_CHEAP = dict(horizons=(60,), steps=(15,), learning_rate=0.3, refine=False)


@pytest.mark.parametrize("optimizer, landscape", [
    ("super_accelerated", "quadratic"), (optim.super_accelerated, landscapes.quadratic),
    ("dynsim.optim:super_accelerated", "dynsim.landscapes:quadratic"),
])
def test_tune_takes_every_optimizer_and_landscape_form(optimizer, landscape):
    ref = tune.tune(optim.super_accelerated, landscapes.quadratic(1.0), jnp.ones(1), free={"sigma": 0.0},
                    hyper={"learning_rate": 0.1, "momentum": 0.9}, **_CHEAP)
    res = tune.tune(optimizer, landscape, jnp.ones(1), free={"sigma": 0.0},
                    hyper={"learning_rate": 0.1, "momentum": 0.9}, **_CHEAP)
    np.testing.assert_array_equal(res.params["sigma"], ref.params["sigma"])
    np.testing.assert_array_equal(res.values, ref.values)


def test_tune_landscape_params_of_a_named_landscape():
    a = tune.tune("sa", "quadratic", jnp.ones(1), free={"sigma": 0.0}, landscape_params={"k": 2.0},
                  hyper={"learning_rate": 0.05, "momentum": 0.9}, **_CHEAP)
    b = tune.tune("sa", landscapes.quadratic(2.0), jnp.ones(1), free={"sigma": 0.0},
                  hyper={"learning_rate": 0.05, "momentum": 0.9}, **_CHEAP)
    np.testing.assert_array_equal(a.params["sigma"], b.params["sigma"])


@pytest.mark.slow
def test_tune_starts_are_paired_not_an_outer_product():
    starts = {"sigma": [0.0, 2.0, 4.0], "learning_rate": [0.05, 0.1, 0.2]}
    res = tune.tune("sa", "quadratic", jnp.ones(1), free={"sigma": 0.0}, hyper={"momentum": 0.9}, starts=starts,
                    **_CHEAP)
    assert res.params["sigma"].shape == (3,)
    np.testing.assert_array_equal(res.fixed["learning_rate"], starts["learning_rate"])
    # each start is the one-start run with its own values
    for j in range(3):
        one = tune.tune("sa", "quadratic", jnp.ones(1), free={"sigma": starts["sigma"][j]},
                        hyper={"momentum": 0.9, "learning_rate": starts["learning_rate"][j]}, **_CHEAP)
        np.testing.assert_allclose(res.params["sigma"][j], one.params["sigma"][0], rtol=1e-12)


@pytest.mark.parametrize("kwargs, match", [
    (dict(free={"sigma": jnp.zeros(2)}), r"free\['sigma'\] has shape \(2,\).*starts="),
    (dict(hyper={"learning_rate": [0.1, 0.2], "momentum": 0.9}), r"hyper\['learning_rate'\]"),
    (dict(starts={"sigma": [0.0, 1.0], "learning_rate": [0.1]}, hyper={"momentum": 0.9}), "same number of starts"),
    (dict(starts={"momentum": [0.5]}), r"starts\['momentum'\]: also in hyper"),
    (dict(starts={"sigma": 1.0}), r"starts\['sigma'\] must be a non-empty 1-D"),
    (dict(free={}), "free="),
    (dict(free={"sigma": 0.0, "momentum": 0.1}), "free and hyper both"),
])
def test_tune_bad_free_hyper_starts(kwargs, match):
    args = dict(free={"sigma": 0.0}, hyper={"learning_rate": 0.1, "momentum": 0.9})
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        tune.tune("sa", "quadratic", jnp.ones(1), **args, **_CHEAP)
