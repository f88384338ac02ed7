"""dynsim.training.config: TOML training configs, killed and resumed; the [problem] keys."""
import numpy as np
import processes
import pytest

import dynsim
from dynsim.hessian import Hessian
from dynsim.training import config

CONFIG = processes.TRAIN_CONFIG


def _equal(a, b):
    processes.assert_same_dataset(a, b, ("wall_time",))


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


@pytest.mark.slow
def test_hessian_table_and_the_older_flat_keys_are_one_option():
    base = {"optimizer": "sa", "grid": {"learning_rate": 0.5, "momentum": 0.9, "sigma": [0.0, 1.0]},
            "problem": {"model": "nielsen_30", "dataset": "digits", "steps": 4, "train_subset": 100,
                        "test_subset": 20, "eval_on": ["train"], "metrics_every": 2}}
    table = {**base, "problem": {**base["problem"], "hessian": {"every": 2, "k": 2, "iters": 8}}}
    flat = {**base, "problem": {**base["problem"], "hessian_every": 2, "hessian_k": 2, "hessian_iters": 8}}
    a = config.run_config(table, progress=False)
    b = config.run_config(flat, progress=False)
    _equal(a, b)
    assert a.attrs["hessian_every"] == 2 and a.sizes["eig"] == 2
    direct = dynsim.train("sa", "nielsen_30", "digits", base["grid"], steps=4, train_subset=100, test_subset=20,
                          eval_on=["train"], metrics_every=2, hessian=Hessian(2, k=2, iters=8), progress=False)
    np.testing.assert_array_equal(a.sharpness.values, direct.sharpness.values)
    off = {**base, "problem": {**base["problem"], "hessian_every": 0}}  # 0 meant off
    assert "sharpness" not in config.run_config(off, progress=False)
    with pytest.raises(ValueError, match="not both"):
        config.run_config({**table, "problem": {**table["problem"], "hessian_k": 2}}, progress=False)
    with pytest.raises(ValueError, match="unknown key"):
        config.run_config({**base, "problem": {**base["problem"], "hessian_count": 2}}, progress=False)
