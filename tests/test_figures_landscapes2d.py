"""Every issue-6 figure runs in quick mode, writes its files, and its key numbers are sane;
the helpers those figures are built on, against independent oracles."""
import csv
import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import dynsim
from dynsim import analysis, figures, landscapes, optim
from dynsim.figures import landscapes2d  # also registers the figures (independent of other figure modules)

NAMES = ("nakerst-fig3", "nakerst-fig4", "nakerst-fig7", "nakerst-fig8", "quadratic-spectrum", "bu-hb-vs-nag", "adam-sa")


def _csv(path):
    with open(path) as f:
        rows = list(csv.DictReader(f))
    return {k: [r[k] for r in rows] for k in rows[0]}


def _run(name, tmp_path):
    out = tmp_path / name
    out.mkdir()
    figures._REGISTRY[name].fn(out, quick=True)
    for f in (f"{name}.png", f"{name}.csv", "config.json", "NOTES.md"):
        assert (out / f).is_file() and (out / f).stat().st_size > 0, f
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["figure"] == name and cfg["config"]["quick"] is True
    notes = (out / "NOTES.md").read_text()
    assert "| paper" in notes or "| quantity | paper" in notes
    return out, notes


def test_all_registered():
    for n in NAMES:
        assert n in figures._REGISTRY


@pytest.mark.slow
def test_fig3_quick(tmp_path):
    out, notes = _run("nakerst-fig3", tmp_path)
    cyc = _csv(out / "nakerst-fig3-cycles.csv")
    assert set(cyc["period"]) == {"2"} and max(float(v) for v in cyc["max_abs_multiplier"]) < 1
    d = _csv(out / "nakerst-fig3.csv")
    # paper: σ = 3-4 best of the set, GD and heavy ball far from θ* after 180 steps
    assert float(d["sigma4_distance"][-1]) < 0.01 and float(d["sigma3_distance"][-1]) < 0.01
    assert float(d["gd_distance"][-1]) > 0.3 and float(d["sigma0_distance"][-1]) > 0.3
    assert "period 2" in notes


@pytest.mark.slow
def test_fig4_quick(tmp_path):
    out, _ = _run("nakerst-fig4", tmp_path)
    r = _csv(out / "nakerst-fig4-rates.csv")
    for m, err in zip(r["method"], r["rel_err"]):
        if m != "gd":  # GD's fit window starts beyond the quick run
            assert float(err) < 1e-6, m


@pytest.mark.slow
def test_fig7_quick(tmp_path):
    out, _ = _run("nakerst-fig7", tmp_path)
    r = _csv(out / "nakerst-fig7.csv")
    s = dict(zip((round(float(e), 6) for e in r["eta"]), (float(v) for v in r["sigma_star"])))
    assert 1.0 < s[0.01] < 4.0 and s[0.001] > s[0.01]  # σ* well above g, larger at smaller η


@pytest.mark.slow
def test_fig8_quick(tmp_path):
    out, _ = _run("nakerst-fig8", tmp_path)
    d = _csv(out / "nakerst-fig8.csv")
    d0, d2 = float(d["eta0.01_sigma0_distance"][-1]), float(d["eta0.01_sigma2_distance"][-1])
    assert np.isfinite(d0) and d2 < d0  # super-acceleration speeds RMSProp up at η = 0.01


@pytest.mark.slow
def test_quadratic_spectrum_quick(tmp_path):
    out, notes = _run("quadratic-spectrum", tmp_path)
    sim = _csv(out / "quadratic-spectrum-simulation.csv")
    assert all(float(e) < 1e-2 for e in sim["rel_err_opt"])
    assert "0 (two-point) and 0 (log-uniform) mismatches" in notes


@pytest.mark.slow
def test_bu_quick(tmp_path):
    out, _ = _run("bu-hb-vs-nag", tmp_path)
    d = _csv(out / "bu-hb-vs-nag.csv")
    hb = [float(v) for v in d["HB_loss"]]
    gd = [float(v) for v in d["GD_loss"]]
    nag = [float(v) for v in d["NAG_gamma3_loss"]]
    assert hb[-1] < 1e-8 * hb[0] and hb[-1] < nag[-1] < gd[-1]


@pytest.mark.slow
def test_adam_sa_quick(tmp_path):
    out, notes = _run("adam-sa", tmp_path)
    r = _csv(out / "adam-sa.csv")
    s = dict(zip((round(float(e), 6) for e in r["eta"]), (float(v) for v in r["sigma_star"])))
    assert np.isnan(s[0.001])  # |θ| does not decay within the quick run: σ* undefined, not made up
    assert 1.0 < s[0.1] < 10.0
    assert "MNIST part skipped" in notes


# =========================================================================== helpers of the figures


# --------------------------------------------------------------------------- spectra: exact optimum vs runs


def test_quadratic_spectrum_optimum_vs_simulation():
    """The exact optimum is what a real run of the map on a rotated quadratic achieves, and beats σ ± δ."""
    g = 0.9
    eig = np.geomspace(0.01, 1.0, 20)
    eta = 0.5
    s, r = (float(v) for v in analysis.optimal_sigma_spectrum(jnp.asarray(eig), eta, g))
    d = 0.1 * max(1.0, abs(s))
    meas = landscapes2d.simulated_rate(eig, eta, g, np.array([s - d, s, s + d]), steps=6000)
    assert abs(math.log(meas[1]) / math.log(r) - 1) < 5e-3
    assert meas[1] < meas[0] and meas[1] < meas[2]
    exact = np.asarray(analysis.spectral_radius_quadratic(jnp.asarray(eig), eta, g, jnp.array([s - d, s + d])))
    np.testing.assert_allclose(meas[[0, 2]], exact, rtol=5e-3)


@pytest.mark.slow
def test_fig4_late_rate_equals_worst_mode_rate():
    """Linear regression (Nakerst §3.2): loss − L* decays as ρ_worst^{2t} for each σ."""
    L = landscapes.linear_regression()
    eig = np.asarray(L.hessian_eigenvalues)
    methods = (("hb", 0.9, 0.0), ("sa4", 0.9, 4.0), ("sa8", 0.9, 8.0))
    loss, exc = landscapes2d.fig4_runs(3000, 0.005, methods)
    rates = []
    for (_, g, s), e in zip(methods, exc):
        meas, pred, t_a = landscapes2d.late_rate_check(e, eig, 0.005, g, s)
        assert t_a < 2200
        assert abs(meas / pred - 1) < 1e-6
        rates.append(meas)
    # σ-independent to < 1%, but resolvably slower with larger σ (over-damped flattest mode)
    assert rates[0] < rates[1] < rates[2] and abs(rates[2] / rates[0] - 1) < 1e-2


# --------------------------------------------------------------------------- NTK


def test_ntk_gram_equals_jacobian_product():
    x, _ = landscapes2d.ntk_data(n=5, d=3, seed=2)
    w, a = landscapes2d.two_layer_init(7, 3, seed=2)
    x, w, a = jnp.asarray(x), jnp.asarray(w), jnp.asarray(a)
    jac = jax.jacrev(lambda w: landscapes2d.two_layer_apply(w, a, x))(w).reshape(5, -1)
    np.testing.assert_allclose(np.asarray(landscapes2d.ntk_gram(w, a, x)), np.asarray(jac @ jac.T), rtol=0, atol=1e-14)


def test_ntk_gram_tends_to_infinite_width_kernel():
    x, _ = landscapes2d.ntk_data(n=6, d=4, seed=3)
    w, a = landscapes2d.two_layer_init(40000, 4, seed=3)
    h = np.asarray(landscapes2d.ntk_gram(jnp.asarray(w), jnp.asarray(a), jnp.asarray(x)))
    h_inf = landscapes2d.ntk_gram_infinite(x)
    np.testing.assert_allclose(np.diag(h_inf), 0.5, atol=1e-12)  # x on the sphere: P(wᵀx > 0) = 1/2
    assert np.max(np.abs(h - h_inf)) < 0.02  # Monte-Carlo error ~ 1/(2√m) = 0.0025


def test_train_optax_matches_simulate():
    """The optax view (Θ) of a rule, mapped to θ, reproduces dynsim.simulate's paper iterates."""
    L = landscapes.quadratic_nd(np.array([0.1, 0.5, 1.0]), rotation_seed=1)
    th0 = jnp.array([1.0, -0.5, 0.3])
    for rule in (optim.heavy_ball(0.3, 0.8), optim.nesterov_time_varying(0.3, 3.0), optim.super_accelerated(0.3, 0.9, 2.0)):
        losses, th = landscapes2d.train_optax(rule, L.loss, th0, 50)
        tr = dynsim.simulate(rule, L, th0, 50)
        np.testing.assert_allclose(np.asarray(losses), np.asarray(tr.loss), rtol=1e-10, atol=1e-14)
        np.testing.assert_allclose(np.asarray(th), np.asarray(tr.theta[-1]), rtol=1e-10, atol=1e-14)
