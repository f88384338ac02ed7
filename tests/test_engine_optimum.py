"""locate (dynsim.engine.optimum) by any stored metric: the best grid point, against numpy arg-min/max."""
import json
import warnings

import jax.numpy as jnp
import numpy as np
import optax
import pytest

import dynsim
from dynsim import analysis, data, models
from dynsim import engine as sw
from dynsim.metrics import fit_times


def _loss(t):
    # minimiser (2.0, -1.0), away from the origin
    return (t[0] - 2.0) ** 2 + 3.0 * (t[1] + 1.0) ** 2 + 0.1 * (t[0] - 2.0) ** 4


def test_locate_the_learning_rate_minimising_final_loss_of_a_user_loss():
    lrs = np.geomspace(0.005, 0.5, 9)
    ds = dynsim.sweep(optax.sgd, _loss, {"learning_rate": lrs, "momentum": np.array([0.0, 0.5])}, 60,
                      ["final_loss", "diverged"], theta0=[0.0, 0.0], dtype="float64", progress=False)
    loc = dynsim.locate(ds, "learning_rate", by="final_loss")
    assert loc.learning_rate_star.dims == ("momentum",)
    assert (loc.status.values == "ok").all()  # interior optima: the largest rates diverge
    vals = ds.final_loss.transpose("momentum", "learning_rate").values
    best = np.nanargmin(vals, axis=1)
    np.testing.assert_array_equal(loc.learning_rate_star.values, lrs[best])
    np.testing.assert_array_equal(loc.final_loss_star.values, vals[np.arange(2), best])
    assert loc.attrs["locate_mode"] == "min"


def test_mode_max_and_the_defaults():
    from dynsim.engine.optimum import default_mode

    assert default_mode("test_accuracy") == "max" and default_mode("rate") == "max"
    assert default_mode("final_loss") == "min" and default_mode("timescale") == "min"
    lrs = np.array([0.01, 0.1, 0.3, 0.6])
    ds = dynsim.sweep(optax.sgd, _loss, {"learning_rate": lrs}, 40, ["final_loss"], theta0=[0.0, 0.0],
                      dtype="float64", progress=False)
    with pytest.warns(UserWarning, match="1 edge"):  # the largest loss: the largest rate, at the grid's edge
        loc = dynsim.locate(ds, "learning_rate", by="final_loss", mode="max")
    assert float(loc.learning_rate_star) == lrs[np.nanargmax(ds.final_loss.values)]


@pytest.mark.parametrize("kwargs, match", [
    (dict(by="speed"), "by='speed'"), (dict(by="final_loss", mode="lowest"), "mode="),
    (dict(mode="min"), "mode='min' with by='rate'"), (dict(by="final_loss", over="sigma"), "over='sigma'"),
])
def test_bad_locate_arguments(kwargs, match):
    ds = dynsim.sweep(optax.sgd, _loss, {"learning_rate": np.array([0.01, 0.1, 0.2])}, 12, ["final_loss"],
                      theta0=[0.0, 0.0], progress=False)
    with pytest.raises(ValueError, match=match):
        dynsim.locate(ds, kwargs.pop("over", "learning_rate"), **kwargs)


def test_locate_the_best_learning_rate_of_a_training_result_by_final_test_loss():
    d = data.load("digits")
    tiny = d._replace(x_train=d.x_train[:120], y_train=d.y_train[:120], x_test=d.x_test[:40], y_test=d.y_test[:40])
    lrs = np.array([0.1, 1.0, 3.0, 10.0, 30.0])
    ds = dynsim.train("gd", models.nielsen_mlp((5,), input_dim=64), tiny, {"learning_rate": lrs}, steps=12,
                      metrics_every=4, eval_on=("test",), dtype="float64", progress=False)
    loc = dynsim.locate(ds, "learning_rate", by="test_loss")
    assert (loc.status.values == "ok").all(), ds.test_loss.isel(step=-1).values
    final = ds.test_loss.isel(step=-1).transpose("seed", "learning_rate").values
    best = np.argmin(np.where(np.isfinite(final), final, np.inf), axis=1)
    np.testing.assert_array_equal(loc.learning_rate_star.values, lrs[best])
    np.testing.assert_array_equal(loc.test_loss_star.values, final[np.arange(final.shape[0]), best])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ties of accuracy on 40 images may sit at an edge
        acc = dynsim.locate(ds, "learning_rate", by="test_accuracy")  # accuracies default to the maximum
    fa = ds.test_accuracy.isel(step=-1).transpose("seed", "learning_rate").values
    assert acc.attrs["locate_mode"] == "max"
    np.testing.assert_array_equal(acc.test_accuracy_star.values, fa.max(axis=1))
    assert jnp.isfinite(jnp.asarray(loc.test_loss_star.values)).all()


KE_TEST = np.geomspace(0.003, 0.6, 12)


MU_TEST = np.array([0.5, 0.9, 0.99])


SIG_TEST = np.linspace(-140.0, 40.0, 181)  # σ* spans [-131, 32] here (negative below kη = (1-√g)²)


@pytest.mark.slow
def test_locate_sigma_star_matches_exact_critical_sigma():
    """σ* (argmin ρ) to 1e-4 relative of the exact (g − (1 − √kη)²)/kη, and the stable interval."""
    dtype = "float64"
    ke, mu, sig = KE_TEST, MU_TEST, SIG_TEST
    ds = dynsim.sweep("sa", "quadratic", {"k_eta": ke, "momentum": mu, "sigma": sig}, 1024, ["rate", "timescale"],
                      dtype=dtype, progress=False)
    loc = sw.locate(ds, "sigma")
    exact = np.asarray(analysis.critical_sigma(ke[:, None], mu[None, :]))
    assert not loc.at_edge.any()
    rel = np.abs(loc.sigma_star.values - exact) / np.abs(exact)
    assert rel.max() < 1e-4, rel.max()
    # ρ(σ*) = |1 − √kη| for every momentum. Past the kink ρ rises like √(σ − σ*), so ρ at a
    # σ* located to 5e-5 can differ by ~1e-4 relative.
    rho_min = np.asarray(analysis.min_spectral_radius(ke))[:, None] * np.ones((1, 3))
    np.testing.assert_allclose(loc.rho_star.values, rho_min, rtol=1e-3)
    assert np.all(loc.rho_star.values >= rho_min * (1 - 1e-6))
    lo, hi = (np.asarray(v) for v in analysis.stable_sigma_interval(ke[:, None], mu[None, :]))
    inside_lo = lo > sig[0]
    np.testing.assert_allclose(loc.sigma_stable_lo.values[inside_lo], lo[inside_lo], rtol=1e-4)
    assert np.all(np.isnan(loc.sigma_stable_lo.values[~inside_lo]))
    inside_hi = hi < sig[-1]
    np.testing.assert_allclose(loc.sigma_stable_hi.values[inside_hi], hi[inside_hi], rtol=1e-4)
    # T: a separate minimiser (of the whole-run envelope fit, at the sweep's own steps).
    # Oracle: the same definition in a float64 numpy loop.
    steps, every = 1024, json.loads(ds.attrs["options"])["every"]
    times = fit_times(steps, every, True, False)
    KE, MU = np.meshgrid(ke, mu, indexing="ij")

    def T_oracle(s, k=KE.ravel(), g=MU.ravel()):
        th, m, logs = np.ones_like(s), np.zeros_like(s), np.zeros_like(s)
        y = [np.zeros_like(s)]
        for t in range(1, steps + 1):
            m = g * m - k * (th + s * m)
            th = th + m
            n = np.hypot(th, m)
            logs, th, m = logs + np.log(n), th / n, m / n
            if t in times:
                y.append(logs.copy())
        return -1.0 / np.polyfit(times, np.array(y), 1)[0]

    sT = loc.sigma_star_T.values.ravel()
    T_found = T_oracle(sT)
    np.testing.assert_allclose(loc.T_star.values.ravel(), T_found, rtol=1e-9)
    # T(σ) of a finite run ripples (the envelope fit sees few oscillation periods; ~0.2%
    # in T), so σ*_T is a local minimiser near the coarse argmin, defined up to the ripple:
    assert np.all(loc.T_star.values <= np.nanmin(ds.timescale.values, axis=-1) * (1 + 1e-6))
    coarse = loc.sigma_star_T_coarse.values.ravel()
    scan = coarse[:, None] + np.linspace(-1, 1, 201)[None, :] * (sig[1] - sig[0])
    T_scan = T_oracle(scan.ravel(), np.repeat(KE.ravel(), 201), np.repeat(MU.ravel(), 201)).reshape(scan.shape)
    T_scan = np.where(T_scan > 0, T_scan, np.inf)  # T < 0: growth (unstable)
    assert np.all(T_found <= T_scan.min(axis=1) * 1.01)


@pytest.mark.slow
def test_locate_from_a_float32_sweep():
    """Coarse sweep in float32 (fast, biased near the kink); refinement in float64 (default)."""
    ke = KE_TEST[::3]  # (the float64 test covers the full kη range)
    ds = dynsim.sweep("sa", "quadratic", {"k_eta": ke, "momentum": MU_TEST, "sigma": SIG_TEST}, 1024,
                      ["rate"], progress=False)
    assert ds.rate.dtype == np.float32
    loc = sw.locate(ds, "sigma", boundary=False)
    assert loc.attrs["refine_dtype"] == "float64"
    exact = np.asarray(analysis.critical_sigma(ke[:, None], MU_TEST[None, :]))
    rel = np.abs(loc.sigma_star.values - exact) / np.abs(exact)
    assert rel.max() < 1e-4, rel.max()
    # the refinement is what gets there: the coarse grid argmax is far off
    assert np.max(np.abs(loc.sigma_star_coarse.values - exact) / np.abs(exact)) > 1e-2


def test_locate_flags_edges():
    ds = dynsim.sweep("sa", "quadratic", {"k_eta": 0.01, "momentum": 0.9, "sigma": np.linspace(0, 5, 6)}, 512,
                      ["rate"], progress=False)
    loc = sw.locate(ds, "sigma", refine=False, boundary=False)
    assert bool(loc.at_edge) and np.isnan(float(loc.sigma_star))  # σ* = 9 lies beyond the grid
