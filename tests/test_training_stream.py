"""dynsim.training.stream: streamed minibatches give the device loop's numbers (bit for bit where the sums agree)."""
import json

import numpy as np
import processes
import pytest

import dynsim
from dynsim import data, models
from dynsim.engine import execute
from dynsim.training import Placement, job, problem


@pytest.fixture(scope="module")
def digits():
    d = data.load("digits")
    return data.Dataset(d.x_train[:240], d.y_train[:240], d.x_test[:60], d.y_test[:60], "digits-240", 10)


GRID = {"learning_rate": 0.5, "momentum": 0.9, "sigma": [0.0, 1.0, 2.0, 4.0]}
TRAINING_CURVES = ("grad_norm", "running_loss", "running_accuracy", "train_accuracy", "test_accuracy", "diverged",
                   "diverged_at")


def _equal(a, b):
    processes.assert_same_dataset(a, b, ("wall_time",))


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


@pytest.mark.slow
def test_streamed_minibatches_equal_replicated_with_store_and_resume(tmp_path, digits, monkeypatch):
    """Stream == replicate: several seeds, chunks splitting the seeds (a padded slot), blocks cut
    into segments of 2 + 2 + 1 steps, 2 devices; a partial streamed run into a store (some of
    the even chunks, as the first of two jax.distributed processes would run them), resumed."""
    from dynsim.engine import platform

    # 700 kB x 0.25: the streamed share (half) fits two eval batches of 50 and 2 steps of 2 seeds x 24
    monkeypatch.setattr(platform, "device_memory_bytes", lambda n_devices=1: 700_000)
    kw = dict(epochs=2, batch_size=24, metrics_every=5, seeds=[0, 5, 9], progress=False,
              thresholds={"test_accuracy": [0.5]})
    stream = Placement(data="stream", chunk_size=2, eval_batch=50)
    rep = dynsim.train("super_accelerated", "nielsen_30", digits, GRID, **kw,
                       placement=Placement(data="replicate", chunk_size=2, eval_batch=50))
    assert rep.attrs["data_placement"] == "replicate"
    part = job.run(problem.resolve("super_accelerated", "nielsen_30", digits, GRID, eval_batch=50,
                                   **{k: v for k, v in kw.items() if k != "progress"}),
                   stream, out=tmp_path / "s", chunks=slice(0, None, 2), stop_after=3, progress=False)
    assert not part.attrs["complete"] and np.isnan(part.test_loss.values).any()
    assert sorted(map(int, (tmp_path / "s" / "progress.log").read_text().split())) == [0, 2, 4]
    n0 = execute.trace_count()
    full = dynsim.train("super_accelerated", "nielsen_30", digits, GRID, placement=stream, out=tmp_path / "s", **kw)
    assert execute.trace_count() == n0  # the resume reuses the compiled pieces
    assert full.attrs["complete"] and full.attrs["data_placement"] == "stream"
    assert full.attrs["stream_steps_per_transfer"] == 2 and full.attrs["stream_slots"] == 2
    assert json.loads((tmp_path / "s" / "config.json").read_text())["sweep"]["data_placement"] == "stream"
    assert sorted(map(int, (tmp_path / "s" / "progress.log").read_text().split())) == list(range(8))
    assert float(rep.train_loss.isel(step=-1).max()) < float(rep.train_loss.isel(step=0).min())  # it learned
    _streamed_equals_replicated(full, rep)
    np.testing.assert_array_equal(full.steps_to_test_accuracy.values, rep.steps_to_test_accuracy.values)
    # new hyperparameter values, same shapes: no new trace
    dynsim.train("super_accelerated", "nielsen_30", digits, {**GRID, "learning_rate": 0.3}, placement=stream, **kw)
    assert execute.trace_count() == n0


@pytest.mark.slow
def test_streamed_single_batch_evaluation_is_bitwise(digits):
    """With every evaluated set in one eval batch (the default eval_batch) nothing differs: bitwise."""
    kw = dict(epochs=2, batch_size=40, metrics_every=3, seeds=[0, 5], progress=False)
    grid = {**GRID, "sigma": [0.0, 2.0]}
    rep = dynsim.train("super_accelerated", "nielsen_30", digits, grid, placement=Placement("replicate", chunk_size=2),
                       **kw)
    stream = dynsim.train("super_accelerated", "nielsen_30", digits, grid, placement=Placement("stream", chunk_size=2),
                          **kw)
    assert stream.attrs["stream_steps_per_transfer"] == 3
    _equal(stream, rep)


@pytest.mark.slow
def test_stream_loop_equals_the_device_loop_bit_for_bit(digits):
    """The stream loop against the device loop called directly, on one chunk: every record equal bitwise
    (each evaluated set one eval batch, one segment per block), the final carry too (parameters,
    optimizer state, divergence)."""
    from dynsim.training import device, stream
    from dynsim.training.job import ChunkRunner, make_job
    from dynsim.training.placement import Placed

    resolved = problem.resolve("super_accelerated", models.nielsen_mlp((6,), input_dim=64), digits,
                               {"learning_rate": 0.5, "momentum": 0.9, "sigma": [0.0, 3.0]}, epochs=2,
                               batch_size=40, metrics_every=3, seeds=[0, 4])
    runs = {}
    for name, loop, placed in (("device", device.run_chunk, Placed("replicate", "device", 4)),
                               ("stream", stream.run_chunk, Placed("stream", "device", 4, n_slots=2, segment=3))):
        runner = ChunkRunner(resolved, placed, make_job(resolved, placed, 1, "m").layout, 1)
        steps = []
        runs[name] = loop(resolved.spec, runner.chunk(0, 4), steps.append), steps
    (dev, dev_ticks), (st, st_ticks) = runs["device"], runs["stream"]
    assert dev_ticks == st_ticks == [6, 6]  # steps per call (epoch), per model
    assert len(dev.records) == len(st.records) == 3
    for a, b in zip(dev.records, st.records):
        assert set(a) == set(b)
        for k in a:
            np.testing.assert_array_equal(np.asarray(a[k]), np.asarray(b[k]), err_msg=k)
    for a, b in zip(jax_leaves(dev.carry), jax_leaves(st.carry)):
        np.testing.assert_array_equal(a, b)


def jax_leaves(tree):
    import jax

    return [np.asarray(x) for x in jax.tree.leaves(tree)]
