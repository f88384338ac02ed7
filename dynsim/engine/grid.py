r"""The one grid parser of the library (:func:`parse_grid`): landscape sweeps and training alike.

A grid is either

* a mapping ``name -> value``: 1-D arrays or lists are *axes*, one dimension each, in the
  given order, and the grid is their outer product (C order); numbers are *fixed* for every
  point; booleans are *static* (non-numeric arguments, not per point). A mapping of numbers
  alone is ONE point (no dimension);
* a list of points ``[{name: number}, ...]``, all naming the same hyperparameters: one
  dimension ``config`` (coordinate ``0..n-1``), with each hyperparameter as a coordinate
  along it.

Numbers must be finite (:func:`as_axis`); every error is one ``ValueError``
naming the entry.
"""
from __future__ import annotations

import math
from typing import Any, Mapping, NamedTuple, Sequence

import numpy as np

__all__ = ["Grid", "parse_grid", "as_axis"]


class Grid(NamedTuple):
    """A parsed grid.

    Attributes:
      dims: the grid's dimensions, in order (``["config"]`` for a list of points; none for one point).
      coords: ``dim or name -> (dims, values)``: each axis, and for a list of points each
        hyperparameter along ``config``.
      fixed: numbers held fixed for every point.
      static: booleans (static arguments, not per point).
      listed: the points themselves where they were listed (or completed by a caller), else
        ``None``: :attr:`points` then builds them from the axes, on demand (a sweep's grid
        may hold billions of points; it never asks).
    """

    dims: list[str]
    coords: dict[str, tuple[tuple[str, ...], np.ndarray]]
    fixed: dict[str, float]
    static: dict[str, Any]
    listed: list[dict[str, float]] | None = None

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(len(self.coords[d][1]) for d in self.dims)

    @property
    def points(self) -> list[dict[str, float]]:
        """Every point as ``{name: float}`` (fixed values included), C order over ``dims``."""
        if self.listed is not None:
            return self.listed
        axes = [self.coords[d][1] for d in self.dims]
        combos = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, len(axes)) if axes else np.zeros((1, 0))
        return [{**self.fixed, **{d: float(x) for d, x in zip(self.dims, combo)}} for combo in combos]


def parse_grid(grid) -> Grid:
    """Parse ``grid`` (see the module docstring); names are checked by the caller, which knows the factory.

    >>> g = parse_grid({"learning_rate": 0.5, "sigma": [0.0, 2.0]})
    >>> g.dims, g.points
    (['sigma'], [{'learning_rate': 0.5, 'sigma': 0.0}, {'learning_rate': 0.5, 'sigma': 2.0}])
    >>> parse_grid({"learning_rate": 0.5}).points  # all numbers: one point
    [{'learning_rate': 0.5}]
    >>> parse_grid([{"learning_rate": 0.1}, {"learning_rate": 0.2}]).dims
    ['config']
    """
    if isinstance(grid, Mapping):
        return _parse_mapping(grid)
    if isinstance(grid, Sequence) and not isinstance(grid, str):
        return _parse_points(grid)
    raise ValueError(f"grid={grid!r} must be a mapping name -> values or a list of mappings (points)")


def _parse_mapping(grid: Mapping) -> Grid:
    if not grid:
        raise ValueError("grid={} is empty: give at least one hyperparameter")
    dims, axes, fixed, static = [], [], {}, {}
    for k, v in grid.items():
        if not isinstance(k, str):
            raise ValueError(f"grid: keys must be names, got {k!r}")
        a = as_axis(k, v)
        if isinstance(a, bool):
            static[k] = a
        elif isinstance(a, float):
            fixed[k] = a
        else:
            dims.append(k)
            axes.append(a)
    return Grid(dims, {d: ((d,), a) for d, a in zip(dims, axes)}, fixed, static)


def _parse_points(grid: Sequence) -> Grid:
    if len(grid) == 0:
        raise ValueError("grid=[] is empty: give at least one hyperparameter point")
    if not all(isinstance(p, Mapping) for p in grid):
        raise ValueError("grid must be a mapping name -> values or a list of mappings (points)")
    keys = set(grid[0])
    for p in grid:
        if set(p) != keys:
            raise ValueError(f"grid points must all name the same hyperparameters; got {sorted(keys)} and {sorted(p)}")
        for k, v in p.items():
            if not isinstance(as_axis(k, v), float):
                raise ValueError(f"grid point {dict(p)}: {k} must be a number")
    points = [{k: float(v) for k, v in p.items()} for p in grid]
    coords: dict[str, tuple[tuple[str, ...], np.ndarray]] = {"config": (("config",), np.arange(len(points)))}
    coords.update({k: (("config",), np.array([p[k] for p in points])) for k in sorted(keys)})
    return Grid(["config"], coords, {}, {}, points)


def as_axis(name: str, value) -> np.ndarray | float | bool:
    """A grid entry: a 1-D float array (swept), a float (fixed) or a bool (static)."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, str) or value is None or callable(value):
        raise ValueError(f"grid[{name!r}]={value!r} is not numeric; a grid holds numbers or 1-D arrays "
                         "of numbers (pass other arguments with functools.partial or a wrapper factory)")
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"grid[{name!r}]: {value!r} is not a number or a 1-D array of numbers") from None
    if arr.ndim == 0:
        v = float(arr)
        if not math.isfinite(v):
            raise ValueError(f"grid[{name!r}]={v} must be finite")
        return v
    if arr.ndim != 1:
        raise ValueError(f"grid[{name!r}]: must be a scalar or a 1-D array, got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"grid[{name!r}]: empty array; give at least one value")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"grid[{name!r}]: values must be finite")
    return arr
