"""dynsim.train (the front of dynsim.training): the vmapped grid against per-model runs and independent oracles."""
import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import dynsim
from dynsim import models, optim
from dynsim import training as train
from dynsim.engine import execute
from dynsim.training import Placement

TIME_VARS = ("train_loss", "train_accuracy", "test_loss", "test_accuracy", "grad_norm",
             "running_loss", "running_accuracy")


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
    execute.clear_cache()
    net = _net((6,))
    n0 = execute.trace_count()
    kw = dict(epochs=2, batch_size=20, metrics_every=3, dtype="float64", progress=False)
    grid = {"learning_rate": [0.5, 2.0], "momentum": 0.9, "sigma": [0.0, 3.0]}
    ds = train.train("super_accelerated", net, tiny, grid, seeds=[0, 7], placement=Placement(chunk_size=3), **kw)
    assert execute.trace_count() - n0 == 1  # 8 models, 4 chunks, one trace/compile
    # chunks are rectangular blocks of the (lr, sigma, seed) grid: 3 models per chunk -> blocks of
    # (1, 1, 2), 4 chunks (the attribute used to say ceil(8 / 3) = 3, not what ran)
    assert ds.attrs["n_chunks"] == 4
    assert ds.test_accuracy.dims == ("learning_rate", "sigma", "seed", "step")
    assert ds.sizes["step"] == 1 + 2 * 2  # step 0, then 2 records per epoch (6 steps / 3)
    np.testing.assert_allclose(ds.epoch, [0, 0.5, 1, 1.5, 2])
    np.testing.assert_array_equal(ds.step, [0, 3, 6, 9, 12])
    # learning happened (else equality below would be vacuous)
    assert float(ds.train_loss.isel(step=-1).max()) < float(ds.train_loss.isel(step=0).min())
    assert ds.diverged.sum() == 0
    for lr in (0.5, 2.0):
        for sig in (0.0, 3.0):
            for seed in (0, 7):
                alone = train.train("super_accelerated", net, tiny,
                                    {"learning_rate": lr, "momentum": 0.9, "sigma": sig},
                                    seeds=[seed], placement=Placement(chunk_size=1), **kw)
                _assert_same_runs(ds.sel(learning_rate=lr, sigma=sig, seed=seed),
                                  alone.isel(seed=0))
    # the same program serves new values, more models (more chunks) and more epochs:
    # not even a small XLA compile happens on the second call
    n1 = execute.trace_count()
    grid2 = {"learning_rate": [0.1, 0.2, 0.3], "momentum": 0.5, "sigma": [1.0, 5.0]}
    n_xla, ds2 = _backend_compiles(functools.partial(
        train.train, "super_accelerated", net, tiny, grid2, seeds=[1, 2], placement=Placement(chunk_size=3),
        **{**kw, "epochs": 3}))
    assert n_xla == 0 and execute.trace_count() == n1
    assert ds2.attrs["n_chunks"] == 6  # (3, 2, 2) in blocks of (1, 1, 2)


@pytest.mark.slow
def test_metrics_are_in_paper_coordinates(tiny):
    """Full batch: recorded train loss = loss at θ_i of dynsim.simulate (the paper's map);
    the running loss is at the look-ahead point Θ_i = θ_i + σ u_{i-1}, which differs for σ > 0."""
    net = _net()
    steps = 12
    ds = train.train("super_accelerated", net, tiny,
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
    a = train.train(other, _net(), tiny, hp, **kw)
    b = train.train("super_accelerated", _net(), tiny, {"learning_rate": 0.8, **sa_hp}, **kw)
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
    execute.clear_cache()
    train.train("heavy_ball", _net(), tiny, {"learning_rate": [0.1, 0.2], "momentum": 0.9},
                steps=2, dtype="float64", progress=False)
    traced = [(kw, r) for kw, r in calls if isinstance(kw["learning_rate"], jax.core.Tracer)]
    assert traced and all(isinstance(r, optim.Rule) and r.name == "heavy_ball" for _, r in traced)
    execute.clear_cache()


@pytest.mark.slow
def test_divergent_model_is_flagged_frozen_and_harmless(tiny):
    net = models.softmax_mlp((8,), input_dim=64)
    kw = dict(steps=6, seeds=[0, 1], dtype="float64", progress=False)
    ds = train.train("gd", net, tiny, {"learning_rate": [0.1, 1e200, 0.3]}, **kw)
    np.testing.assert_array_equal(ds.diverged, [[False, False], [True, True], [False, False]])
    np.testing.assert_array_equal(ds.diverged_at, [[-1, -1], [1, 1], [-1, -1]])
    bad = ds.sel(learning_rate=1e200)
    assert np.isfinite(bad.test_loss.isel(step=0)).all()  # fine before the first step
    assert np.isnan(bad.test_loss.isel(step=slice(1, None))).all()
    assert np.isnan(bad.train_accuracy.isel(step=slice(1, None))).all()
    assert np.isnan(train.steps_to_threshold(bad.isel(step=slice(1, None)), 0.0, "test_accuracy")).all()
    good = train.train("gd", net, tiny, {"learning_rate": [0.1, 0.3]}, **kw)
    _assert_same_runs(ds.sel(learning_rate=[0.1, 0.3]), good)
    assert np.isfinite(good.train_loss).all()


def test_point_list_grid_wall_time_and_attrs(tiny):
    pts = [{"learning_rate": 0.5, "momentum": 0.0, "sigma": 0.0},
           {"learning_rate": 0.5, "momentum": 0.9, "sigma": 4.0}]
    ds = train.train("super_accelerated", _net(), tiny, pts, steps=4, metrics_every=2,
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
    (dict(placement=dict(chunk_size=0)), "chunk_size"),
    (dict(dtype="float16"), "dtype"),
    (dict(model="resnet"), "model="),
    (dict(placement=dict(loop="python")), "loop="),
    (dict(placement=dict(loop="host", data="stream"), batch_size=20, epochs=1, steps=None), "step loop 'host'"),
    (dict(placement="stream"), "placement='stream' must be a dynsim.training.Placement"),
    (dict(hessian=3), "hessian=3 must be a dynsim.hessian.Hessian"),
    (dict(steps=2.0), "steps=2.0 must be an integer"),
])
def test_bad_arguments_raise_one_valueerror_naming_them(tiny, kwargs, match):
    args = dict(model=_net(), dataset=tiny, optimizer="super_accelerated",
                grid={"learning_rate": 0.1, "momentum": 0.9, "sigma": 1.0}, steps=2, progress=False)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        if isinstance(args.get("placement"), dict):
            args["placement"] = Placement(**args["placement"])
        train.train(args.pop("optimizer"), args.pop("model"), args.pop("dataset"), args.pop("grid"), **args)


def test_class_mismatch_is_a_valueerror(tiny):
    with pytest.raises(ValueError, match="classes"):
        train.train("gd", models.nielsen_mlp((3,), num_classes=4, input_dim=64), tiny,
                    {"learning_rate": 0.1}, steps=1, progress=False)



class Tiny(nn.Module):
    """A user's module: a layer norm (a parameter neither kernel nor bias) and a dense layer."""

    @nn.compact
    def __call__(self, x):
        x = x.reshape((x.shape[0], -1))
        x = nn.LayerNorm()(nn.relu(nn.Dense(16)(x)))
        return nn.Dense(10)(x)


@pytest.mark.slow
def test_custom_flax_module_with_optax_adam_matches_a_hand_written_loop(tiny):
    model = models.from_module(Tiny(), "cross_entropy", 10, name="tiny")
    steps, lrs = 15, [1e-2, 3e-2]
    ds = dynsim.train(optax.adam, model, tiny, {"learning_rate": lrs, "b1": 0.8}, steps=steps, seeds=[3],
                      progress=False, dtype="float64")
    x = jnp.asarray(tiny.x_train, jnp.float64)
    y = jnp.asarray(tiny.y_train)
    for i, lr in enumerate(lrs):
        params = model.init(3, x.shape[1:], jnp.float64)
        tx = optax.adam(lr, b1=0.8)
        state = tx.init(params)
        losses = []

        @jax.jit
        def step(params, state):
            loss, g = jax.value_and_grad(model.loss_fn)(params, x, y)
            updates, state = tx.update(g, state, params)
            return optax.apply_updates(params, updates), state, loss

        for _ in range(steps):
            params, state, loss = step(params, state)
            losses.append(loss)
        final = float(model.loss_fn(params, x, y))
        np.testing.assert_allclose(ds.train_loss.values[i, 0, -1], final, rtol=1e-10)
        np.testing.assert_allclose(ds.running_loss.values[i, 0, 1:], np.array(losses), rtol=1e-10)
