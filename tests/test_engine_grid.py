"""dynsim.engine.grid: the one grid parser of sweeps and training."""
import numpy as np
import pytest

import dynsim
from dynsim.engine.grid import as_axis, parse_grid


def test_axes_are_an_outer_product_in_c_order_with_fixed_and_static_values():
    g = parse_grid({"a": [1.0, 2.0], "b": 0.5, "c": np.array([10.0, 20.0, 30.0]), "flag": True})
    assert g.dims == ["a", "c"] and g.shape == (2, 3)
    assert g.fixed == {"b": 0.5} and g.static == {"flag": True}
    assert [(p["a"], p["c"]) for p in g.points] == [(a, c) for a in (1.0, 2.0) for c in (10.0, 20.0, 30.0)]
    assert all(p["b"] == 0.5 and "flag" not in p for p in g.points)


def test_all_numbers_are_one_point_and_a_list_of_points_is_a_config_dim():
    g = parse_grid({"a": 1.0, "b": 2.0})
    assert g.dims == [] and g.shape == () and g.points == [{"a": 1.0, "b": 2.0}]
    pts = parse_grid([{"a": 1.0, "b": 2.0}, {"a": 3.0, "b": 4.0}])
    assert pts.dims == ["config"] and pts.shape == (2,)
    np.testing.assert_array_equal(pts.coords["b"][1], [2.0, 4.0])
    assert pts.coords["a"][0] == ("config",)


@pytest.mark.parametrize("grid, match", [
    ({}, r"grid=\{\} is empty"),
    ([], r"grid=\[\] is empty"),
    ("lr", "must be a mapping"),
    ({1: [0.1]}, "keys must be names"),
    ({"a": []}, r"grid\['a'\]: empty"),
    ({"a": [[1.0]]}, r"grid\['a'\]: must be a scalar or a 1-D array"),
    ({"a": float("nan")}, "finite"),
    ({"a": "fast"}, "not numeric"),
    ([{"a": 1.0}, {"b": 2.0}], "same hyperparameters"),
    ([{"a": [1.0, 2.0]}], "must be a number"),
])
def test_bad_grids_are_one_valueerror(grid, match):
    with pytest.raises(ValueError, match=match):
        parse_grid(grid)


def test_as_axis_kinds():
    assert as_axis("x", True) is True and as_axis("x", 2) == 2.0
    np.testing.assert_array_equal(as_axis("x", [1, 2]), [1.0, 2.0])


def test_sweep_and_simulate_refuse_non_integer_steps():
    with pytest.raises(ValueError, match=r"steps=100.0 must be an integer >= 1"):
        dynsim.sweep("sa", "quadratic", {"k_eta": 0.1, "momentum": 0.9, "sigma": np.array([0.0, 1.0])}, 100.0,
                     ["rate"], progress=False)
    with pytest.raises(ValueError, match=r"steps=100.0 must be an integer >= 0"):  # 0 steps: θ₀ alone
        dynsim.simulate(dynsim.optim.gd(0.1), dynsim.landscapes.quadratic(1.0), np.ones(1), 100.0)


def test_an_all_number_sweep_grid_is_one_point(tmp_path):
    """No grid dimension; the same numbers as the one-element axis, in memory and from a store."""
    point = {"k_eta": 0.1, "momentum": 0.9, "sigma": 1.0}
    one = dynsim.sweep("sa", "quadratic", point, 256, ["rate", "diverged"], progress=False)
    axis = dynsim.sweep("sa", "quadratic", {**point, "k_eta": np.array([0.1])}, 256, ["rate", "diverged"],
                        progress=False)
    assert one.rate.dims == () and float(one.k_eta) == 0.1
    assert float(one.rate) == float(axis.rate[0]) and not bool(one.diverged)
    stored = dynsim.sweep("sa", "quadratic", point, 256, ["rate", "diverged"], progress=False, out=tmp_path / "p")
    assert stored.rate.dims == () and float(stored.rate) == float(one.rate)
    assert dynsim.open_result(tmp_path / "p").rate.dims == ()

