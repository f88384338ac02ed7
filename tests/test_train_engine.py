"""Training sweeps on the engine: store, resume after SIGKILL, sharding, multi-process, user models, errors."""
import json

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import processes
import pytest

import dynsim
from dynsim import cli, data, models

TIMELESS = ("wall_time",)  # records this run's clock: the one variable a resume changes


def _equal(a, b, skip=TIMELESS):
    processes.assert_same_dataset(a, b, skip)


@pytest.fixture(scope="module")
def digits():
    d = data.load("digits")
    return data.Dataset(d.x_train[:240], d.y_train[:240], d.x_test[:60], d.y_test[:60], "digits-240", 10)


GRID = {"learning_rate": 0.5, "momentum": 0.9, "sigma": [0.0, 1.0, 2.0, 4.0]}


def test_store_equals_in_memory_and_resumes_partial_runs(tmp_path, digits):
    kw = dict(steps=12, metrics_every=3, seeds=[0, 5], chunk_size=2, progress=False,
              thresholds={"test_accuracy": [0.3, 0.6]})
    mem = dynsim.train("nielsen_30", digits, "super_accelerated", GRID, **kw)
    assert mem.attrs["complete"] and mem.steps_to_test_accuracy.dims == ("sigma", "seed", "test_accuracy_threshold")
    part = dynsim.train("nielsen_30", digits, "super_accelerated", GRID, out=tmp_path / "t", _stop_after=1, **kw)
    assert not part.attrs["complete"]
    assert np.isnan(part.test_loss.sel(sigma=4.0).values).all()  # not run yet
    full = dynsim.train("nielsen_30", digits, "super_accelerated", GRID, out=tmp_path / "t", **kw)
    assert full.attrs["complete"]
    _equal(full, mem)
    lines = (tmp_path / "t" / "progress.log").read_text().split()
    assert sorted(map(int, lines)) == list(range(4))  # 8 models in chunks of 2: each once
    # the thresholds summary is the first record reaching the value
    from dynsim.training import steps_to_threshold

    first = steps_to_threshold(mem, 0.6, "test_accuracy")
    np.testing.assert_array_equal(mem.steps_to_test_accuracy.sel(test_accuracy_threshold=0.6).values, first.values)


def test_two_devices_equal_one(digits):
    """Sharding splits the batch of models; each model's computation is the same.

    Equal to float rounding, not bitwise: with 4 instead of 8 models per device XLA:CPU blocks
    the sums inside its dot kernels differently (float64: 4e-16 relative in the test loss,
    measured). Divergence flags, which depend on the trajectory, are identical.
    """
    kw = dict(steps=10, metrics_every=5, seeds=[0, 1], chunk_size=8, progress=False, dtype="float64")
    one = dynsim.train("nielsen_30", digits, "super_accelerated", GRID, devices=1, **kw)
    two = dynsim.train("nielsen_30", digits, "super_accelerated", GRID, devices=2, **kw)
    for k in ("test_loss", "train_loss", "test_accuracy", "grad_norm"):
        np.testing.assert_allclose(one[k].values, two[k].values, rtol=1e-12, atol=0, err_msg=k)
    np.testing.assert_array_equal(one.diverged.values, two.diverged.values)


class Tiny(nn.Module):
    """A user's module: a layer norm (a parameter neither kernel nor bias) and a dense layer."""

    @nn.compact
    def __call__(self, x):
        x = x.reshape((x.shape[0], -1))
        x = nn.LayerNorm()(nn.relu(nn.Dense(16)(x)))
        return nn.Dense(10)(x)


def test_custom_flax_module_with_optax_adam_matches_a_hand_written_loop(digits):
    model = models.from_module(Tiny(), "cross_entropy", 10, name="tiny")
    steps, lrs = 15, [1e-2, 3e-2]
    ds = dynsim.train(model, digits, optax.adam, {"learning_rate": lrs, "b1": 0.8}, steps=steps, seeds=[3],
                      progress=False, dtype="float64")
    x = jnp.asarray(digits.x_train, jnp.float64)
    y = jnp.asarray(digits.y_train)
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


# --------------------------------------------------------------------------- configs, kill and resume

CONFIG = processes.TRAIN_CONFIG


@pytest.mark.slow
def test_training_config_killed_twice_and_resumed_is_bit_identical(tmp_path):
    cfg = tmp_path / "train.toml"
    cfg.write_text(CONFIG)
    d = tmp_path / "killed"
    log = d / "progress.log"
    cmd = processes.DYNSIM + ["sweep"]
    n1 = processes.kill_when_logged(cmd + [str(cfg), "--out", str(d), "--no-progress"], log, 1)
    n2 = processes.kill_when_logged(cmd + ["--resume", str(d), "--no-progress"], log, n1 + 2)
    assert 1 <= n1 < n2 < 5, (n1, n2)  # 10 models in chunks of 2: two kills part-way
    r = processes.run(cmd + ["--resume", str(d), "--no-progress"])
    assert "train: 10 models" in r.stdout
    assert sorted(map(int, log.read_text().split())) == list(range(5))  # none lost or twice
    processes.run(cmd + [str(cfg), "--out", str(tmp_path / "clean"), "--no-progress"])
    _equal(dynsim.open_result(d).load(), dynsim.open_result(tmp_path / "clean").load())


_MULTIHOST_WORKER = """
import json, os, sys
pid, n, port, out, extra = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4], json.loads(sys.argv[5])
os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"
import jax
jax.distributed.initialize(coordinator_address=f"localhost:{port}", num_processes=n, process_id=pid)
from jax.experimental import multihost_utils
import dynsim
from dynsim import data
d = data.load("digits")
ds = data.Dataset(d.x_train[:200], d.y_train[:200], d.x_test[:50], d.y_test[:50], "digits-200", 10)
grid = {"learning_rate": 0.5, "momentum": 0.9, "sigma": [0.0, 1.0, 2.0, 4.0]}
kw = dict(metrics_every=4, seeds=[0, 1], chunk_size=2, progress=False, out=out, **extra)
if jax.process_index() == 0:
    dynsim.train("nielsen_30", ds, "super_accelerated", grid, chunks=slice(0, 0), **kw)  # create the store
multihost_utils.sync_global_devices("store created")
dynsim.train("nielsen_30", ds, "super_accelerated", grid, chunks=slice(jax.process_index(), None, 2), **kw)
print("devices", len(jax.devices()), len(jax.local_devices()), flush=True)
multihost_utils.sync_global_devices("done")
jax.distributed.shutdown()
"""


# streamed: two epochs of 4 minibatches of 50
MULTIHOST_RUNS = {"replicate": dict(steps=8), "stream": dict(epochs=2, batch_size=50, data_placement="stream")}


@pytest.mark.slow
@pytest.mark.parametrize("placement", list(MULTIHOST_RUNS))
def test_two_jax_distributed_processes_give_the_store_of_one(tmp_path, placement):
    """Each process runs its chunks into the shared store; a streamed run's store equals a
    replicated single-process run's, bit for bit (each evaluated set is one eval batch)."""
    extra = MULTIHOST_RUNS[placement]
    script = tmp_path / "worker.py"
    script.write_text(_MULTIHOST_WORKER)
    out = tmp_path / "out"
    logs = processes.distributed(script, 2, out, json.dumps(extra))
    assert all("devices 4 2" in log for log in logs)
    done = [sorted(int(x) for x in (out / f"progress-{i}.log").read_text().split()) for i in range(2)]
    assert done == [[0, 2], [1, 3]]  # disjoint chunks, each computed once
    d = data.load("digits")
    ds = data.Dataset(d.x_train[:200], d.y_train[:200], d.x_test[:50], d.y_test[:50], "digits-200", 10)
    one = dynsim.train("nielsen_30", ds, "super_accelerated", GRID, metrics_every=4, seeds=[0, 1], chunk_size=2,
                       progress=False, out=tmp_path / "one", **{**extra, "data_placement": "replicate"})
    got = dynsim.open_result(out).load()
    assert got.attrs["data_placement"] == placement
    _equal(got, one)


# --------------------------------------------------------------------------- clear errors


def test_bad_training_input_is_one_clear_error(tmp_path, digits, capsys):
    bad_labels = data.Dataset(digits.x_train, digits.y_train + 5, digits.x_test, digits.y_test, "shifted", 10)
    with pytest.raises(ValueError, match=r"y_train holds labels in \[5, 14\], which do not fit"):
        dynsim.train("nielsen_30", bad_labels, "sa", GRID, steps=2, progress=False)
    with pytest.raises(ValueError, match="batch_size=1000 exceeds the 240 training examples"):
        dynsim.train("nielsen_30", digits, "sa", GRID, epochs=1, batch_size=1000, progress=False)
    # a config naming an unknown model: one line, exit 2
    cfg = tmp_path / "bad.toml"
    cfg.write_text(CONFIG.replace('"nielsen_30"', '"resnet_9000"'))
    assert cli.main(["sweep", str(cfg), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "model='resnet_9000' is unknown" in err
    # out holding a landscape sweep is refused and left as it was
    land = tmp_path / "land"
    dynsim.sweep("sa", "quadratic", {"k_eta": 0.1, "momentum": 0.9, "sigma": np.array([0.0, 1.0])}, 128, ["rate"],
                 progress=False, out=land)
    before = (land / "config.json").read_text()
    with pytest.raises(ValueError, match="holds a landscape sweep, not a training sweep"):
        dynsim.train("nielsen_30", digits, "sa", GRID, steps=2, progress=False, out=land)
    assert (land / "config.json").read_text() == before
    # and a different training sweep in out is refused too
    dynsim.train("nielsen_30", digits, "sa", GRID, steps=2, progress=False, out=tmp_path / "t2")
    with pytest.raises(ValueError, match="holds a different sweep"):
        dynsim.train("nielsen_30", digits, "sa", GRID, steps=3, progress=False, out=tmp_path / "t2")


@pytest.mark.parametrize("rule, hessian_every", [("rmsprop_sa", 2), ("super_accelerated", 0)])
def test_record_names_match_the_program(digits, rule, hessian_every):
    """record_names (the store's layout, known before anything runs) lists exactly what the program records."""
    from dynsim import train_program as tp
    from dynsim.engine.problem import resolve_optimizer

    model, opt = models.get("nielsen_30"), resolve_optimizer(rule)
    hp = {k: float(opt.defaults.get(k, 0.5)) for k in opt.params if k != "lookahead"}
    spec = tp.ProgramSpec(model=model, optimizer=opt, hp_names=tuple(hp), static=(), full_batch=True,
                          batch_size=240, steps_per_block=2, blocks_per_call=1, eval_train=True, eval_test=False,
                          eval_batch=100, input_shape=(64,), dtype="float32", hessian_every=hessian_every,
                          hessian_k=2, hessian_iters=4)
    carry = tp.initial_carry(opt.build(**hp), tp.initial_params(model, [0], (64,), "float32"), np.float32)
    x = digits.flatten()
    d = (x.x_train.astype(np.float32), x.y_train, x.x_test.astype(np.float32), x.y_test)
    out = jax.eval_shape(tp.program(spec), carry, {k: np.array([v], np.float32) for k, v in hp.items()},
                         np.array([0], np.int32), d, np.int32(0), np.bool_(True))[1]
    assert {k: v.shape[2:] for k, v in out.items()} == tp.record_names(spec)


# --------------------------------------------------------------------------- streamed data placement

TRAINING_CURVES = ("grad_norm", "running_loss", "running_accuracy", "train_accuracy", "test_accuracy", "diverged",
                   "diverged_at")


def _data_bytes(ds):
    """What train() counts as the dataset's size (float32 inputs, int32 labels)."""
    return sum(np.asarray(a).nbytes for a in (ds.x_train, ds.y_train, ds.x_test, ds.y_test))


def _streamed_equals_replicated(streamed, replicated):
    """Training bit for bit; the evaluation losses of multi-batch sets to float32 rounding.

    Every step computes exactly what the replicated program computes (same minibatches, the
    same step function), so the trajectories -- gradient norms, running losses, accuracy
    counts, divergence -- are bitwise equal. The train/test *losses* are summed in the same
    batches and order, but inside the replicated program the per-batch loss sum of a
    multi-batch set is evaluated in a lax.map loop, where XLA keeps ``(sum * 0.5/b) * b``
    (two roundings: the loop-invariant 0.5/b is hoisted out of the loop) while the streamed
    per-batch program folds it to ``sum * 0.5``: about one ulp apart (measured: relative <= 1.3e-7 in
    float32, 2.3e-16 in float64).
    """
    for k in TRAINING_CURVES:
        np.testing.assert_array_equal(streamed[k].values, replicated[k].values, err_msg=k)
    for k in ("train_loss", "test_loss"):
        np.testing.assert_allclose(streamed[k].values, replicated[k].values, rtol=1e-6, atol=0, err_msg=k)
    assert set(streamed.data_vars) == set(replicated.data_vars)


def test_streamed_minibatches_equal_replicated_with_store_and_resume(tmp_path, digits, monkeypatch):
    """Stream == replicate: several seeds, chunks splitting the seeds (a padded slot), blocks cut
    into segments of 2 + 2 + 1 steps, 2 devices; a partial streamed run into a store (some of
    the even chunks, as the first of two jax.distributed processes would run them), resumed."""
    from dynsim.engine import platform
    from dynsim.train_program import compile_count

    # 700 kB x 0.25: the streamed share (half) fits two eval batches of 50 and 2 steps of 2 seeds x 24
    monkeypatch.setattr(platform, "device_memory_bytes", lambda n_devices=1: 700_000)
    kw = dict(epochs=2, batch_size=24, metrics_every=5, seeds=[0, 5, 9], chunk_size=2, eval_batch=50,
              progress=False, thresholds={"test_accuracy": [0.5]})
    rep = dynsim.train("nielsen_30", digits, "super_accelerated", GRID, data_placement="replicate", **kw)
    assert rep.attrs["data_placement"] == "replicate"
    part = dynsim.train("nielsen_30", digits, "super_accelerated", GRID, data_placement="stream",
                        out=tmp_path / "s", chunks=slice(0, None, 2), _stop_after=3, **kw)
    assert not part.attrs["complete"] and np.isnan(part.test_loss.values).any()
    assert sorted(map(int, (tmp_path / "s" / "progress.log").read_text().split())) == [0, 2, 4]
    n0 = compile_count()
    full = dynsim.train("nielsen_30", digits, "super_accelerated", GRID, data_placement="stream",
                        out=tmp_path / "s", **kw)
    assert compile_count() == n0  # the resume reuses the compiled pieces
    assert full.attrs["complete"] and full.attrs["data_placement"] == "stream"
    assert full.attrs["stream_steps_per_transfer"] == 2 and full.attrs["stream_slots"] == 2
    assert json.loads((tmp_path / "s" / "config.json").read_text())["sweep"]["data_placement"] == "stream"
    assert sorted(map(int, (tmp_path / "s" / "progress.log").read_text().split())) == list(range(8))
    assert float(rep.train_loss.isel(epoch=-1).max()) < float(rep.train_loss.isel(epoch=0).min())  # it learned
    _streamed_equals_replicated(full, rep)
    np.testing.assert_array_equal(full.epochs_to_test_accuracy.values, rep.epochs_to_test_accuracy.values)
    # new hyperparameter values, same shapes: no new trace
    dynsim.train("nielsen_30", digits, "super_accelerated", {**GRID, "learning_rate": 0.3}, data_placement="stream",
                 **kw)
    assert compile_count() == n0


def test_streamed_single_batch_evaluation_is_bitwise(digits):
    """With every evaluated set in one eval batch (the default eval_batch) nothing differs: bitwise."""
    kw = dict(epochs=2, batch_size=40, metrics_every=3, seeds=[0, 5], chunk_size=2, progress=False)
    grid = {**GRID, "sigma": [0.0, 2.0]}
    rep = dynsim.train("nielsen_30", digits, "super_accelerated", grid, data_placement="replicate", **kw)
    stream = dynsim.train("nielsen_30", digits, "super_accelerated", grid, data_placement="stream", **kw)
    assert stream.attrs["stream_steps_per_transfer"] == 3
    _equal(stream, rep)


def test_auto_streams_when_the_data_do_not_fit(digits, monkeypatch):
    from dynsim.engine import platform

    kw = dict(epochs=2, batch_size=16, seeds=[0, 5], chunk_size=2, eval_batch=30, progress=False)
    grid = {**GRID, "sigma": [0.0, 2.0]}
    rep = dynsim.train("nielsen_30", digits, "super_accelerated", grid, **kw)
    assert rep.attrs["data_placement"] == "replicate"  # auto, and it fits
    assert "data_placement" not in json.loads(rep.attrs["config"])  # replicated stores keep their old config
    memory = int(0.9 * _data_bytes(digits) / 0.25)  # the budget is 90% of the data
    monkeypatch.setattr(platform, "device_memory_bytes", lambda n_devices=1: memory)
    auto = dynsim.train("nielsen_30", digits, "super_accelerated", grid, **kw)
    assert auto.attrs["data_placement"] == "stream" and json.loads(auto.attrs["config"])["data_placement"] == "stream"
    assert auto.attrs["stream_steps_per_transfer"] == 1  # only one step's minibatches fit
    _streamed_equals_replicated(auto, rep)
    with pytest.raises(ValueError, match=r"does not fit .* data_placement='replicate' .*\(data_placement='stream'"):
        dynsim.train("nielsen_30", digits, "super_accelerated", grid, data_placement="replicate", **kw)


def test_what_cannot_be_streamed_is_a_clear_error(tmp_path, digits, monkeypatch):
    from dynsim.engine import platform

    with pytest.raises(ValueError, match="data_placement='disk' must be one of 'auto', 'replicate', 'stream'"):
        dynsim.train("nielsen_30", digits, "sa", GRID, steps=2, data_placement="disk", progress=False)
    with pytest.raises(ValueError, match=r"data_placement='stream' was asked for, but full-batch .* give batch_size"):
        dynsim.train("nielsen_30", digits, "sa", GRID, steps=2, data_placement="stream", progress=False)
    with pytest.raises(ValueError, match=r"hessian_every=2 needs the training set on every device"):
        dynsim.train("nielsen_30", digits, "sa", GRID, epochs=1, batch_size=24, metrics_every=2, hessian_every=2,
                     data_placement="stream", progress=False)
    monkeypatch.setattr(platform, "device_memory_bytes", lambda n_devices=1: int(0.9 * _data_bytes(digits) / 0.25))
    with pytest.raises(ValueError, match=r"is needed: the dataset .* does not fit .* full-batch .* give batch_size, "
                                         r"or use train_subset"):
        dynsim.train("nielsen_30", digits, "sa", GRID, steps=2, progress=False)
    with pytest.raises(ValueError, match=r"two evaluation batches of 240 examples \(eval_batch=10000; "
                                         r".* lower eval_batch"):
        dynsim.train("nielsen_30", digits, "sa", GRID, epochs=1, batch_size=24, progress=False)
    with pytest.raises(ValueError, match=r"one step's minibatches for the chunk's 2 seed\(s\) \(batch_size=120.* "
                                         r"lower batch_size or chunk_size"):
        dynsim.train("nielsen_30", digits, "sa", GRID, epochs=1, batch_size=120, seeds=2, chunk_size=2,
                     eval_batch=30, progress=False)
    # the [problem] table takes the key and hands it to train()
    cfg = {"optimizer": "sa", "grid": {"learning_rate": 0.5, "momentum": 0.9, "sigma": 1.0},
           "problem": {"model": "nielsen_30", "dataset": "digits", "steps": 2, "data_placement": "disk"}}
    with pytest.raises(ValueError, match="data_placement='disk' must be one of"):
        dynsim.training.run_config(cfg, progress=False)
