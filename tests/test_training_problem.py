"""dynsim.training.problem: model, data, grid and schedule are checked before anything runs, one clear error each."""
import numpy as np
import processes
import pytest

import dynsim
from dynsim import cli, data
from dynsim.optim.spec import resolve_optimizer
from dynsim.training import problem

CONFIG = processes.TRAIN_CONFIG


@pytest.fixture(scope="module")
def digits():
    d = data.load("digits")
    return data.Dataset(d.x_train[:240], d.y_train[:240], d.x_test[:60], d.y_test[:60], "digits-240", 10)


GRID = {"learning_rate": 0.5, "momentum": 0.9, "sigma": [0.0, 1.0, 2.0, 4.0]}


def test_bad_training_input_is_one_clear_error(tmp_path, digits, capsys):
    bad_labels = data.Dataset(digits.x_train, digits.y_train + 5, digits.x_test, digits.y_test, "shifted", 10)
    with pytest.raises(ValueError, match=r"y_train holds labels in \[5, 14\], which do not fit"):
        dynsim.train("sa", "nielsen_30", bad_labels, GRID, steps=2, progress=False)
    with pytest.raises(ValueError, match="batch_size=1000 exceeds the 240 training examples"):
        dynsim.train("sa", "nielsen_30", digits, GRID, epochs=1, batch_size=1000, progress=False)
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
        dynsim.train("sa", "nielsen_30", digits, GRID, steps=2, progress=False, out=land)
    assert (land / "config.json").read_text() == before
    # and a different training sweep in out is refused too
    dynsim.train("sa", "nielsen_30", digits, GRID, steps=2, progress=False, out=tmp_path / "t2")
    with pytest.raises(ValueError, match="holds a different sweep"):
        dynsim.train("sa", "nielsen_30", digits, GRID, steps=3, progress=False, out=tmp_path / "t2")


def test_optimizer_grid_fills_defaults_and_checks_each_point():
    g = problem.optimizer_grid({"learning_rate": 0.1, "sigma": [0.0, 2.0]}, resolve_optimizer("adam_sa"))
    assert g.dims == ["sigma"] and len(g.points) == 2
    assert set(g.points[0]) == {"learning_rate", "b1", "b2", "eps", "sigma"}  # the rule's defaults filled in
    one = problem.optimizer_grid({"learning_rate": 0.1, "momentum": 0.9, "sigma": 1.0}, resolve_optimizer("sa"))
    assert one.dims == [] and one.points == [{"learning_rate": 0.1, "momentum": 0.9, "sigma": 1.0}]
    with pytest.raises(ValueError, match=r"grid point .*learning_rate"):
        problem.optimizer_grid({"learning_rate": [-1.0, 0.1], "momentum": 0.9, "sigma": 1.0}, resolve_optimizer("sa"))
    with pytest.raises(ValueError, match=r"\['beta'\] are not hyperparameters of"):
        problem.optimizer_grid({"learning_rate": 0.1, "beta": 2.0}, resolve_optimizer("gd"))


def test_schedule_of_full_batch_and_minibatch_runs():
    assert problem.schedule(100, 6, None, None, 2) == problem.Schedule(3, 2, 1, 1, 100)
    assert problem.schedule(100, None, 2, 20, None) == problem.Schedule(2, 5, 1, 5, 20)
    assert problem.schedule(100, None, 2, 20, 1) == problem.Schedule(2, 1, 5, 5, 20)
    with pytest.raises(ValueError, match="steps=2.5"):
        problem.schedule(100, 2.5, None, None, None)
    with pytest.raises(ValueError, match="disagree"):
        problem.schedule(100, 3, 4, None, None)


def test_an_all_scalar_grid_is_one_model(digits):
    ds = dynsim.train("sa", "nielsen_30", digits, {"learning_rate": 0.5, "momentum": 0.9, "sigma": 1.0}, steps=2,
                      progress=False)
    assert ds.test_loss.dims == ("seed", "step") and ds.sizes["seed"] == 1
