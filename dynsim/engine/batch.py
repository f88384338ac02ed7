r"""A chunked, padded, sharded map of a per-point function over a grid: :func:`map_grid`.

The small executor for work that is not a metrics sweep (figure maps, cycle searches):
``point_fn(**scalars) -> dict of arrays`` is vmapped, jitted once, and run over the
broadcast grid in equal-sized chunks (the last one padded by repeating its last valid
point, then cut), each chunk split over the local devices along the point axis.

>>> import jax.numpy as jnp, numpy as np
>>> out = map_grid(lambda a, b: {"s": a + b, "v": jnp.stack([a, b])},
...                {"a": np.arange(3.0)[:, None], "b": np.arange(2.0)[None, :]}, chunk_size=4, progress=False)
>>> out["s"].tolist(), out["v"].shape
([[0.0, 1.0], [1.0, 2.0], [2.0, 3.0]], (3, 2, 2))
"""
from __future__ import annotations

import sys
from typing import Any, Callable, Mapping

import numpy as np

__all__ = ["map_grid", "local_devices"]


def local_devices():
    """The devices this process computes on (its local ones under ``jax.distributed``)."""
    import jax

    return jax.local_devices() if jax.process_count() > 1 else jax.devices()


def map_grid(point_fn: Callable[..., Mapping[str, Any]], grid: Mapping[str, Any], *, chunk_size: int = 1024,
             devices: int | None = None, progress: bool = True, desc: str = "grid",
             dtype=None) -> dict[str, np.ndarray]:
    """Evaluate ``point_fn(**scalars)`` at every point of the broadcast ``grid``.

    Args:
      point_fn: maps scalar keyword arguments (tracers) to a dict of arrays.
      grid: ``name -> array``; the arrays are broadcast against each other.
      chunk_size: points per compiled call (rounded up to a multiple of the devices).
      devices: local devices to split each chunk over (default all).
      progress: show a tqdm bar over chunks.
      dtype: dtype of the grid values (default: JAX's default float).

    Returns:
      ``name -> array`` of shape ``grid shape + output shape``.
    """
    import jax
    import jax.numpy as jnp
    from jax.sharding import Mesh, NamedSharding
    from jax.sharding import PartitionSpec as P

    if not isinstance(grid, Mapping) or not grid:
        raise ValueError("grid: give a non-empty mapping of names to arrays")
    names = list(grid)
    try:
        arrays = np.broadcast_arrays(*(np.asarray(grid[n], float) for n in names))
    except ValueError as e:
        raise ValueError(f"grid: the arrays do not broadcast together ({e})") from None
    shape = arrays[0].shape
    n = int(np.prod(shape))
    if n == 0:
        raise ValueError(f"grid: empty (shape {shape})")
    devs = local_devices()
    n_dev = len(devs) if devices is None else int(devices)
    if not 1 <= n_dev <= len(devs):
        raise ValueError(f"devices={devices} must be between 1 and {len(devs)}")
    if int(chunk_size) < 1:
        raise ValueError(f"chunk_size={chunk_size} must be >= 1")
    chunk = min(int(chunk_size), n)
    chunk = -(-chunk // n_dev) * n_dev
    sharding = NamedSharding(Mesh(np.array(devs[:n_dev]), ("points",)), P("points"))
    dt = jnp.dtype(dtype) if dtype is not None else jnp.zeros(()).dtype
    flat = [a.reshape(-1).astype(dt) for a in arrays]
    fn = jax.jit(jax.vmap(lambda *xs: dict(point_fn(**dict(zip(names, xs))))))
    from tqdm.auto import tqdm

    parts = []
    starts = range(0, n, chunk)
    for lo in tqdm(starts, desc=desc, disable=not progress, leave=False, file=sys.stderr):
        idx = np.minimum(np.arange(lo, lo + chunk), n - 1)
        res = fn(*(jax.device_put(f[idx], sharding) for f in flat))
        keep = min(chunk, n - lo)
        parts.append({k: np.asarray(v)[:keep] for k, v in res.items()})
    out = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    return {k: v.reshape(*shape, *v.shape[1:]) for k, v in out.items()}
