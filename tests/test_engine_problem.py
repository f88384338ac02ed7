"""The open engine: user losses, user landscape factories and optax optimizers through dynsim.sweep.

Oracles: per-point loops of dynsim.simulate and of optax's own update loop, with the metric
definitions of dynsim.metrics evaluated on the stored trajectories (float64).
"""
import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import processes
import pytest
from oracles import rate_and_timescale

import dynsim
from dynsim import cli, landscapes, optim
from dynsim import engine as sw
from dynsim.landscapes import Landscape
from dynsim.metrics import MetricConfig, fit_times


def beale(t):
    x, y = t[0], t[1]
    return (1.5 - x + x * y) ** 2 + (2.25 - x + x * y**2) ** 2 + (2.625 - x + x * y**3) ** 2


BEALE_MIN = np.array([3.0, 0.5])




def _fit_rate_and_T(y, steps, every, window=0.5):
    """The metric definitions (dynsim.metrics) on an unrescaled run's checkpoints: tests/oracles.py."""
    times = fit_times(steps, every, False, False)
    return rate_and_timescale(times, y[times.astype(int)], steps, window)


# --------------------------------------------------------------------------- user losses


def test_user_loss_swept_over_eta_and_sigma_matches_simulate_per_point():
    """A plain loss (no minimum known): rate/T are fits of ½ ln L; final_loss is L(θ_T)."""
    etas, sigmas, steps, every = np.array([2e-3, 5e-3]), np.array([0.0, 1.0, 3.0]), 512, 64
    ds = dynsim.sweep("super_accelerated", beale, {"learning_rate": etas, "momentum": 0.9, "sigma": sigmas},
                      steps, theta0=[1.0, 1.0], dtype="float64", progress=False,
                      options=MetricConfig(every=every))
    assert list(ds.data_vars) == ["rate", "rho", "timescale", "final_loss", "diverged", "floor_step",
                                  "flags"]  # no distance metrics
    assert np.isnan(ds.floor_step.values).all() and (ds.flags.values == 0).all()  # 512 steps: no floor yet
    for i, eta in enumerate(etas):
        for j, s in enumerate(sigmas):
            tr = dynsim.simulate(optim.super_accelerated(eta, 0.9, s), beale, jnp.array([1.0, 1.0]), steps)
            loss = np.asarray(tr.loss)
            rate, T = _fit_rate_and_T(0.5 * np.log(loss), steps, every)
            np.testing.assert_allclose(ds.final_loss.values[i, j], loss[-1], rtol=1e-12)
            np.testing.assert_allclose(ds.rate.values[i, j], rate, rtol=1e-9)
            np.testing.assert_allclose(ds.timescale.values[i, j], T, rtol=1e-9)
            assert not ds.diverged.values[i, j]
    # Beale's minimum value is 0, so ½ ln L decays at the asymptotic rate: positive here
    assert np.all(ds.rate.values > 0)


def test_landscape_instance_with_minimum_gives_every_metric():
    land = Landscape("beale", beale, jnp.asarray(BEALE_MIN), None, {}, 0.0)
    steps = 600
    ds = dynsim.sweep("sa", land, {"learning_rate": 5e-3, "momentum": 0.9, "sigma": np.array([0.0, 2.0])},
                      steps, ["final_distance", "log_distance", "steps_to_eps", "final_loss"],
                      theta0=[1.0, 1.0], dtype="float64", progress=False,
                      options=MetricConfig(eps=1e-2))
    for j, s in enumerate([0.0, 2.0]):
        tr = dynsim.simulate(optim.super_accelerated(5e-3, 0.9, s), land, jnp.array([1.0, 1.0]), steps)
        d = np.linalg.norm(np.asarray(tr.theta) - BEALE_MIN, axis=1)
        np.testing.assert_allclose(ds.final_distance.values[j], d[-1], rtol=1e-12)
        np.testing.assert_allclose(ds.log_distance.values[j], math.log(d[-1]), rtol=1e-12)
        above = np.nonzero(d > 1e-2 * d[0])[0]
        assert ds.steps_to_eps.values[j] == (above.max() + 1 if above.max() < steps else np.nan)


# --------------------------------------------------------------------------- optax optimizers


def _optax_loop(tx, loss, theta0, steps):
    params = jnp.asarray(theta0, jnp.float64)
    state = tx.init(params)
    grad = jax.jit(jax.grad(loss))

    @jax.jit
    def step(params, state):
        updates, state = tx.update(grad(params), state, params)
        return optax.apply_updates(params, updates), state

    for _ in range(steps):
        params, state = step(params, state)
    return np.asarray(params)


@pytest.mark.parametrize("factory, lrs", [(optax.adam, [1e-3, 1e-2, 5e-2]), (optax.lion, [1e-4, 1e-3])])
def test_optax_learning_rate_sweep_equals_optax_own_loop(factory, lrs):
    steps = 300
    ds = dynsim.sweep(factory, "rosenbrock", {"learning_rate": np.array(lrs)}, steps,
                      ["final_distance", "final_loss", "diverged"], dtype="float64", progress=False)
    assert ds.attrs["rule"] == f"optax:{factory.__name__}"
    land = landscapes.rosenbrock()
    for i, lr in enumerate(lrs):
        final = _optax_loop(factory(lr), land.loss, [-1.5, 2.0], steps)
        np.testing.assert_allclose(ds.final_loss.values[i], float(land.loss(final)), rtol=1e-12)
        np.testing.assert_allclose(ds.final_distance.values[i], np.linalg.norm(final - [1.0, 1.0]), rtol=1e-12)


def test_user_optax_composition_with_two_swept_hyperparameters():
    def clipped_sgd(learning_rate, max_norm=1.0, momentum=0.0):
        return optax.chain(optax.clip_by_global_norm(max_norm), optax.sgd(learning_rate, momentum=momentum))

    grid = {"learning_rate": np.array([1e-3, 3e-3]), "momentum": np.array([0.0, 0.8]), "max_norm": 0.5}
    ds = dynsim.sweep(clipped_sgd, "rosenbrock", grid, 200, ["final_loss"], dtype="float64", progress=False)
    assert ds.final_loss.dims == ("learning_rate", "momentum")
    land = landscapes.rosenbrock()
    for i, lr in enumerate(grid["learning_rate"]):
        for j, mu in enumerate(grid["momentum"]):
            final = _optax_loop(clipped_sgd(lr, 0.5, mu), land.loss, [-1.5, 2.0], 200)
            np.testing.assert_allclose(ds.final_loss.values[i, j], float(land.loss(final)), rtol=1e-12)


def test_a_grid_of_optax_hyperparameters_compiles_once():
    grid = {"learning_rate": np.geomspace(1e-4, 1e-1, 7), "b1": np.array([0.5, 0.9])}
    before = sw.trace_count()
    dynsim.sweep(optax.adam, beale, grid, 128, ["final_loss"], theta0=[1.0, 1.0], progress=False, chunk_size=4)
    assert sw.trace_count() - before == 1  # 4 chunks, one program
    grid2 = {"learning_rate": np.geomspace(1e-3, 1e-2, 7), "b1": np.array([0.0, 0.99])}
    dynsim.sweep(optax.adam, beale, grid2, 128, ["final_loss"], theta0=[1.0, 1.0], progress=False, chunk_size=4)
    assert sw.trace_count() - before == 1  # new values: no recompilation


# --------------------------------------------------------------------------- user landscape factories


def my_landscape(a=1.0, b=100.0):
    def loss(t):
        return (a - t[0]) ** 2 + b * (t[1] - t[0] ** 2) ** 2

    return Landscape("mine", loss, jnp.stack([jnp.asarray(a), jnp.asarray(a) ** 2]), None, {"a": a, "b": b})


@pytest.mark.slow
def test_user_factory_parameter_is_a_grid_axis():
    # η·k_max stays inside the stable range (Rosenbrock's curvature at the minimum is ~8·b·a²)
    grid = {"learning_rate": 2e-4, "momentum": 0.9, "sigma": np.array([0.0, 1.0]), "a": np.array([0.5, 1.0, 1.5])}
    ds = dynsim.sweep("sa", my_landscape, grid, 400, ["final_distance", "rate"], theta0=[-1.5, 2.0],
                      dtype="float64", progress=False)
    assert ds.final_distance.dims == ("sigma", "a")
    ref = dynsim.sweep("sa", "rosenbrock", grid, 400, ["final_distance", "rate"], theta0=[-1.5, 2.0],
                       dtype="float64", progress=False)
    for k in ds.data_vars:  # the same function as the built-in Rosenbrock, swept the same way
        np.testing.assert_allclose(ds[k].values, ref[k].values, rtol=1e-12, err_msg=k)
    for j, a in enumerate(grid["a"]):
        tr = dynsim.simulate(optim.super_accelerated(2e-4, 0.9, 1.0), my_landscape(a), jnp.array([-1.5, 2.0]), 400)
        d = np.linalg.norm(np.asarray(tr.theta[-1]) - [a, a * a])
        np.testing.assert_allclose(ds.final_distance.values[1, j], d, rtol=1e-12)


def test_loss_with_keyword_parameters_is_sweepable():
    def scaled(theta, scale=1.0):
        return scale * jnp.sum(theta**2)

    ds = dynsim.sweep("gd", scaled, {"learning_rate": 0.1, "scale": np.array([0.5, 1.0, 2.0])}, 256,
                      ["rate"], theta0=[1.0], dtype="float64", progress=False)
    # GD on scale·θ²: ½ln L decays at -ln|1 - 2·scale·η| per step
    np.testing.assert_allclose(ds.rate.values, -np.log(np.abs(1 - 2 * 0.1 * np.array([0.5, 1.0, 2.0]))), rtol=1e-9)


@pytest.mark.slow
def test_locate_along_any_axis_of_a_user_problem():
    """argmax of the rate over the learning rate of GD on a user quadratic: η* = 1/k exactly (ρ = 0)...

    ...is degenerate; on a two-mode quadratic the best η balances the modes: η* = 2/(k₁+k₂).
    """
    def two_mode(theta):
        return 0.5 * (1.0 * theta[0] ** 2 + 9.0 * theta[1] ** 2)

    land = Landscape("two_mode", two_mode, jnp.zeros(2), jnp.array([1.0, 9.0]), {})
    ds = dynsim.sweep("gd", land, {"learning_rate": np.linspace(0.05, 0.21, 17)}, 1024, ["rate", "timescale"],
                      theta0=[1.0, 1.0], dtype="float64", progress=False)
    loc = dynsim.locate(ds, "learning_rate", refine_steps=4096, boundary=False)
    np.testing.assert_allclose(float(loc.learning_rate_star), 2 / (1 + 9), rtol=1e-3)
    np.testing.assert_allclose(float(loc.rho_star), (9 - 1) / (9 + 1), rtol=1e-3)


# --------------------------------------------------------------------------- clear errors


@pytest.mark.parametrize("call, match", [
    (lambda: dynsim.sweep(optax.adam, beale, {"learning_rate": np.array([1e-3]), "b1": "high"}, 64,
                          theta0=[1.0, 1.0]), r"grid\['b1'\].*not numeric"),
    (lambda: dynsim.sweep("gd", lambda t: t**2, {"learning_rate": np.array([0.1])}, 64, theta0=[1.0, 2.0]),
     "must return a scalar"),
    (lambda: dynsim.sweep("gd", beale, {"learning_rate": np.array([0.1])}, 64), "theta0: required"),
    (lambda: dynsim.sweep("gd", beale, {"learning_rate": np.array([0.1])}, 64, ["final_distance"],
                          theta0=[1.0, 1.0]), "final_distance need the landscape's minimum"),
    (lambda: dynsim.sweep("optax:no_such_optimizer", "quadratic", {"learning_rate": np.array([0.1])}, 64),
     "optimizer='optax:no_such_optimizer'"),
    (lambda: dynsim.sweep("gd", "no_such_module_xyz:loss", {"learning_rate": np.array([0.1])}, 64),
     "cannot be imported"),
    (lambda: dynsim.sweep(optax.adam(1e-3), "quadratic", {"learning_rate": np.array([0.1])}, 64),
     "not a factory"),
    (lambda: dynsim.sweep(optax.adam, beale, {"learning_rate": np.array([0.1]), "gamma": 1.0}, 64,
                          theta0=[1.0, 1.0]), r"grid\['gamma'\]: unknown hyperparameter"),
])
def test_bad_user_input_is_one_clear_value_error(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_factory_using_a_hyperparameter_as_python_value_is_refused():
    def picky(learning_rate):
        if learning_rate > 0.5:  # Python control flow on a value: cannot be a runtime array
            raise ValueError("too large")
        return optax.sgd(learning_rate)

    with pytest.raises(ValueError, match="cannot be runtime arrays"):
        dynsim.sweep(picky, "quadratic", {"learning_rate": np.array([0.1, 0.2])}, 64)


# --------------------------------------------------------------------------- resume for user code


def test_lambda_landscape_resumes_only_with_the_same_function(tmp_path):
    grid = {"learning_rate": np.geomspace(1e-3, 1e-2, 6), "b1": np.array([0.5, 0.9])}
    loss = lambda t: (t[0] - 1.0) ** 2 + 3.0 * (t[1] + 0.5) ** 2  # noqa: E731
    kw = dict(theta0=[0.0, 0.0], progress=False, chunk_size=2)
    partial = processes.stopped_sweep(optax.adam, loss, grid, 128, out=tmp_path / "r", stop_after=2, **kw)
    assert not partial.attrs["complete"]
    other = lambda t: (t[0] - 1.0) ** 2 + 4.0 * (t[1] + 0.5) ** 2  # noqa: E731 - same name, other code
    with pytest.raises(ValueError, match="fingerprint"):
        dynsim.sweep(optax.adam, other, grid, 128, out=tmp_path / "r", **kw)
    resumed = dynsim.sweep(optax.adam, loss, grid, 128, out=tmp_path / "r", **kw)
    assert resumed.attrs["complete"]
    processes.assert_same_dataset(resumed, dynsim.sweep(optax.adam, loss, grid, 128, **kw))
    # from the CLI it cannot be found again: a clear message, nothing changed
    assert cli.main(["sweep", "--resume", str(tmp_path / "r")]) == 2


def test_closure_constants_are_part_of_the_fingerprint(tmp_path):
    def make(c):
        target = jnp.array([c, -c])
        return lambda t: jnp.sum((t - target) ** 2)

    kw = dict(theta0=[0.0, 0.0], progress=False)
    grid = {"learning_rate": np.array([0.01, 0.1])}
    dynsim.sweep("gd", make(1.0), grid, 96, out=tmp_path / "c", **kw)
    with pytest.raises(ValueError, match="fingerprint"):
        dynsim.sweep("gd", make(2.0), grid, 96, out=tmp_path / "c", **kw)


USER_MODULE = '''
import jax.numpy as jnp
from dynsim.landscapes import Landscape

def valley(c=3.0):
    def loss(t):
        return (t[0] - 1.0) ** 2 + c * (t[1] - t[0] ** 2) ** 2
    return Landscape("valley", loss, jnp.array([1.0, 1.0]), None, {"c": c})
'''

USER_CONFIG = '''
optimizer = "optax:adam"
landscape = "userprob:valley"
steps = 256
theta0 = [-1.0, 1.5]
metrics = ["final_distance", "final_loss", "diverged"]
chunk_size = 20
[grid]
learning_rate = {geomspace = [1e-3, 0.1, 40]}
b1 = [0.5, 0.9, 0.99]
c = [1.0, 3.0]
'''


@pytest.mark.slow
def test_import_path_config_killed_and_resumed_is_bit_identical(tmp_path):
    (tmp_path / "userprob.py").write_text(USER_MODULE)
    cfg = tmp_path / "user.toml"
    cfg.write_text(USER_CONFIG)
    d = tmp_path / "killed"
    log = d / "progress.log"
    cmd = processes.DYNSIM + ["sweep"]
    n_done = processes.kill_when_logged(cmd + [str(cfg), "--out", str(d), "--no-progress"], log, 2, cwd=tmp_path)
    n_chunks = json.loads((d / "config.json").read_text())["layout"]["n_chunks"]
    assert 2 <= n_done < n_chunks, (n_done, n_chunks)
    # resumed from another working directory: the config's folder is on the import path
    processes.run(cmd + ["--resume", str(d), "--no-progress"], cwd="/")
    assert sorted(map(int, log.read_text().split())) == list(range(n_chunks))  # none lost, none twice
    processes.run(cmd + [str(cfg), "--out", str(tmp_path / "clean"), "--no-progress"], cwd=tmp_path)
    processes.assert_same_dataset(dynsim.open_result(d).load(), dynsim.open_result(tmp_path / "clean").load())


def test_cli_reports_an_import_path_that_does_not_resolve(tmp_path, capsys):
    cfg = tmp_path / "bad.toml"
    cfg.write_text(USER_CONFIG.replace("userprob:valley", "userprob:no_such_landscape"))
    (tmp_path / "userprob.py").write_text(USER_MODULE)
    assert cli.main(["sweep", str(cfg), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "has no attribute 'no_such_landscape'" in err
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())
