"""dynsim.train: the vmapped training engine, against per-model runs and independent oracles."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import xarray as xr

import dynsim
from dynsim import data, models, optim
from dynsim import training as train

TIME_VARS = ("train_loss", "train_accuracy", "test_loss", "test_accuracy", "grad_norm",
             "running_loss", "running_accuracy")


@pytest.fixture(scope="module")
def tiny():
    """120 train / 40 test images of sklearn's 8x8 digits (no download)."""
    d = data.load("digits")
    return d._replace(x_train=d.x_train[:120], y_train=d.y_train[:120],
                      x_test=d.x_test[:40], y_test=d.y_test[:40])


def _net(hidden=(5,)):
    return models.nielsen_mlp(hidden, input_dim=64)


def _assert_same_runs(a, b, rtol=1e-12):
    for v in TIME_VARS:
        if v in a:
            np.testing.assert_allclose(np.asarray(a[v]), np.asarray(b[v]), rtol=rtol, atol=1e-300, err_msg=v)
    np.testing.assert_array_equal(np.asarray(a.diverged), np.asarray(b.diverged))
    np.testing.assert_array_equal(np.asarray(a.diverged_at), np.asarray(b.diverged_at))


def _backend_compiles(fn):
    """Number of XLA backend compilations while ``fn()`` runs."""
    from jax._src import monitoring
    from jax._src.dispatch import BACKEND_COMPILE_EVENT

    events = []

    def listener(name, *args, **kwargs):
        if name == BACKEND_COMPILE_EVENT:
            events.append(name)

    monitoring.register_event_duration_secs_listener(listener)
    try:
        out = fn()
    finally:
        monitoring.unregister_event_duration_listener(listener)
    return len(events), out


@pytest.mark.slow
def test_vmapped_grid_equals_each_model_alone_and_compiles_once(tiny):
    """(η, σ) × seeds in one program, in 3 chunks (last one padded) == every model trained alone."""
    train.clear_cache()
    net = _net((6,))
    n0 = train.compile_count()
    kw = dict(epochs=2, batch_size=20, metrics_every=3, dtype="float64", progress=False)
    grid = {"learning_rate": [0.5, 2.0], "momentum": 0.9, "sigma": [0.0, 3.0]}
    ds = train.train(net, tiny, "super_accelerated", grid, seeds=[0, 7], chunk_size=3, **kw)
    assert train.compile_count() - n0 == 1  # 8 models, 3 chunks, one trace/compile
    assert ds.attrs["n_chunks"] == 3
    assert ds.test_accuracy.dims == ("learning_rate", "sigma", "seed", "epoch")
    assert ds.sizes["epoch"] == 1 + 2 * 2  # step 0, then 2 records per epoch (6 steps / 3)
    np.testing.assert_allclose(ds.epoch, [0, 0.5, 1, 1.5, 2])
    np.testing.assert_array_equal(ds.step, [0, 3, 6, 9, 12])
    # learning happened (else equality below would be vacuous)
    assert float(ds.train_loss.isel(epoch=-1).max()) < float(ds.train_loss.isel(epoch=0).min())
    assert ds.diverged.sum() == 0
    for lr in (0.5, 2.0):
        for sig in (0.0, 3.0):
            for seed in (0, 7):
                alone = train.train(net, tiny, "super_accelerated",
                                    {"learning_rate": lr, "momentum": 0.9, "sigma": sig},
                                    seeds=[seed], chunk_size=1, **kw)
                _assert_same_runs(ds.sel(learning_rate=lr, sigma=sig, seed=seed),
                                  alone.isel(seed=0))
    # the same program serves new values, more models (more chunks) and more epochs:
    # not even a small XLA compile happens on the second call
    n1 = train.compile_count()
    grid2 = {"learning_rate": [0.1, 0.2, 0.3], "momentum": 0.5, "sigma": [1.0, 5.0]}
    n_xla, ds2 = _backend_compiles(functools.partial(
        train.train, net, tiny, "super_accelerated", grid2, seeds=[1, 2], chunk_size=3,
        **{**kw, "epochs": 3}))
    assert n_xla == 0 and train.compile_count() == n1
    assert ds2.attrs["n_chunks"] == 4


def test_metrics_are_in_paper_coordinates(tiny):
    """Full batch: recorded train loss = loss at θ_i of dynsim.simulate (the paper's map);
    the running loss is at the look-ahead point Θ_i = θ_i + σ u_{i-1}, which differs for σ > 0."""
    net = _net()
    steps = 12
    ds = train.train(net, tiny, "super_accelerated",
                     {"learning_rate": 1.5, "momentum": 0.9, "sigma": [0.0, 2.0]},
                     steps=steps, seeds=[3], eval_on=("train",), dtype="float64", progress=False)
    d = tiny.flatten()
    x, y = jnp.asarray(d.x_train, jnp.float64), jnp.asarray(d.y_train)
    loss = jax.jit(lambda th: net.loss_fn(th, x, y))
    theta0 = jax.tree.map(jnp.asarray, net.init(3, (64,), jnp.float64))
    sigmas = jnp.array([0.0, 2.0])
    trajs = jax.vmap(lambda s: dynsim.simulate(optim.super_accelerated(1.5, 0.9, s), loss, theta0, steps))(sigmas)
    for k, sig in enumerate((0.0, 2.0)):
        traj = jax.tree.map(lambda a: a[k], trajs)
        rec = ds.sel(sigma=sig, seed=3)
        np.testing.assert_allclose(rec.train_loss, traj.loss, rtol=1e-12)
        theta_big = jax.tree.map(lambda t, u: t + sig * u, traj.theta, traj.velocity)  # Θ_i
        la = np.asarray(jax.vmap(loss)(jax.tree.map(lambda a: a[:steps], theta_big)))
        np.testing.assert_allclose(rec.running_loss[1:], la, rtol=1e-12)
        gap = np.abs(la[2:] - np.asarray(traj.loss[2:steps]))
        if sig == 0.0:
            assert gap.max() < 1e-14  # σ = 0: Θ and θ coincide (up to rounding of two evaluations)
        else:
            assert gap.min() > 1e-6  # σ > 0: evaluating at Θ would report different numbers


@pytest.mark.parametrize("other, hp, sa_hp", [
    ("heavy_ball", {"learning_rate": 0.8, "momentum": 0.9}, {"momentum": 0.9, "sigma": 0.0}),
    ("nesterov", {"learning_rate": 0.8, "momentum": 0.9}, {"momentum": 0.9, "sigma": 0.9}),
    ("gd", {"learning_rate": 0.8}, {"momentum": 0.0, "sigma": 0.0}),
])
def test_named_rules_are_super_acceleration_special_cases(tiny, other, hp, sa_hp):
    kw = dict(steps=8, seeds=[1], dtype="float64", eval_on=("train",), progress=False)
    a = train.train(_net(), tiny, other, hp, **kw)
    b = train.train(_net(), tiny, "super_accelerated", {"learning_rate": 0.8, **sa_hp}, **kw)
    _assert_same_runs(a, b, rtol=1e-14)
    assert float(a.train_loss.isel(seed=0, step=-1)) < float(a.train_loss.isel(seed=0, step=0))


def test_engine_builds_the_dynsim_optim_rule(tiny, monkeypatch):
    """The rule is literally dynsim.optim's, built inside the program from traced hyperparameters."""
    calls = []
    original = optim.RULES["heavy_ball"]

    @functools.wraps(original)
    def spy(**kwargs):
        rule = original(**kwargs)
        calls.append((kwargs, rule))
        return rule

    monkeypatch.setitem(optim.RULES, "heavy_ball", spy)
    train.clear_cache()
    train.train(_net(), tiny, "heavy_ball", {"learning_rate": [0.1, 0.2], "momentum": 0.9},
                steps=2, dtype="float64", progress=False)
    traced = [(kw, r) for kw, r in calls if isinstance(kw["learning_rate"], jax.core.Tracer)]
    assert traced and all(isinstance(r, optim.Rule) and r.name == "heavy_ball" for _, r in traced)
    train.clear_cache()


def test_divergent_model_is_flagged_frozen_and_harmless(tiny):
    net = models.softmax_mlp((8,), input_dim=64)
    kw = dict(steps=6, seeds=[0, 1], dtype="float64", progress=False)
    ds = train.train(net, tiny, "gd", {"learning_rate": [0.1, 1e200, 0.3]}, **kw)
    np.testing.assert_array_equal(ds.diverged, [[False, False], [True, True], [False, False]])
    np.testing.assert_array_equal(ds.diverged_at, [[-1, -1], [1, 1], [-1, -1]])
    bad = ds.sel(learning_rate=1e200)
    assert np.isfinite(bad.test_loss.isel(step=0)).all()  # fine before the first step
    assert np.isnan(bad.test_loss.isel(step=slice(1, None))).all()
    assert np.isnan(bad.train_accuracy.isel(step=slice(1, None))).all()
    assert np.isnan(train.steps_to_threshold(bad.isel(step=slice(1, None)), 0.0, "test_accuracy")).all()
    good = train.train(net, tiny, "gd", {"learning_rate": [0.1, 0.3]}, **kw)
    _assert_same_runs(ds.sel(learning_rate=[0.1, 0.3]), good)
    assert np.isfinite(good.train_loss).all()


def test_minibatches_are_seeded_and_cover_each_example_once():
    b = train.epoch_batches(seed=4, epoch=2, n_train=100, batch_size=10)
    assert b.shape == (10, 10)
    assert sorted(b.ravel().tolist()) == list(range(100))  # every example exactly once
    np.testing.assert_array_equal(b, train.epoch_batches(4, 2, 100, 10))  # deterministic
    assert not np.array_equal(b, train.epoch_batches(4, 3, 100, 10))  # reshuffled each epoch
    assert not np.array_equal(b, train.epoch_batches(5, 2, 100, 10))  # seed matters
    r = train.epoch_batches(0, 0, 103, 10)  # remainder of 3 dropped, no repeats
    assert r.shape == (10, 10) and len(set(r.ravel().tolist())) == 100 and r.max() < 103
    with pytest.raises(ValueError, match="batch_size"):
        train.epoch_batches(0, 0, 10, 11)


def test_engine_feeds_exactly_those_minibatches(tiny):
    """A plain float64 loop over epoch_batches with θ ← θ − η∇L reproduces the engine."""
    net = _net()
    ds = train.train(net, tiny, "gd", {"learning_rate": 0.7}, epochs=2, batch_size=20,
                     seeds=[5], train_subset=60, dtype="float64", eval_on=("train",), progress=False)
    d = tiny.flatten()
    x, y = jnp.asarray(d.x_train[:60], jnp.float64), jnp.asarray(d.y_train[:60])
    params = jax.tree.map(jnp.asarray, net.init(5, (64,), jnp.float64))
    grad, full_loss = jax.jit(jax.grad(net.loss_fn)), jax.jit(net.loss_fn)
    for epoch in range(2):
        for rows in train.epoch_batches(5, epoch, 60, 20):
            g = grad(params, x[rows], y[rows])
            params = jax.tree.map(lambda p, gi: p - 0.7 * gi, params, g)
        np.testing.assert_allclose(float(ds.train_loss.isel(seed=0).sel(epoch=epoch + 1)),
                                   float(full_loss(params, x, y)), rtol=1e-12)


def test_steps_to_threshold_on_constructed_history():
    acc = np.array([[0.1, 0.5, 0.96, 0.94, 0.99],
                    [0.1, 0.2, 0.3, 0.4, 0.5],
                    [0.1, np.nan, np.nan, np.nan, np.nan]])
    loss = -np.log(np.nan_to_num(acc, nan=0.5))
    ds = xr.Dataset({"train_accuracy": (("sigma", "step"), acc), "train_loss": (("sigma", "step"), loss)},
                    coords={"sigma": [0, 1, 2], "step": [0, 10, 20, 30, 40]})
    np.testing.assert_array_equal(train.steps_to_threshold(ds, 0.95, "train_accuracy"), [20, np.nan, np.nan])
    np.testing.assert_array_equal(train.steps_to_threshold(ds, 0.98, "train_accuracy"), [40, np.nan, np.nan])
    np.testing.assert_array_equal(train.steps_to_threshold(ds, 0.1, "train_accuracy"), [0, 0, 0])
    at = train.at_threshold(ds, 0.95, "train_accuracy")
    np.testing.assert_allclose(at.train_loss, [loss[0, 2], np.nan, np.nan])
    np.testing.assert_array_equal(at.reached, [20, np.nan, np.nan])


def test_point_list_grid_wall_time_and_attrs(tiny):
    pts = [{"learning_rate": 0.5, "momentum": 0.0, "sigma": 0.0},
           {"learning_rate": 0.5, "momentum": 0.9, "sigma": 4.0}]
    ds = train.train(_net(), tiny, "super_accelerated", pts, steps=4, metrics_every=2,
                     eval_on=("test",), progress=False)
    assert ds.test_accuracy.dims == ("config", "seed", "step")
    np.testing.assert_array_equal(ds.sigma, [0.0, 4.0])
    np.testing.assert_array_equal(ds.step, [0, 2, 4])
    assert "train_loss" not in ds and ds.test_loss.dtype == np.float32
    assert (np.diff(ds.wall_time, axis=-1) >= 0).all() and float(ds.wall_time.isel(step=-1).min()) > 0
    assert ds.attrs["optimizer"] == "super_accelerated" and ds.attrs["batch_size"] == "full"


@pytest.mark.parametrize("kwargs, match", [
    (dict(optimizer="adamw"), "optimizer="),
    (dict(grid={"learning_rate": -0.1, "momentum": 0.9, "sigma": 1.0}), "learning_rate"),
    (dict(grid={}), "grid"),
    (dict(grid=[]), "grid"),
    (dict(grid={"learning_rate": [], "momentum": 0.9, "sigma": 1.0}), r"grid\['learning_rate'\]"),
    (dict(grid={"learning_rate": 0.1, "momentum": 0.9}), "sigma"),
    (dict(grid={"learning_rate": 0.1, "momentum": 0.9, "sigma": 1.0, "beta": 2}), "beta"),
    (dict(grid={"learning_rate": "fast", "momentum": 0.9, "sigma": 1.0}), "learning_rate"),
    (dict(batch_size=0, epochs=1, steps=None), "batch_size"),
    (dict(batch_size=10_000, epochs=1, steps=None), "batch_size"),
    (dict(batch_size=20, epochs=None, steps=None), "epochs"),
    (dict(steps=None), "steps"),
    (dict(steps=-3), "steps"),
    (dict(steps=5, metrics_every=2), "metrics_every"),
    (dict(batch_size=20, epochs=1, steps=None, metrics_every=4), "metrics_every"),
    (dict(eval_on=("valid",)), "eval_on"),
    (dict(seeds=[]), "seeds"),
    (dict(seeds=[1, 1]), "seeds"),
    (dict(chunk_size=0), "chunk_size"),
    (dict(dtype="float16"), "dtype"),
    (dict(model="resnet"), "model="),
    (dict(step_loop="python"), "step_loop="),
    (dict(step_loop="host", data_placement="stream", batch_size=20, epochs=1, steps=None), "step_loop='host'"),
])
def test_bad_arguments_raise_one_valueerror_naming_them(tiny, kwargs, match):
    args = dict(model=_net(), dataset=tiny, optimizer="super_accelerated",
                grid={"learning_rate": 0.1, "momentum": 0.9, "sigma": 1.0}, steps=2, progress=False)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        train.train(args.pop("model"), args.pop("dataset"), args.pop("optimizer"), args.pop("grid"), **args)


def test_class_mismatch_is_a_valueerror(tiny):
    with pytest.raises(ValueError, match="classes"):
        train.train(models.nielsen_mlp((3,), num_classes=4, input_dim=64), tiny, "gd",
                    {"learning_rate": 0.1}, steps=1, progress=False)


def test_benchmark_reports_both_rates(tiny):
    res = train.benchmark(n_models=4, steps=2, repeats=1, n_train=100, sequential_models=2,
                          hidden=(4,), dataset=tiny.flatten()._replace(
                              x_train=np.tile(tiny.flatten().x_train, (1, 13))[:, :784],
                              x_test=np.tile(tiny.flatten().x_test, (1, 13))[:, :784]))
    assert res["n_models"] == 4 and res["steps"] == 2 and res["n_train"] == 100
    assert res["vmapped_model_steps_per_s"] > 0 and res["sequential_model_steps_per_s"] > 0
    np.testing.assert_allclose(res["speedup"],
                               res["vmapped_model_steps_per_s"] / res["sequential_model_steps_per_s"])
    assert res["platform"] == jax.devices()[0].platform


# --------------------------------------------------------------------------- Hessian metrics (issue #14)


def _replay(net, tiny, rule, steps):
    """Θ (optax params) and state after each step, by a plain optax loop (float64): the oracle's path."""
    import optax
    from jax.flatten_util import ravel_pytree  # noqa: F401

    x = jnp.asarray(tiny.x_train.reshape(len(tiny.x_train), -1), jnp.float64)
    y = jnp.asarray(tiny.y_train, jnp.int32)
    loss = lambda p: net.loss_fn(p, x, y)  # noqa: E731
    params = jax.tree.map(jnp.asarray, net.init(0, (64,), jnp.float64))
    state = rule.init(params)
    out = [(params, state)]
    for _ in range(steps):
        u, state = rule.update(jax.grad(loss)(params), state, params)
        params = optax.apply_updates(params, u)
        out.append((params, state))
    return loss, out


def _dense_eigs(loss, params):
    from jax.flatten_util import ravel_pytree

    flat, unravel = ravel_pytree(params)
    return np.linalg.eigvalsh(np.asarray(jax.hessian(lambda f: loss(unravel(f)))(flat)))[::-1]


def test_sharpness_is_dense_hessian_spectrum_at_the_lookahead_point(tiny):
    """float64, σ = 2: every Hessian record equals eigvalsh of jax.hessian of the full training loss
    at Θ (the replayed optax parameters); hessian_at='theta' gives the one at θ = rule.to_paper(Θ)."""
    net = _net()
    grid = {"learning_rate": 0.5, "momentum": 0.9, "sigma": [2.0]}
    kw = dict(steps=6, seeds=[0], metrics_every=3, hessian_every=3, hessian_k=3, hessian_iters=60,
              dtype="float64", progress=False, eval_on=("train",))
    ds = train.train(net, tiny, "super_accelerated", grid, **kw)
    ds_t = train.train(net, tiny, "super_accelerated", grid, **kw, hessian_at="theta")
    rule = optim.super_accelerated(0.5, 0.9, 2.0)
    loss, path = _replay(net, tiny, rule, 6)
    assert ds.hessian_eigenvalues.dims[-1] == "eig" and ds.sizes["eig"] == 3
    for j, step in enumerate((0, 3, 6)):
        big_theta, state = path[step]
        ref = _dense_eigs(loss, big_theta)[:3]
        got = ds.hessian_eigenvalues.isel(sigma=0, seed=0, step=j).values
        np.testing.assert_allclose(got, ref, rtol=1e-7)
        assert float(ds.sharpness.isel(sigma=0, seed=0, step=j)) == pytest.approx(ref[0], rel=1e-7)
        ref_t = _dense_eigs(loss, rule.to_paper(big_theta, state))[0]
        assert float(ds_t.sharpness.isel(sigma=0, seed=0, step=j)) == pytest.approx(ref_t, rel=1e-7)
        assert float(ds.sharpness_residual.isel(sigma=0, seed=0, step=j)) < 1e-6 * ref[0]
    # Θ ≠ θ once the velocity is non-zero, and the two Hessians differ measurably
    assert abs(float(ds.sharpness.isel(step=1).squeeze()) / float(ds_t.sharpness.isel(step=1).squeeze()) - 1) > 1e-6
    assert ds.attrs["hessian_at"] == "lookahead" and ds_t.attrs["hessian_at"] == "theta"


def test_preconditioned_sharpness_of_adam_sa_matches_oracle(tiny):
    net = _net()
    ds = train.train(net, tiny, "adam_sa", {"learning_rate": 0.05, "sigma": [1.0]}, steps=4, seeds=[0],
                     metrics_every=2, hessian_every=2, hessian_iters=60, dtype="float64", progress=False,
                     eval_on=("train",))
    rule = optim.adam_sa(0.05, sigma=1.0)
    loss, path = _replay(net, tiny, rule, 4)
    from jax.flatten_util import ravel_pytree

    assert np.isnan(float(ds.preconditioned_sharpness.isel(step=0).squeeze()))  # no preconditioner before step 1
    for j, step in ((1, 2), (2, 4)):
        params, state = path[step]
        p = np.asarray(ravel_pytree(dynsim.run.preconditioner(rule, state))[0])
        np.testing.assert_allclose(p, np.sqrt(np.asarray(ravel_pytree(state.inner[0].nu)[0]) / (1 - 0.999 ** step))
                                   + 1e-8, rtol=1e-12)
        flat, unravel = ravel_pytree(params)
        h = np.asarray(jax.hessian(lambda f: loss(unravel(f)))(flat))
        ref = np.max(np.linalg.eigvals(h / p[:, None]).real)
        got = float(ds.preconditioned_sharpness.isel(step=j).squeeze())
        assert got == pytest.approx(ref, rel=1e-6)


def test_hessian_records_vmapped_equal_alone_and_nan_between(tiny):
    """A σ × seed grid in one program == each model alone (chunk_size=1); NaN at off-records."""
    net = _net()
    grid = {"learning_rate": 0.5, "momentum": 0.9, "sigma": [0.0, 4.0]}
    kw = dict(steps=6, seeds=2, metrics_every=1, hessian_every=2, hessian_k=2, hessian_iters=10,
              dtype="float64", progress=False, eval_on=("train",))
    together = train.train(net, tiny, "super_accelerated", grid, **kw)
    alone = train.train(net, tiny, "super_accelerated", grid, **kw, chunk_size=1)
    for v in ("sharpness", "hessian_eigenvalues", "sharpness_residual"):
        np.testing.assert_allclose(together[v].values, alone[v].values, rtol=1e-10, atol=1e-300, err_msg=v)
    s = together.sharpness.values
    assert np.all(np.isfinite(s[..., ::2])) and np.all(np.isnan(s[..., 1::2]))
    assert "preconditioned_sharpness" not in together  # only for the adaptive rules
    off = train.train(net, tiny, "super_accelerated", grid, steps=2, seeds=1, progress=False)
    assert "sharpness" not in off and "eig" not in off.dims


@pytest.mark.parametrize("kwargs, match", [
    (dict(metrics_every=2, hessian_every=3), "hessian_every=3 must be a multiple of metrics_every=2"),
    (dict(hessian_every=2, hessian_k=5, hessian_iters=4), "hessian_k=5"),
    (dict(hessian_every=2, hessian_at="phi"), "hessian_at"),
    (dict(hessian_every=-1), "hessian_every"),
    (dict(hessian_every=2, hessian_iters=0), "hessian_iters"),
])
def test_bad_hessian_arguments(tiny, kwargs, match):
    with pytest.raises(ValueError, match=match):
        train.train(_net(), tiny, "super_accelerated", {"learning_rate": 0.1, "momentum": 0.9, "sigma": 1.0},
                    steps=6, progress=False, **kwargs)
