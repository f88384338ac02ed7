"""dynsim.engine.plan: everything is validated before anything runs, one clear ValueError each."""
import numpy as np
import pytest

import dynsim


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(optimizer="adamw"), "optimizer"),
        (dict(landscape="himmelblau"), "landscape"),
        (dict(metrics=["speed"]), "metrics"),
        (dict(grid={"k_eta": np.array([-0.1, 0.1]), "momentum": 0.9, "sigma": 1.0}), r"grid\['k_eta'\]"),
        (dict(grid={"learning_rate": np.array([0.1, -0.1]), "momentum": 0.9, "sigma": 1.0}),
         r"grid\['learning_rate'\]"),
        (dict(grid={}), "grid"),
        (dict(grid=[{"k_eta": 0.1, "momentum": 0.9, "sigma": 1.0}, {"k_eta": 0.2, "momentum": 0.9}]),
         "same hyperparameters"),
        (dict(grid=[{"k_eta": -0.1, "momentum": 0.9, "sigma": 1.0}]), r"grid\['k_eta'\]"),
        (dict(grid="k_eta=0.1"), "mapping"),
        (dict(grid={"k_eta": 0.1, "momentum": 0.9, "sigma": 1.0}), None),  # numbers only: one point
        (dict(steps=100.0), "steps=100.0 must be an integer"),
        (dict(grid={"k_eta": np.array([]), "momentum": 0.9, "sigma": 1.0}), r"grid\['k_eta'\]"),
        (dict(grid={"k_eta": np.ones((2, 2)), "momentum": 0.9, "sigma": 1.0}), r"grid\['k_eta'\]"),
        (dict(grid={"k_eta": np.array([0.1]), "momentum": 0.9, "speed": 1.0}), r"grid\['speed'\]"),
        (dict(grid={"k_eta": np.array([0.1]), "momentum": 0.9}), "sigma"),
        (dict(theta0=[1.0, 2.0], landscape="nakerst2d", grid={"learning_rate": np.array([0.1]), "momentum": 0.9,
                                                              "sigma": 1.0}), None),
        (dict(theta0=[1.0, 2.0, 3.0], landscape="nakerst2d", grid={"learning_rate": np.array([0.1]),
                                                                   "momentum": 0.9, "sigma": 1.0}), "theta0"),
        (dict(theta0=[0.0]), "theta0"),
        (dict(steps=0), "steps"),
        (dict(dtype="float16"), "dtype"),
    ],
)
def test_bad_input_one_clear_value_error(kwargs, match):
    args = dict(optimizer="sa", landscape="quadratic",
                grid={"k_eta": np.array([0.1]), "momentum": 0.9, "sigma": 1.0}, steps=128)
    args.update(kwargs)
    args.setdefault("metrics", ["final_distance"])  # (a cheap compile for the one valid case)
    call = lambda: dynsim.sweep(args.pop("optimizer"), args.pop("landscape"), args.pop("grid"), args.pop("steps"),
                                progress=False, **args)
    if match is None:
        call()  # a valid call among the invalid ones
        return
    with pytest.raises(ValueError, match=match) as e:
        call()
    assert "\n" not in str(e.value)
