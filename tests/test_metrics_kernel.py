"""Online metrics (dynsim.metrics) against float64 oracles: numpy loops and closed forms."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from oracles import hann_late, rate_and_timescale

from dynsim import analysis, landscapes, optim, simulate
from dynsim.metrics import METRICS, MetricConfig, fit_times, run_metrics

# --------------------------------------------------------------------------- oracles


def sa_log_trajectory(k_eta, mu, sigma, steps, theta0=1.0):
    """Float64 loop of Nakerst eq. (5), renormalised every step (Python floats).

    Returns per step ``ln‖(θ_t, m_{t-1})‖``, ``ln|θ_t|`` and ``sign θ_t`` (t = 0..steps).
    """
    th, m, L = float(theta0), 0.0, 0.0
    logn = np.empty(steps + 1)
    logd = np.empty(steps + 1)
    sgn = np.empty(steps + 1)
    n = math.hypot(th, m)
    logn[0], logd[0], sgn[0] = math.log(n), math.log(abs(th)), np.sign(th)
    for i in range(steps):
        m = mu * m - k_eta * (th + sigma * m)
        th = th + m
        n = math.hypot(th, m)
        L += math.log(n)
        th, m = th / n, m / n
        logn[i + 1] = L
        logd[i + 1] = L + math.log(abs(th)) if th != 0 else -np.inf
        sgn[i + 1] = np.sign(th)
    return logn, logd, sgn


def oracle_metrics(traj, steps, every, *, window=0.5, eps=1e-6, renormalise=True, per_step=False):
    """The metric definitions of dynsim.metrics, evaluated on a stored float64 trajectory."""
    logn, logd, sgn = traj
    times = fit_times(steps, every, renormalise, per_step)
    rate, timescale = rate_and_timescale(times, logn[times.astype(int)], steps, window)
    above = np.nonzero(logd > math.log(eps) + logd[0])[0]
    last = above.max() if above.size else -1
    past = np.where(sgn == -sgn[0], logd, -np.inf)
    return {
        "rate": rate,
        "timescale": timescale,
        "steps_to_eps": last + 1 if last < steps else np.nan,
        "overshoot": math.exp(past.max() - logd[0]),
        "final_distance": math.exp(logd[-1]),
        "log_distance": logd[-1],
        "final_loss": 0.5 * math.exp(2 * logd[-1]),
    }


def run_sa(k_eta, mu, sigma, steps, dtype=jnp.float64, **kw):
    k_eta, mu, sigma = np.broadcast_arrays(*(np.atleast_1d(np.asarray(v, float)) for v in (k_eta, mu, sigma)))
    hp = {
        "learning_rate": jnp.asarray(k_eta, dtype),
        "momentum": jnp.asarray(mu, dtype),
        "sigma": jnp.asarray(sigma, dtype),
    }
    th0 = jnp.ones((k_eta.size, 1), dtype)
    metrics = kw.pop("metrics", None)
    over = {} if metrics is None else {"metrics": metrics}
    out = jax.jit(
        lambda hp: run_metrics(optim.super_accelerated, hp, landscapes.quadratic, {}, th0, steps,
                               options=MetricConfig(**kw), **over)
    )(hp)
    return {k: np.asarray(v) for k, v in out.items()}


# points well away from critical damping (the finite-window estimate is exact there
# to the oracle's precision; near the kink see test_sweep's sigma* test)
POINTS = [(0.01, 0.9, 0.0), (0.01, 0.9, 20.0), (0.05, 0.5, 1.0), (0.2, 0.99, 0.5), (0.003, 0.9, -5.0)]


# --------------------------------------------------------------------------- tests


@pytest.mark.parametrize("renormalise", [True, False])
def test_matches_float64_oracle(renormalise):
    # 2048 steps: no point underflows float64 yet, so the unrescaled branch is exact too
    steps, every = 2048, 16
    ke, mu, sg = np.array(POINTS).T
    names = ("rate", "timescale", "steps_to_eps", "overshoot", "final_distance", "log_distance", "final_loss")
    got = run_sa(ke, mu, sg, steps, every=every, metrics=names, renormalise=renormalise)
    for p, (k, g, s) in enumerate(POINTS):
        want = oracle_metrics(sa_log_trajectory(k, g, s, steps), steps, every, renormalise=renormalise,
                              per_step=True)
        for name in names:
            np.testing.assert_allclose(got[name][p], want[name], rtol=1e-9, atol=1e-300,
                                       err_msg=f"{name} at {POINTS[p]}")


def test_long_runs_far_below_float64_range():
    """8192 steps: some points end far below 1e-308; renormalisation keeps the metrics exact."""
    steps, every = 8192, 32
    ke, mu, sg = np.array(POINTS).T
    got = run_sa(ke, mu, sg, steps, every=every, metrics=("rate", "timescale", "log_distance"))
    assert np.sum(got["log_distance"] < math.log(1e-308)) >= 1
    for p, (k, g, s) in enumerate(POINTS):
        want = oracle_metrics(sa_log_trajectory(k, g, s, steps), steps, every, renormalise=True, per_step=False)
        for name in ("rate", "timescale", "log_distance"):
            np.testing.assert_allclose(got[name][p], want[name], rtol=1e-9, err_msg=f"{name} at {POINTS[p]}")
    assert len(fit_times(steps, every, True, False)) < len(fit_times(steps, every, True, True))


def test_rate_against_closed_form_spectral_radius():
    """Away from the kink the late-window rate is the exact asymptotic rate.

    The residual is leakage of the oscillating part of ln‖x‖ into the fitted slope: it
    is largest for the slowest oscillation (kη = 0.003: period ~180 steps) and shrinks
    with the window.
    """
    ke, mu, sg = np.array(POINTS).T
    exact = np.asarray(analysis.spectral_radius(ke, mu, sg))
    err = {}
    for steps in (4096, 16384):  # fit points every 16 steps (above Nyquist for these periods)
        err[steps] = np.abs(run_sa(ke, mu, sg, steps, every=16, fit_every=16, metrics=("rho",))["rho"] / exact - 1)
    assert np.all(err[4096] < 5e-5)
    assert np.all(err[16384] < 5e-6)


def test_timescale_tends_to_minus_one_over_log_rho():
    ke, mu, sg = 0.05, 0.5, 1.0
    short = run_sa(ke, mu, sg, 512, every=16, metrics=("timescale",))["timescale"][0]
    long = run_sa(ke, mu, sg, 16384, metrics=("timescale",))["timescale"][0]
    exact = float(analysis.timescale(ke, mu, sg))
    assert abs(long - exact) < abs(short - exact)  # the transient weighs less in longer runs
    np.testing.assert_allclose(long, exact, rtol=2e-3)


@pytest.mark.slow
def test_float32_fast_points_renormalised_vs_naive_underflow():
    """Fast points underflow in float32: a naive ratio of norms loses them; ours does not."""
    k_eta, mu = 0.25, 0.9
    star = float(analysis.critical_sigma(k_eta, mu))  # 2.6, rho* = 0.5
    sig = np.linspace(star - 2.0, star + 1.5, 15)
    steps = 2000
    exact = np.asarray(analysis.spectral_radius(k_eta, mu, sig))
    # naive: simulate in float32 and compare |x| at t = steps/2 and t = steps
    naive = []
    for s in sig:
        tr = simulate(optim.super_accelerated(np.float32(k_eta), np.float32(mu), np.float32(s)),
                      landscapes.quadratic(1.0), jnp.ones(1, jnp.float32), steps)
        n = np.hypot(np.asarray(tr.theta[:, 0]), np.asarray(tr.velocity[:, 0]))
        with np.errstate(divide="ignore", invalid="ignore"):
            naive.append((n[-1] / n[steps // 2]) ** (1 / (steps // 2)))
    naive = np.asarray(naive)
    # underflowed (0/0) or stuck at a denormal fixed point (ratio 1): the decay is lost
    lost = ~np.isfinite(naive) | (naive > 0.999)
    assert np.sum(lost) >= 8
    ours = run_sa(k_eta, mu, sig, steps, dtype=jnp.float32, every=16, fit_every=16,
                  metrics=("rho", "log_distance"))
    assert ours["rho"].dtype == np.float32
    far = np.abs(sig - star) > 0.3
    np.testing.assert_allclose(ours["rho"][far], exact[far], rtol=2e-5)
    # at the kink the slow mode is t·λ^t: the late-window slope is biased by ~1/t_mid
    np.testing.assert_allclose(ours["rho"], exact, rtol=1.5 / (0.75 * steps))
    # sigma* from the naive estimate (NaN-skipping argmin) is far off; ours is on the grid point
    naive_star = sig[np.nanargmin(np.where(np.isfinite(naive), naive, np.nan))]
    ours_star = sig[np.argmin(ours["rho"])]
    assert abs(naive_star - star) > 0.9
    assert abs(ours_star - star) <= (sig[1] - sig[0]) / 2 + 1e-9
    # the distance itself never underflows in log form: ~ steps * ln(rho), far below
    # float32's smallest number (ln 1.4e-45 = -103)
    assert np.all(np.isfinite(ours["log_distance"])) and np.all(ours["log_distance"] < -280)
    np.testing.assert_allclose(ours["log_distance"], steps * np.log(exact), rtol=0.02)


def test_divergent_and_nan_points_are_flagged_without_poisoning_neighbours():
    good = [(0.01, 0.9, 9.0), (0.1, 0.5, 1.0)]
    # overflow within one renormalisation interval (|λ| ~ 5e11), slow growth, NaN input
    bad = [(0.5, 0.9, 1e12), (0.01, 1.05, 0.0), (0.01, 0.9, np.nan)]
    pts = np.array([good[0], bad[0], bad[1], good[1], bad[2]])
    names = tuple(METRICS)
    mixed = run_sa(*pts.T, 1024, metrics=names)
    alone = run_sa(*np.array(good).T, 1024, metrics=names)
    assert mixed["diverged"].tolist() == [False, True, True, False, True]
    for name in names:  # bitwise the same as computing the good points alone
        np.testing.assert_array_equal(mixed[name][[0, 3]], alone[name])
    assert np.isnan(mixed["rate"][1]) and np.isnan(mixed["rate"][4])  # non-finite: no metrics
    assert mixed["rate"][2] < 0  # finite growth: a (negative) rate is still reported
    np.testing.assert_allclose(np.exp(-mixed["rate"][2]), analysis.spectral_radius(0.01, 1.05, 0.0), rtol=1e-3)


def test_packing_does_not_change_results():
    ke, mu, sg = np.array(POINTS).T
    a = run_sa(ke, mu, sg, 1024, pack=True)
    b = run_sa(ke, mu, sg, 1024, pack=False)
    for k in a:  # same operations; only XLA's fusion (and FMA contraction) may differ
        np.testing.assert_allclose(a[k], b[k], rtol=1e-13)


def test_renormalisation_rescales_inner_state_too():
    """EMA momentum keeps an EMA of gradients (linear in the state): both paths agree."""
    n = 3
    hp = {"learning_rate": jnp.full(n, 0.1), "beta": jnp.array([0.5, 0.9, 0.95])}
    th0 = jnp.ones((n, 1))
    res = {}
    for r in (True, False):
        res[r] = jax.jit(lambda hp, r=r: run_metrics(
            optim.ema_momentum, hp, landscapes.quadratic, {}, th0, 1024, metrics=("rate", "timescale", "steps_to_eps"),
            options=MetricConfig(renormalise=r, every=16)))(hp)
    for k in res[True]:
        np.testing.assert_allclose(res[True][k], res[False][k], rtol=1e-9)


def test_nonlinear_landscape_matches_numpy_loop():
    """Rosenbrock, heavy ball (not renormalised): metrics from a float64 numpy loop."""
    lr, mu, steps, every = 1e-3, 0.9, 3000, 16
    a, b = 1.0, 100.0
    theta0 = np.array([-1.5, 2.0])

    def grad(t):
        return np.array([-2 * (a - t[0]) - 4 * b * t[0] * (t[1] - t[0] ** 2), 2 * b * (t[1] - t[0] ** 2)])

    th = np.empty((steps + 1, 2))
    u = np.zeros((steps + 1, 2))
    th[0] = theta0
    for i in range(steps):
        u[i + 1] = mu * u[i] - lr * grad(th[i])
        th[i + 1] = th[i] + u[i + 1]
    xmin = np.array([a, a * a])
    dx = th - xmin
    d = np.linalg.norm(dx, axis=1)
    eps = 1e-3
    above = np.nonzero(d > eps * d[0])[0]
    dhat = dx[0] / d[0]
    times = fit_times(steps, every, False, True).astype(int)
    y = np.log(np.hypot(d[times], np.linalg.norm(u[times], axis=1))) - np.log(d[0])
    w = hann_late(times.astype(float), steps, 0.5)
    sel = w > 0
    rate = -np.polyfit(times[sel], y[sel], 1, w=np.sqrt(w[sel]))[0]
    got = jax.jit(lambda hp: run_metrics(
        optim.heavy_ball, hp, landscapes.rosenbrock, {}, jnp.asarray(theta0)[None], steps,
        options=MetricConfig(every=every, eps=eps),
        metrics=("rate", "steps_to_eps", "overshoot", "final_loss", "final_distance", "diverged")))(
        {"learning_rate": jnp.array([lr]), "momentum": jnp.array([mu])})
    got = {k: np.asarray(v)[0] for k, v in got.items()}
    assert got["steps_to_eps"] == above.max() + 1
    np.testing.assert_allclose(got["overshoot"], max(0.0, np.max(-(dx @ dhat))) / d[0], rtol=1e-9)
    np.testing.assert_allclose(got["final_distance"], d[-1], rtol=1e-8)
    np.testing.assert_allclose(got["final_loss"], (a - th[-1, 0]) ** 2 + b * (th[-1, 1] - th[-1, 0] ** 2) ** 2,
                               rtol=1e-6)
    np.testing.assert_allclose(got["rate"], rate, rtol=1e-8)
    assert not got["diverged"]


def test_bad_arguments():
    hp = {"learning_rate": jnp.ones(2), "momentum": jnp.ones(2), "sigma": jnp.ones(2)}
    th0 = jnp.ones((2, 1))
    with pytest.raises(ValueError, match="metrics"):
        run_metrics(optim.super_accelerated, hp, landscapes.quadratic, {}, th0, 100, metrics=("speed",))
    with pytest.raises(ValueError, match="steps"):
        run_metrics(optim.super_accelerated, hp, landscapes.quadratic, {}, th0, 10, options=MetricConfig(every=16))
    with pytest.raises(ValueError, match="window"):
        run_metrics(optim.super_accelerated, hp, landscapes.quadratic, {}, th0, 100,
                    options=MetricConfig(every=8, window=0))


def test_exactly_converging_point_has_infinite_rate():
    # k_eta = 1, momentum = sigma = 0: theta_1 = 0 exactly (plain GD with eta = 1/k)
    out = run_sa(1.0, 0.0, 0.0, 256, metrics=("rate", "rho", "timescale", "diverged"))
    assert out["rate"][0] == math.inf and out["rho"][0] == 0.0 and not out["diverged"][0]


@pytest.mark.slow
def test_sharpness_metric_is_the_top_hessian_eigenvalue_at_the_lookahead_point():
    """On quadratic_nd the sharpness is the largest eigenvalue; on eq. (15) it is eigvalsh of the
    dense Hessian at the final look-ahead point θ + σu of a simulate run (independent oracle)."""
    eig = np.array([0.5, 2.0, 7.5])
    land = landscapes.quadratic_nd(eig, rotation_seed=3)
    hp = {"learning_rate": jnp.array([0.05, 0.1]), "momentum": jnp.array([0.9, 0.9]), "sigma": jnp.array([0.0, 2.0])}
    th0 = jnp.ones((2, 3))
    out = run_metrics(optim.super_accelerated, hp, landscapes.quadratic_nd, {}, th0, 256, metrics=("sharpness",),
                      static_land={"eigenvalues": eig, "rotation_seed": 3})
    np.testing.assert_allclose(np.asarray(out["sharpness"]), 7.5, rtol=1e-12)
    assert land.hessian_eigenvalues is not None
    hp = {"learning_rate": jnp.array([0.01, 0.01]), "momentum": jnp.array([0.9, 0.9]), "sigma": jnp.array([0.0, 3.0])}
    th0 = jnp.array([[-1.0, -3.8], [-1.0, -3.8]])
    out = run_metrics(optim.super_accelerated, hp, landscapes.nakerst2d, {}, th0, 192,
                      metrics=("sharpness", "diverged"))
    for p, s in enumerate([0.0, 3.0]):
        tr = simulate(optim.super_accelerated(0.01, 0.9, s), landscapes.nakerst2d(), th0[p], 192)
        phi = tr.theta[-1] + s * tr.velocity[-1]
        want = np.linalg.eigvalsh(np.asarray(jax.hessian(landscapes.nakerst2d().loss)(phi)))[-1]
        np.testing.assert_allclose(float(out["sharpness"][p]), want, rtol=1e-10)
