"""dynsim.training.placement: Placement is checked at construction; auto streams when the data do not fit;
what cannot be streamed is one clear error."""
import json

import numpy as np
import pytest

import dynsim
from dynsim import data
from dynsim.hessian import Hessian
from dynsim.training import Placement


@pytest.fixture(scope="module")
def digits():
    d = data.load("digits")
    return data.Dataset(d.x_train[:240], d.y_train[:240], d.x_test[:60], d.y_test[:60], "digits-240", 10)


GRID = {"learning_rate": 0.5, "momentum": 0.9, "sigma": [0.0, 1.0, 2.0, 4.0]}


def _data_bytes(ds):
    """What train() counts as the dataset's size (float32 inputs, int32 labels)."""
    return sum(np.asarray(a).nbytes for a in (ds.x_train, ds.y_train, ds.x_test, ds.y_test))


def _streamed_equals_replicated(streamed, replicated):
    from test_training_stream import _streamed_equals_replicated as check

    check(streamed, replicated)


@pytest.mark.slow
def test_auto_streams_when_the_data_do_not_fit(digits, monkeypatch):
    from dynsim.engine import platform

    kw = dict(epochs=2, batch_size=16, seeds=[0, 5], progress=False)
    grid = {**GRID, "sigma": [0.0, 2.0]}
    auto_placement = Placement(chunk_size=2, eval_batch=30)
    rep = dynsim.train("super_accelerated", "nielsen_30", digits, grid, placement=auto_placement, **kw)
    assert rep.attrs["data_placement"] == "replicate"  # auto, and it fits
    assert "data_placement" not in json.loads(rep.attrs["config"])  # replicated stores keep their old config
    memory = int(0.9 * _data_bytes(digits) / 0.25)  # the budget is 90% of the data
    monkeypatch.setattr(platform, "device_memory_bytes", lambda n_devices=1: memory)
    auto = dynsim.train("super_accelerated", "nielsen_30", digits, grid, placement=auto_placement, **kw)
    assert auto.attrs["data_placement"] == "stream" and json.loads(auto.attrs["config"])["data_placement"] == "stream"
    assert auto.attrs["stream_steps_per_transfer"] == 1  # only one step's minibatches fit
    _streamed_equals_replicated(auto, rep)
    with pytest.raises(ValueError, match=r"does not fit .* Placement\(data='replicate'\) .*"
                                         r"\(Placement\(data='stream'\)"):
        dynsim.train("super_accelerated", "nielsen_30", digits, grid,
                     placement=Placement("replicate", chunk_size=2, eval_batch=30), **kw)


def test_what_cannot_be_streamed_is_a_clear_error(tmp_path, digits, monkeypatch):
    from dynsim.engine import platform

    with pytest.raises(ValueError, match="data='disk' must be one of 'auto', 'replicate', 'stream'"):
        dynsim.train("sa", "nielsen_30", digits, GRID, steps=2, placement=Placement(data="disk"), progress=False)
    with pytest.raises(ValueError, match=r"placement 'stream' was asked for, but full-batch .* give batch_size"):
        dynsim.train("sa", "nielsen_30", digits, GRID, steps=2, placement=Placement("stream"), progress=False)
    with pytest.raises(ValueError, match=r"hessian=Hessian\(every=2.*\) needs the training set on every device"):
        dynsim.train("sa", "nielsen_30", digits, GRID, epochs=1, batch_size=24, metrics_every=2, hessian=Hessian(2),
                     placement=Placement("stream"), progress=False)
    monkeypatch.setattr(platform, "device_memory_bytes", lambda n_devices=1: int(0.9 * _data_bytes(digits) / 0.25))
    with pytest.raises(ValueError, match=r"is needed: the dataset .* does not fit .* full-batch .* give batch_size, "
                                         r"or use train_subset"):
        dynsim.train("sa", "nielsen_30", digits, GRID, steps=2, progress=False)
    with pytest.raises(ValueError, match=r"two evaluation batches of 240 examples \(eval_batch=10000; "
                                         r".* lower eval_batch"):
        dynsim.train("sa", "nielsen_30", digits, GRID, epochs=1, batch_size=24, progress=False)
    with pytest.raises(ValueError, match=r"one step's minibatches for the chunk's 2 seed\(s\) \(batch_size=120.* "
                                         r"lower batch_size or chunk_size"):
        dynsim.train("sa", "nielsen_30", digits, GRID, epochs=1, batch_size=120, seeds=2,
                     placement=Placement(chunk_size=2, eval_batch=30), progress=False)
    # the [problem] table takes the key and hands it to train()
    cfg = {"optimizer": "sa", "grid": {"learning_rate": 0.5, "momentum": 0.9, "sigma": 1.0},
           "problem": {"model": "nielsen_30", "dataset": "digits", "steps": 2, "data_placement": "disk"}}
    with pytest.raises(ValueError, match="data='disk' must be one of"):
        dynsim.training.run_config(cfg, progress=False)


@pytest.mark.parametrize("kwargs, match", [
    (dict(data="disk"), "data='disk'"),
    (dict(loop="python"), "loop='python'"),
    (dict(memory_fraction=0.0), "memory_fraction=0.0"),
    (dict(memory_fraction=1.5), "memory_fraction=1.5"),
    (dict(chunk_size=0), "chunk_size=0"),
    (dict(chunk_size=2.5), "chunk_size=2.5"),
    (dict(devices=0), "devices=0"),
    (dict(eval_batch=0), "eval_batch=0"),
])
def test_placement_is_checked_at_construction(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Placement(**kwargs)


def test_host_loop_with_streamed_data_is_refused(digits):
    with pytest.raises(ValueError, match="step loop 'host' needs the data on the device"):
        dynsim.train("sa", "nielsen_30", digits, GRID, batch_size=20, epochs=1,
                     placement=Placement(data="stream", loop="host"), progress=False)
