"""dynsim.training.thresholds: the first reach of a value, on a constructed history (the oracle by eye)."""
import numpy as np
import xarray as xr

from dynsim import training as train
from dynsim.training.thresholds import first_reach


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


def test_first_reach_in_epochs_and_stored_per_model():
    acc = np.array([[0.1, 0.5, 0.96, 0.94, 0.99], [0.1, 0.2, 0.3, 0.4, np.nan]])
    ds = xr.Dataset({"train_accuracy": (("sigma", "step"), acc)},
                    coords={"sigma": [0, 1], "step": [0, 10, 20, 30, 40], "epoch": ("step", [0, 0.5, 1, 1.5, 2])})
    np.testing.assert_array_equal(train.steps_to_threshold(ds, 0.95, "train_accuracy", dim="epoch"), [1.0, np.nan])
    assert train.steps_to_threshold(ds, 0.95, "train_accuracy").name == "steps_to_train_accuracy>=0.95"
    np.testing.assert_array_equal(first_reach(acc, np.array([0, 10, 20, 30, 40]), [0.95, 0.3]),
                                  [[20, 10], [np.nan, 20]])
