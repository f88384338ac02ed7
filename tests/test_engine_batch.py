"""dynsim.engine.batch: map_grid equals a plain per-point loop, whatever the chunking and the devices."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dynsim.engine.batch import local_devices, map_grid


def _point(a, b):
    # a scalar and a vector output, away from any symmetry that would hide a transposed axis
    return {"s": jnp.sin(a) * b + a**2, "v": jnp.stack([a - b, a * b, jnp.exp(-b)])}


@pytest.mark.parametrize("chunk_size", [1, 4, 7, 1000])
def test_map_grid_equals_a_loop_over_the_broadcast_grid(chunk_size):
    a = np.linspace(-1.3, 2.1, 5)[:, None]
    b = np.array([0.25, 3.0, -0.5])[None, :]
    out = map_grid(_point, {"a": a, "b": b}, chunk_size=chunk_size, progress=False, dtype=jnp.float64)
    assert out["s"].shape == (5, 3) and out["v"].shape == (5, 3, 3)
    for i in range(5):
        for j in range(3):
            one = _point(a[i, 0], b[0, j])  # plain Python: numpy scalars in, no vmap, no padding
            np.testing.assert_allclose(out["s"][i, j], float(one["s"]), rtol=1e-14)
            np.testing.assert_allclose(out["v"][i, j], np.asarray(one["v"]), rtol=1e-14)


def test_one_device_equals_all_devices_and_padding_is_cut():
    grid = {"a": np.linspace(0.0, 1.0, 11), "b": 2.0}  # 11 points: never a multiple of the devices
    many = map_grid(_point, grid, chunk_size=3, progress=False, dtype=jnp.float64)
    one = map_grid(_point, grid, chunk_size=3, devices=1, progress=False, dtype=jnp.float64)
    assert len(local_devices()) == len(jax.devices())
    for k in many:
        # equal to rounding: XLA vectorises sin/exp differently for differently split batches
        np.testing.assert_allclose(many[k], one[k], rtol=1e-14, atol=1e-15)
        assert many[k].shape[0] == 11


@pytest.mark.parametrize("kwargs, match", [
    (dict(grid={}), "non-empty mapping"),
    (dict(grid={"a": np.ones(3), "b": np.ones(4)}), "do not broadcast"),
    (dict(grid={"a": np.ones((0,))}), "empty"),
    (dict(grid={"a": np.ones(3)}, chunk_size=0), "chunk_size=0"),
    (dict(grid={"a": np.ones(3)}, devices=10_000), "devices=10000"),
])
def test_bad_grids_are_one_clear_value_error(kwargs, match):
    with pytest.raises(ValueError, match=match):
        map_grid(lambda a, b=1.0: {"x": a * b}, **{"progress": False, **kwargs})
