"""dynsim.training.job: the training job on the engine's runner: store, resume, sharding, multi-process, old stores."""
import json

import numpy as np
import processes
import pytest

import dynsim
from dynsim import data
from dynsim.training import Placement, job, problem

TIMELESS = ("wall_time",)  # records this run's clock: the one variable a resume changes


def _equal(a, b, skip=TIMELESS):
    processes.assert_same_dataset(a, b, skip)


def partial_run(optimizer, model, dataset, grid, placement, *, out, stop_after, chunks=None, progress=False, **kw):
    """What a killed run leaves: ``stop_after`` chunks written (the runner's option the CLI uses)."""
    resolved = problem.resolve(optimizer, model, dataset, grid, eval_batch=placement.eval_batch, **kw)
    return job.run(resolved, placement, out=out, chunks=chunks, progress=progress, stop_after=stop_after)


@pytest.fixture(scope="module")
def digits():
    d = data.load("digits")
    return data.Dataset(d.x_train[:240], d.y_train[:240], d.x_test[:60], d.y_test[:60], "digits-240", 10)


GRID = {"learning_rate": 0.5, "momentum": 0.9, "sigma": [0.0, 1.0, 2.0, 4.0]}


def test_store_equals_in_memory_and_resumes_partial_runs(tmp_path, digits):
    kw = dict(steps=12, metrics_every=3, seeds=[0, 5], progress=False, thresholds={"test_accuracy": [0.3, 0.6]})
    placement = Placement(chunk_size=2)
    mem = dynsim.train("super_accelerated", "nielsen_30", digits, GRID, placement=placement, **kw)
    assert mem.attrs["complete"] and mem.steps_to_test_accuracy.dims == ("sigma", "seed", "test_accuracy_threshold")
    part = partial_run("super_accelerated", "nielsen_30", digits, GRID, placement, out=tmp_path / "t", stop_after=1,
                       **kw)
    assert not part.attrs["complete"]
    assert np.isnan(part.test_loss.sel(sigma=4.0).values).all()  # not run yet
    full = dynsim.train("super_accelerated", "nielsen_30", digits, GRID, placement=placement, out=tmp_path / "t", **kw)
    assert full.attrs["complete"]
    _equal(full, mem)
    lines = (tmp_path / "t" / "progress.log").read_text().split()
    assert sorted(map(int, lines)) == list(range(4))  # 8 models in chunks of 2: each once
    # the thresholds summary is the first record reaching the value
    from dynsim.training import steps_to_threshold

    first = steps_to_threshold(mem, 0.6, "test_accuracy")
    np.testing.assert_array_equal(mem.steps_to_test_accuracy.sel(test_accuracy_threshold=0.6).values, first.values)


@pytest.mark.slow
def test_two_devices_equal_one(digits):
    """Sharding splits the batch of models; each model's computation is the same.

    Equal to float rounding, not bitwise: with 4 instead of 8 models per device XLA:CPU blocks
    the sums inside its dot kernels differently (float64: 4e-16 relative in the test loss,
    measured). Divergence flags, which depend on the trajectory, are identical.
    """
    kw = dict(steps=10, metrics_every=5, seeds=[0, 1], progress=False, dtype="float64")
    one = dynsim.train("super_accelerated", "nielsen_30", digits, GRID, placement=Placement(chunk_size=8, devices=1),
                       **kw)
    two = dynsim.train("super_accelerated", "nielsen_30", digits, GRID, placement=Placement(chunk_size=8, devices=2),
                       **kw)
    for k in ("test_loss", "train_loss", "test_accuracy", "grad_norm"):
        np.testing.assert_allclose(one[k].values, two[k].values, rtol=1e-12, atol=0, err_msg=k)
    np.testing.assert_array_equal(one.diverged.values, two.diverged.values)


_MULTIHOST_WORKER = """
import json, os, sys
pid, n, port, out, extra = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4], json.loads(sys.argv[5])
os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"
import jax
jax.distributed.initialize(coordinator_address=f"localhost:{port}", num_processes=n, process_id=pid)
from jax.experimental import multihost_utils
import dynsim
from dynsim import data
from dynsim.training import Placement
d = data.load("digits")
ds = data.Dataset(d.x_train[:200], d.y_train[:200], d.x_test[:50], d.y_test[:50], "digits-200", 10)
grid = {"learning_rate": 0.5, "momentum": 0.9, "sigma": [0.0, 1.0, 2.0, 4.0]}
kw = dict(metrics_every=4, seeds=[0, 1], progress=False, out=out, **extra)
kw["placement"] = Placement(chunk_size=2, data=kw.pop("data", "replicate"))
if jax.process_index() == 0:
    dynsim.train("super_accelerated", "nielsen_30", ds, grid, chunks=slice(0, 0), **kw)  # create the store
multihost_utils.sync_global_devices("store created")
dynsim.train("super_accelerated", "nielsen_30", ds, grid, chunks=slice(jax.process_index(), None, 2), **kw)
print("devices", len(jax.devices()), len(jax.local_devices()), flush=True)
multihost_utils.sync_global_devices("done")
jax.distributed.shutdown()
"""


# streamed: two epochs of 4 minibatches of 50
MULTIHOST_RUNS = {"replicate": dict(steps=8), "stream": dict(epochs=2, batch_size=50, data="stream")}


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
    one = dynsim.train("super_accelerated", "nielsen_30", ds, GRID, metrics_every=4, seeds=[0, 1],
                       placement=Placement(chunk_size=2), progress=False, out=tmp_path / "one",
                       **{k: v for k, v in extra.items() if k != "data"})
    got = dynsim.open_result(out).load()
    assert got.attrs["data_placement"] == placement
    _equal(got, one)


@pytest.mark.slow
def test_old_stores_open_in_the_new_layout_and_refuse_a_resume(tmp_path, digits):
    """A store written with the old minibatch layout (dim 'epoch', epochs_to_*) reads as today's."""
    kw = dict(epochs=2, batch_size=60, metrics_every=2, seeds=[0], progress=False,
              thresholds={"test_accuracy": [0.2]})
    new = dynsim.train("super_accelerated", "nielsen_30", digits, GRID, out=tmp_path / "new", **kw)
    assert new.test_loss.dims == ("sigma", "seed", "step") and new.epoch.dims == ("step",)
    np.testing.assert_array_equal(new.step, [0, 2, 4, 6, 8])
    np.testing.assert_allclose(new.epoch, [0, 0.5, 1, 1.5, 2])
    # rewrite it as the previous layout wrote it: 'epoch' dims, epochs_to_* in epochs
    old = tmp_path / "old"
    ds = dynsim.open_result(tmp_path / "new").load()
    legacy = ds.swap_dims(step="epoch").rename(steps_to_test_accuracy="epochs_to_test_accuracy")
    legacy["epochs_to_test_accuracy"] = legacy.epochs_to_test_accuracy / ds.attrs["steps_per_epoch"]
    _write_legacy(tmp_path / "new", old, legacy)
    got = dynsim.open_result(old).load()
    assert got.test_loss.dims == ("sigma", "seed", "step") and "epochs_to_test_accuracy" not in got
    np.testing.assert_array_equal(got.steps_to_test_accuracy.values, new.steps_to_test_accuracy.values)
    np.testing.assert_array_equal(got.test_loss.values, new.test_loss.values)
    with pytest.raises(ValueError, match="older dynsim .* run again into a new directory"):
        dynsim.train("super_accelerated", "nielsen_30", digits, GRID, out=old, **kw)


def _write_legacy(new, old, legacy):
    """A copy of the store at ``new`` with the variables and coordinates of ``legacy`` (the old layout)."""
    import shutil

    import zarr

    shutil.copytree(new, old)
    meta = json.loads((old / "config.json").read_text())
    g = zarr.open_group(str(old / "results.zarr"), mode="r+")
    for k in list(g.array_keys()):
        del g[k]
    for name, v in {**legacy.coords, **legacy.data_vars}.items():
        a = g.create_array(name, shape=v.shape, dtype=v.dtype, dimension_names=list(v.dims), attributes=v.attrs)
        a[...] = v.values
    meta["variables"] = {k: list(v.dims) for k, v in legacy.data_vars.items()}
    meta["coords"] = {k: list(v.dims) for k, v in legacy.coords.items()}
    (old / "config.json").write_text(json.dumps(meta))


def test_progress_counts_whole_model_steps(digits, capsys):
    """The bar counts model-steps (integers up to the total): no fractions of a model, no TqdmWarning."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a TqdmWarning (n > total) would fail here
        dynsim.train("sa", "nielsen_30", digits, {"learning_rate": 0.5, "momentum": 0.9, "sigma": [0.0, 1.0, 2.0]},
                     epochs=2, batch_size=60, seeds=[0], placement=Placement(chunk_size=2), progress=True)
    err = capsys.readouterr().err
    assert "train super_accelerated x3" in err and "step/s" in err
    assert " 24/24 " in err and " 0/24 " in err and "." not in err.split("/24")[0][-4:]  # 3 models x 8 steps
    assert "-" not in err.rsplit("<", 1)[-1].split(",")[0]  # the remaining time is never negative
