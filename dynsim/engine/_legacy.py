r"""Hyperparameter sweeps: :func:`sweep` runs a grid of points, :func:`locate` finds σ*.

``dynsim.sweep(optimizer, landscape, grid, steps)`` runs one optimizer map at every
point of a Cartesian grid of hyperparameters and returns an :class:`xarray.Dataset`
with one dimension per swept hyperparameter and one variable per metric
(:data:`dynsim.metrics.METRICS`, accumulated online: no trajectory is stored).

>>> import numpy as np, dynsim
>>> ds = dynsim.sweep("super_accelerated", "quadratic",
...                   {"k_eta": 0.01, "momentum": 0.9, "sigma": np.array([0.0, 9.0])},
...                   steps=4096, metrics=["rho"], progress=False)
>>> [round(float(r), 3) for r in ds.rho.values]     # sqrt(0.9), and 1 - sqrt(0.01) at σ*
[0.949, 0.9]

**Grid.** ``grid`` maps names to 1-D arrays (swept, one dimension each, in the given
order) or scalars (fixed). Names are the rule's hyperparameters
(:func:`dynsim.optim.hyperparameter_names`), sweepable landscape parameters (``k`` of
``quadratic``, ``a``/``b`` of ``rosenbrock``), and ``k_eta`` on the quadratic: the product
``kη``, realised as ``learning_rate = k_eta / k`` (``k`` = 1 unless given), so results
depend on ``kη`` only, as in Nakerst §2. Every value is a runtime array inside one
compiled program: changing values never recompiles.

**Execution.** The grid is flattened (C order) and cut into *chunks*: contiguous runs
that are rectangular blocks of the grid (a range of one dimension, all of the later
ones), all padded to the same size, so one jitted program (``vmap`` over points of a
``lax.scan`` over steps) serves every chunk; padding is masked out. A chunk is
sharded over all local devices with ``jax.shard_map`` on a 1-D ``Mesh`` (axis
``"points"``); each device computes its points' coordinates from the chunk offset
(no host→device transfer of the grid) and runs them in cache-sized blocks
(``block_size``; ``lax.map`` over blocks, evened out so that padding stays under 8
points per block; at most 2^18 points on CPU, the whole local chunk on accelerators).
On XLA:CPU each iteration of a ``while`` loop costs a fixed few microseconds, so small
blocks pay it per step: on the 2-core dev box, σ* metrics at 4096 steps, the kernel runs
at 7.4e9 point-steps/s with 4096-point blocks, 9.2e9 with 16384, 1.1e10 with
65536-262144 (unroll 8; 1.2e10 with unroll 4, see :func:`default_unroll`), and falls
again beyond 2^18 points (8.4e9 → 6.8e9 at 2^20, 1024 steps: out of cache). Chunk ``i+1`` is
dispatched before the host waits for chunk ``i``, so writing overlaps computing.
Donation does not apply: a chunk's inputs are the grid coordinates (reused by every
chunk) and two scalars, and the state lives in the scan carry, which XLA updates in
place. On CPU, ``dynsim sweep``/``dynsim bench`` expose each core as a device
(``--xla_force_host_platform_device_count``) so chunks shard over cores (a single XLA:CPU
device also spreads large loop fusions over its thread pool, about as fast here), and on
AVX-512 CPUs ask XLA for 512-bit vectors (+50% here; see ``_configure_xla_cpu``).

**Multi-host.** Every process calls ``jax.distributed.initialize()`` first (backend start-up
is collective: no process may wait on another before it). Each then builds its mesh from
its *local* devices and runs a disjoint subset of chunks into a shared ``out`` directory on
a common file system; process 0 creates the store while the others wait at a barrier::

    import jax
    from jax.experimental import multihost_utils
    jax.distributed.initialize()
    if jax.process_index() == 0:
        dynsim.sweep(..., out=DIR, chunks=slice(0, 0))        # creates the store only
    multihost_utils.sync_global_devices("dynsim store created")
    dynsim.sweep(..., out=DIR, chunks=slice(jax.process_index(), None, jax.process_count()))

Every chunk is written to its own zarr region and logged in a per-process
``progress-<i>.log``; completion is the union of the logs, so any host can ``--resume`` the
remainder. Tested with two processes on one host (``jax.distributed`` over localhost,
2 CPU devices each): bit-identical to a single-process run. Not tested across machines.

**Results store** (``out=DIR``): ``DIR/config.json`` (the normalised sweep config),
``DIR/results.zarr`` (the dataset, zarr chunks aligned with sweep chunks, written by
region as each chunk finishes) and ``DIR/progress*.log`` (one line per completed
chunk, appended and fsync'ed after its data is written). A sweep killed at any moment
(SIGKILL included) resumes where it stopped: completed chunks are skipped, the
interrupted one is recomputed and rewritten whole; the result is bit-identical to an
uninterrupted run. A ``DIR`` holding a different sweep is refused, never overwritten.

**Locating critical damping.** :func:`locate` takes a finished sweep over ``sigma`` and,
for every point of the other dimensions, finds ``σ*`` minimising the contraction ρ
(maximising ``rate``) and, separately, minimising ``T``: a coarse argmin on the grid,
then vectorised golden-section refinement inside the neighbouring grid cells. The rate
is an asymptotic quantity, so its refinement uses much longer runs
(``refine_steps``, default 2¹⁸, window = whole run); ``T`` depends on the run length by
definition, so its refinement uses the sweep's ``steps``. It also reports the stable
σ-interval (where ``rate > 0``), refined by bisection.
"""
from __future__ import annotations

import dataclasses
import functools
import inspect
import json
import math
import os
import pathlib
import shutil
import sys
import time
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from dynsim import landscapes as _landscapes
from dynsim import metrics as _metrics
from dynsim import optim as _optim

__all__ = [
    "sweep",
    "locate",
    "open_result",
    "cli",
    "load_config",
    "SWEEPABLE_LANDSCAPE_PARAMS",
    "DEFAULT_THETA0",
    "trace_count",
    "default_unroll",
    "plot_located",
]

# Landscape parameters that may vary per point (the factory accepts tracers).
SWEEPABLE_LANDSCAPE_PARAMS = {"quadratic": ("k",), "rosenbrock": ("a", "b")}

DEFAULT_THETA0 = {
    "quadratic": [1.0],  # Nakerst Fig. 2(a) starts at θ = 1
    "nakerst2d": [-1.0, -3.8],  # Nakerst Fig. 3
    "rosenbrock": [-1.5, 2.0],
}

_TRACES = {"n": 0}


def trace_count() -> int:
    """How many times a chunk kernel has been traced (= compiled) in this process."""
    return _TRACES["n"]


# --------------------------------------------------------------------------- plan


@dataclasses.dataclass
class _Plan:
    config: dict  # canonical, JSON-serialisable
    rule_factory: Callable
    landscape_factory: Callable
    land_static: dict
    dims: list[str]
    coords: list[np.ndarray]
    fixed: dict[str, float]  # numeric, runtime
    static_hyper: dict[str, Any]
    rule_args: tuple[str, ...]
    land_swept: tuple[str, ...]
    theta0: np.ndarray
    dtype: str

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(len(c) for c in self.coords)

    @property
    def n_points(self) -> int:
        return int(np.prod(self.shape))


def _canon_float(x) -> float:
    return float(np.float64(x))


def _resolve_optimizer(optimizer) -> tuple[str, Callable]:
    if isinstance(optimizer, str):
        fn = _optim._resolve(optimizer)
        return fn.__name__, fn
    if callable(optimizer):
        name = getattr(optimizer, "__name__", None)
        if name in _optim.RULES and _optim.RULES[name] is optimizer:
            return name, optimizer
        raise ValueError(
            f"optimizer={optimizer!r} must be a rule name or a dynsim.optim factory "
            f"({', '.join(_optim.RULES)})"
        )
    raise ValueError(f"optimizer={optimizer!r} must be a rule name or a dynsim.optim factory")


def _resolve_landscape(landscape) -> tuple[str, Callable]:
    if isinstance(landscape, str):
        return landscape, _landscapes.resolve(landscape)
    if callable(landscape):
        name = getattr(landscape, "__name__", None)
        if name in _landscapes.LANDSCAPES and _landscapes.LANDSCAPES[name] is landscape:
            return name, landscape
    raise ValueError(
        f"landscape={landscape!r} must be a landscape name or a dynsim.landscapes factory "
        f"({', '.join(_landscapes.LANDSCAPES)})"
    )


def _as_axis(name: str, value) -> np.ndarray | float | bool:
    """A grid entry: a 1-D float array (swept) or a scalar (fixed)."""
    if isinstance(value, bool) or isinstance(value, np.bool_):
        return bool(value)
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


def _landscape_param_names(factory) -> tuple[str, ...]:
    return tuple(inspect.signature(factory).parameters)


def _plan(
    optimizer,
    landscape,
    grid: Mapping[str, Any],
    steps,
    *,
    metrics,
    theta0,
    landscape_params,
    dtype,
    seed,
    every,
    window,
    eps,
    divergence_factor,
    renormalise,
    unroll,
    pack,
    chunk_size,
    fit_every=None,
) -> _Plan:
    rule_name, rule_factory = _resolve_optimizer(optimizer)
    land_name, land_factory = _resolve_landscape(landscape)
    if not isinstance(grid, Mapping):
        raise ValueError(f"grid must be a mapping of names to arrays or scalars, got {type(grid).__name__}")
    if len(grid) == 0:
        raise ValueError("grid: empty; give at least one hyperparameter array to sweep")
    try:
        steps = int(steps)
    except (TypeError, ValueError):
        raise ValueError(f"steps={steps!r} must be an integer") from None
    if steps < 1:
        raise ValueError(f"steps={steps} must be >= 1")
    if metrics is None:
        metrics = _metrics.DEFAULT_METRICS
    if isinstance(metrics, str):
        metrics = [metrics]
    metrics = list(metrics)
    if not metrics:
        raise ValueError("metrics: empty; choose from " + ", ".join(_metrics.METRICS))
    for m in metrics:
        if m not in _metrics.METRICS:
            raise ValueError(f"metrics: unknown metric {m!r}; choose from {', '.join(_metrics.METRICS)}")
    if len(set(metrics)) != len(metrics):
        raise ValueError(f"metrics: duplicates in {metrics}")
    if dtype not in ("float32", "float64"):
        raise ValueError(f"dtype={dtype!r} must be 'float32' or 'float64'")
    if dtype == "float64":
        import jax

        if not jax.config.jax_enable_x64:
            raise ValueError("dtype='float64' needs jax_enable_x64 (dynsim --x64)")

    rule_args = _optim.hyperparameter_names(rule_factory)
    sig = inspect.signature(rule_factory).parameters
    land_args = _landscape_param_names(land_factory)
    sweepable_land = SWEEPABLE_LANDSCAPE_PARAMS.get(land_name, ())
    landscape_params = dict(landscape_params or {})
    for k in landscape_params:
        if k not in land_args:
            raise ValueError(
                f"landscape_params: {land_name!r} has no parameter {k!r} (it takes {', '.join(land_args) or 'none'})"
            )

    dims: list[str] = []
    coords: list[np.ndarray] = []
    fixed: dict[str, float] = {}
    static_hyper: dict[str, Any] = {}
    land_swept: list[str] = []
    for name, value in grid.items():
        if not isinstance(name, str):
            raise ValueError(f"grid: keys must be names, got {name!r}")
        allowed = name in rule_args or name == "k_eta" or name in land_args or name in sig
        if not allowed:
            raise ValueError(
                f"grid[{name!r}]: unknown hyperparameter for {rule_name} on {land_name}; "
                f"choose from {', '.join(rule_args + ('k_eta',) * (land_name == 'quadratic') + sweepable_land)}"
            )
        if name == "k_eta" and land_name != "quadratic":
            raise ValueError(f"grid['k_eta']: only defined on the 1-D quadratic, not {land_name!r}")
        if name in land_args:
            if name in landscape_params:
                raise ValueError(f"grid[{name!r}]: also given in landscape_params")
            if name not in sweepable_land:
                raise ValueError(
                    f"grid[{name!r}]: landscape parameter of {land_name!r} cannot vary per point; "
                    "pass it in landscape_params"
                )
        v = _as_axis(name, value)
        if isinstance(v, bool):
            if name not in sig:
                raise ValueError(f"grid[{name!r}]: must be numeric")
            static_hyper[name] = v
        elif isinstance(v, float):
            fixed[name] = v
            if name in land_args:
                land_swept.append(name)
        else:
            dims.append(name)
            coords.append(v)
            if name in land_args:
                land_swept.append(name)
    if not dims:
        raise ValueError("grid: no swept hyperparameter; give at least one 1-D array")
    if "k_eta" in grid and "learning_rate" in grid:
        raise ValueError("grid: give either 'k_eta' or 'learning_rate', not both")

    def values_of(name):
        if name in fixed:
            return np.array([fixed[name]])
        if name in dims:
            return coords[dims.index(name)]
        return None

    # Learning rates (and kη) must be >= 0: a clear error before anything runs.
    for name in ("learning_rate", "k_eta"):
        v = values_of(name)
        if v is not None and np.any(v < 0):
            raise ValueError(f"grid[{name!r}]: negative values (min {v.min():g}); learning rates must be >= 0")
    # Every other constraint: call the factory with the extreme values (concrete, on host).
    defaults = {
        p.name: p.default for p in sig.values() if p.default is not inspect.Parameter.empty
    }
    provided = set(dims) | set(fixed) | set(static_hyper) | ({"learning_rate"} if "k_eta" in grid else set())
    missing = [a for a in rule_args if a not in provided and a not in defaults]
    if missing:
        raise ValueError(f"grid: {rule_name} needs {', '.join(repr(m) for m in missing)} (fixed scalar or array)")
    base = {a: (values_of(a)[0] if values_of(a) is not None else defaults.get(a)) for a in rule_args}
    if "k_eta" in grid:
        base["learning_rate"] = 0.0
    base = {k: (float(v) if isinstance(v, (np.floating, float, int)) and not isinstance(v, bool) else v)
            for k, v in base.items() if v is not None}
    base.update(static_hyper)
    for name in rule_args:
        vals = values_of(name)
        if vals is None:
            continue
        bad = vals[~np.isfinite(vals)]
        if bad.size:
            raise ValueError(f"grid[{name!r}]: {name}={bad[0]} must be finite")
        # optim's constraints are intervals, so the extremes decide for every value between
        for val in np.unique([vals.min(), vals.max()]):
            try:
                rule_factory(**{**base, name: float(val)})
            except ValueError as e:
                raise ValueError(f"grid[{name!r}]: {e}") from None
    # Fixed rule defaults become runtime scalars too (never baked into the program).
    for a in rule_args:
        if a not in provided and a in defaults and not isinstance(defaults[a], bool):
            fixed[a] = float(defaults[a])

    # landscape (static part) and theta0
    try:
        land = land_factory(**landscape_params, **{k: (fixed.get(k, None) or 1.0) for k in land_swept})
    except ValueError as e:
        raise ValueError(f"landscape_params: {e}") from None
    except TypeError as e:
        raise ValueError(f"landscape_params: {e}") from None
    if land.minimum is None:
        raise ValueError(f"landscape {land_name!r} has no known minimum; sweeps need one")
    min_shape = np.shape(np.asarray(land.minimum))
    if theta0 is None:
        if land_name in DEFAULT_THETA0:
            theta0 = DEFAULT_THETA0[land_name]
        elif land_name == "quadratic_nd":
            theta0 = np.ones(min_shape)
        elif land_name == "linear_regression":
            theta0 = np.zeros(min_shape)
        else:  # pragma: no cover - every registered landscape is covered above
            raise ValueError(f"theta0: no default for landscape {land_name!r}; pass one")
    try:
        theta0 = np.asarray(theta0, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"theta0={theta0!r} must be an array of numbers") from None
    if theta0.ndim == 0:
        theta0 = theta0.reshape(1)
    if min_shape and theta0.shape != min_shape:
        raise ValueError(
            f"theta0: expected shape {min_shape} for landscape {land_name!r}, got {theta0.shape}"
        )
    if theta0.ndim != 1:
        raise ValueError(f"theta0: must be a 1-D array, got shape {theta0.shape}")
    if not np.all(np.isfinite(theta0)):
        raise ValueError("theta0: values must be finite")
    if np.allclose(theta0, np.broadcast_to(np.asarray(land.minimum, float), theta0.shape), rtol=0, atol=0):
        raise ValueError("theta0: equals the landscape's minimum; nothing to converge")

    if renormalise in (None, "auto"):
        renorm = _metrics.can_renormalise(rule_name, land_name)
    else:
        renorm = bool(renormalise)
        if renorm and not _metrics.can_renormalise(rule_name, land_name):
            raise ValueError(
                f"renormalise=True is only valid for linear maps on quadratics "
                f"({rule_name} on {land_name} is not); use renormalise='auto'"
            )
    if every is None:
        every = 32 if dtype == "float32" else 64
    every = int(every)
    if every < 1 or steps < 3 * every:
        raise ValueError(f"steps={steps} must be >= 3 * every (every={every}); lower 'every' or raise steps")
    if not 0 < float(window) <= 1:
        raise ValueError(f"window={window} must be in (0, 1]")
    if not float(eps) > 0:
        raise ValueError(f"eps={eps} must be > 0")
    if not float(divergence_factor) > 1:
        raise ValueError(f"divergence_factor={divergence_factor} must be > 1")
    if unroll is None:
        unroll = default_unroll()
    if int(unroll) < 1:
        raise ValueError(f"unroll={unroll} must be >= 1")
    if chunk_size is not None and int(chunk_size) < 1:
        raise ValueError(f"chunk_size={chunk_size} must be >= 1")
    if fit_every is not None and int(fit_every) < every:
        raise ValueError(f"fit_every={fit_every} must be >= every={every}")

    config = {
        "optimizer": rule_name,
        "landscape": land_name,
        "landscape_params": _jsonable(landscape_params),
        "grid": {d: [_canon_float(x) for x in c] for d, c in zip(dims, coords)},
        "fixed": {k: _canon_float(v) for k, v in fixed.items()},
        "static": dict(static_hyper),
        "theta0": [_canon_float(x) for x in theta0],
        "steps": steps,
        "metrics": metrics,
        "dtype": dtype,
        "seed": int(seed),
        "options": {
            "every": every,
            "window": float(window),
            "eps": float(eps),
            "divergence_factor": float(divergence_factor),
            "renormalise": renorm,
            "unroll": int(unroll),
            "pack": bool(pack),
            "fit_every": None if fit_every is None else int(fit_every),
        },
        "chunk_size": None if chunk_size is None else int(chunk_size),
    }
    return _Plan(
        config=config,
        rule_factory=rule_factory,
        landscape_factory=land_factory,
        land_static=landscape_params,
        dims=dims,
        coords=coords,
        fixed=fixed,
        static_hyper=static_hyper,
        rule_args=rule_args,
        land_swept=tuple(land_swept),
        theta0=theta0,
        dtype=dtype,
    )


def _jsonable(x):
    if isinstance(x, Mapping):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return [_jsonable(v) for v in x.tolist()]
    if isinstance(x, np.generic):
        return x.item()
    return x


def _plan_from_config(config: Mapping) -> _Plan:
    grid = {**{k: np.asarray(v) for k, v in config["grid"].items()}}
    # fixed entries that are rule defaults are re-derived; pass the rest
    grid.update({k: v for k, v in config.get("fixed", {}).items()})
    grid.update(config.get("static", {}))
    # restore the user's order: swept dims in stored order, fixed after
    o = config.get("options", {})
    plan = _plan(
        config["optimizer"],
        config["landscape"],
        grid,
        config["steps"],
        metrics=config["metrics"],
        theta0=config["theta0"],
        landscape_params=config.get("landscape_params", {}),
        dtype=config["dtype"],
        seed=config.get("seed", 0),
        every=o.get("every"),
        window=o.get("window", 0.5),
        eps=o.get("eps", 1e-6),
        divergence_factor=o.get("divergence_factor", 1e6),
        renormalise=o.get("renormalise", "auto"),
        unroll=o.get("unroll", 8),
        pack=o.get("pack", True),
        chunk_size=config.get("chunk_size"),
        fit_every=o.get("fit_every"),
    )
    return plan


# --------------------------------------------------------------------------- layout


@dataclasses.dataclass(frozen=True)
class _Layout:
    shape: tuple[int, ...]
    axis: int  # the dimension split into blocks
    block: int  # points of that dimension per chunk
    n_devices: int
    block_size: int  # points per vmapped scan on one device

    @property
    def inner(self) -> int:  # points per index of `axis`
        return int(np.prod(self.shape[self.axis + 1:]))

    @property
    def per_row(self) -> int:  # chunks along `axis`
        return -(-self.shape[self.axis] // self.block)

    @property
    def n_chunks(self) -> int:
        return int(np.prod(self.shape[: self.axis])) * self.per_row

    @property
    def n_blocks(self) -> int:  # vmapped scans per device per chunk
        return -(-self._raw // self.block_size)

    @property
    def block_points(self) -> int:
        """Points per vmapped scan: ``block_size`` evened out over the blocks so that padding
        stays below 8 points per block (a 262,182-point chunk in blocks of at most 2^18 is
        two blocks of 131,096, not two of 262,144)."""
        b = -(-self._raw // self.n_blocks)
        return -(-b // 8) * 8

    @property
    def _raw(self) -> int:  # valid points per device, rounded up
        return -(-(self.block * self.inner) // self.n_devices)

    @property
    def local(self) -> int:  # padded points per device
        return self.n_blocks * self.block_points

    @property
    def padded(self) -> int:
        return self.local * self.n_devices

    def chunk(self, i: int):
        """(flat start, n valid points, region slices) of chunk ``i``."""
        lead, b = divmod(i, self.per_row)
        lead_idx = np.unravel_index(lead, self.shape[: self.axis]) if self.axis else ()
        lo = b * self.block
        hi = min(lo + self.block, self.shape[self.axis])
        idx = tuple(int(v) for v in lead_idx) + (lo,) + (0,) * (len(self.shape) - self.axis - 1)
        start = int(np.ravel_multi_index(idx, self.shape))
        region = tuple(slice(int(v), int(v) + 1) for v in lead_idx) + (slice(lo, hi),) + tuple(
            slice(0, n) for n in self.shape[self.axis + 1:]
        )
        return start, (hi - lo) * self.inner, region

    def zarr_chunks(self) -> tuple[int, ...]:
        return (1,) * self.axis + (self.block,) + tuple(self.shape[self.axis + 1:])


def _make_layout(shape, chunk_size: int, n_devices: int, block_size: int) -> _Layout:
    chunk_size = max(int(chunk_size), 1)
    axis = len(shape) - 1
    for a in range(len(shape)):
        if int(np.prod(shape[a + 1:])) <= chunk_size:
            axis = a
            break
    inner = int(np.prod(shape[axis + 1:]))
    block = max(1, min(shape[axis], chunk_size // max(inner, 1)))
    return _Layout(tuple(shape), axis, block, n_devices, block_size)


def _default_chunk_size(plan: _Plan, n_devices: int, platform: str) -> int:
    """Points per chunk: a few seconds of work, bounded by device memory.

    Small enough for a live progress bar and cheap resumes, large enough that the
    per-chunk host work (dispatch, zarr write, fsync) is negligible.
    """
    per_point = 8 * (4 * len(plan.theta0) + 4 * len(plan.config["metrics"]) + 16)
    steps = max(plan.config["steps"], 1)
    if platform == "cpu":
        try:
            mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        except (ValueError, OSError, AttributeError):  # pragma: no cover
            mem = 8 << 30
        by_time = int(2e9 // steps)  # ~1 s at ~2e9 point-steps/s
    else:
        import jax

        try:
            mem = jax.devices()[0].memory_stats()["bytes_limit"] * n_devices
        except Exception:  # pragma: no cover - depends on the backend
            mem = 8 << 30
        by_time = int(1e12 // steps)
    by_mem = int(mem // 8 // per_point)
    lo = 1024 * n_devices
    return int(min(max(lo, min(by_mem, by_time)), plan.n_points))


# --------------------------------------------------------------------------- kernel


def default_unroll() -> int:
    """Scan unroll used when none is given: 4 on CPU, 32 (a whole renormalisation interval) elsewhere.

    On XLA:CPU (2-core dev box, σ* metrics, 2^18-point blocks) unroll 4 ran at 1.2e10
    point-steps/s, 2 at 1.1e10, 8 at 1.0e10, 16 at 8.2e9 and 32 at 3.4e9 (measured; the
    longer unrolled bodies simply compile to slower loops there). On GPUs the issue reports
    a bare SA map gaining ~37x from unroll 1 to 128; inside the metrics kernel a scan never
    runs longer than ``every`` (32) steps, so 32 is the largest useful value there (not
    measured by us: no GPU was available).
    """
    import jax

    return 4 if jax.devices()[0].platform == "cpu" else 32


def _devices():
    import jax

    return jax.local_devices() if jax.process_count() > 1 else jax.devices()


@functools.lru_cache(maxsize=32)
def _compiled_kernel(key: str):
    """The jitted, sharded chunk program for a config key (one compile per key)."""
    spec = json.loads(key)
    return _build_kernel(spec)


def _kernel_key(plan: _Plan, layout: _Layout, n_devices: int, steps: int | None = None,
                window: float | None = None) -> str:
    c = plan.config
    spec = {
        "optimizer": c["optimizer"],
        "landscape": c["landscape"],
        "landscape_params": c["landscape_params"],
        "dims": plan.dims,
        "shape": list(plan.shape),
        "fixed_names": sorted(plan.fixed),
        "static": c["static"],
        "land_swept": list(plan.land_swept),
        "k_eta": "k_eta" in plan.dims or "k_eta" in plan.fixed,
        "steps": steps if steps is not None else c["steps"],
        "metrics": c["metrics"],
        "dtype": c["dtype"],
        "options": {**c["options"], **({"window": window} if window is not None else {})},
        "local": layout.local,
        "block_size": layout.block_points,
        "n_devices": n_devices,
        "theta_dim": len(plan.theta0),
    }
    return json.dumps(spec, sort_keys=True)


def _build_kernel(spec: dict):
    import jax
    import jax.numpy as jnp
    from jax.sharding import Mesh, PartitionSpec as P

    rule_factory = _optim.RULES[spec["optimizer"]]
    land_factory = _landscapes.LANDSCAPES[spec["landscape"]]
    land_static = dict(spec["landscape_params"])
    dims = spec["dims"]
    shape = spec["shape"]
    strides = [int(np.prod(shape[i + 1:])) for i in range(len(shape))]
    fixed_names = spec["fixed_names"]
    rule_args = _optim.hyperparameter_names(rule_factory)
    land_swept = set(spec["land_swept"])
    dtype = jnp.dtype(spec["dtype"])
    opts = spec["options"]
    local = spec["local"]
    block = spec["block_size"]
    n_blocks = local // block
    devices = _devices()[: spec["n_devices"]]
    mesh = Mesh(np.array(devices), ("points",))
    steps = spec["steps"]
    metrics = tuple(spec["metrics"])

    def values(coords, fixed, flat):
        vals = {}
        for d, name in enumerate(dims):
            idx = (flat // strides[d]) % shape[d]
            vals[name] = coords[d][idx]
        for name in fixed_names:
            vals[name] = jnp.broadcast_to(fixed[name], flat.shape)
        if spec["k_eta"]:  # learning_rate = kη / k
            k = vals["k"] if "k" in vals else jnp.asarray(land_static.get("k", 1.0), dtype)
            vals["learning_rate"] = vals.pop("k_eta") / k
        hyper = {a: vals[a] for a in rule_args if a in vals}
        land = {a: vals[a] for a in land_swept if a in vals}
        return hyper, land

    def run_block(coords, fixed, theta0, flat):
        hyper, land = values(coords, fixed, flat)
        # Materialise the per-point values: otherwise XLA may fuse the index arithmetic and
        # gathers into the per-step loop body and redo them at every step.
        hyper, land = jax.lax.optimization_barrier((hyper, land))
        th0 = jnp.broadcast_to(theta0, flat.shape + theta0.shape)
        return _metrics.run_metrics(
            rule_factory, hyper, land_factory, land, th0, steps,
            metrics=metrics, every=opts["every"], window=opts["window"], eps=opts["eps"],
            divergence_factor=opts["divergence_factor"], renormalise=opts["renormalise"],
            unroll=opts["unroll"], pack=opts["pack"], fit_every=opts.get("fit_every"),
            static_hyper=spec["static"], static_land=land_static,
        )

    def local_fn(coords, fixed, theta0, start, n_valid):
        _TRACES["n"] += 1
        dev = jax.lax.axis_index("points")
        pos = jnp.arange(local, dtype=jnp.int32) + dev * local
        # padding repeats the last valid point (masked on the host)
        flat = start + jnp.minimum(pos, n_valid - 1)
        if n_blocks == 1:
            return run_block(coords, fixed, theta0, flat)
        out = jax.lax.map(lambda f: run_block(coords, fixed, theta0, f), flat.reshape(n_blocks, block))
        return {k: v.reshape(local) for k, v in out.items()}

    fn = jax.shard_map(
        local_fn,
        mesh=mesh,
        in_specs=(P(), P(), P(), P(), P()),
        out_specs=P("points"),
        check_vma=False,
    )
    return jax.jit(fn), mesh


# --------------------------------------------------------------------------- store

_CONFIG = "config.json"
_STORE = "results.zarr"
_LOG_PREFIX = "progress"


def _store_error(out, msg) -> ValueError:
    return ValueError(f"result store {out} is corrupt: {msg}")


def _read_config(out: pathlib.Path) -> dict:
    try:
        cfg = json.loads((out / _CONFIG).read_text())
        cfg["sweep"]
    except FileNotFoundError:
        raise _store_error(out, f"{_CONFIG} is missing") from None
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise _store_error(out, f"{_CONFIG} is unreadable ({e})") from None
    return cfg


def _read_done(out: pathlib.Path, n_chunks: int) -> set[int]:
    done: set[int] = set()
    for log in sorted(out.glob(_LOG_PREFIX + "*.log")):
        text = log.read_text()
        lines = text.split("\n")
        # the last line may be cut short by a kill: only newline-terminated lines count
        for k, line in enumerate(lines[:-1]):
            try:
                i = int(line)
            except ValueError:
                raise _store_error(out, f"{log.name} line {k + 1} is not a chunk index: {line!r}") from None
            if not 0 <= i < n_chunks:
                raise _store_error(out, f"{log.name} names chunk {i}, but the sweep has {n_chunks}")
            done.add(i)
    return done


def _drop_partial_line(path: pathlib.Path) -> None:
    """Cut a last line left without its newline by a kill (that chunk is recomputed)."""
    if not path.exists():
        return
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        with open(path, "r+b") as f:
            f.truncate(data.rfind(b"\n") + 1)
            f.flush()
            os.fsync(f.fileno())


def _diff(a: Mapping, b: Mapping, prefix="") -> list[str]:
    out = []
    for k in sorted(set(a) | set(b)):
        va, vb = a.get(k, "<absent>"), b.get(k, "<absent>")
        if isinstance(va, Mapping) and isinstance(vb, Mapping):
            out += _diff(va, vb, prefix + k + ".")
        elif va != vb:
            sa, sb = json.dumps(va), json.dumps(vb)
            if len(sa) > 40:
                sa = sa[:37] + "..."
            if len(sb) > 40:
                sb = sb[:37] + "..."
            out.append(f"{prefix}{k}: stored {sa}, requested {sb}")
    return out


def _create_store(out: pathlib.Path, plan: _Plan, layout: _Layout, attrs: dict, meta: dict) -> None:
    import zarr

    store = out / _STORE
    g = zarr.open_group(str(store), mode="w-", attributes=attrs, zarr_format=3)
    for d, c in zip(plan.dims, plan.coords):
        a = g.create_array(d, shape=(len(c),), dtype="float64", chunks=(len(c),), dimension_names=[d])
        a[:] = c
    chunks = layout.zarr_chunks()
    for m in plan.config["metrics"]:
        is_bool = m == "diverged"
        g.create_array(
            m,
            shape=plan.shape,
            dtype="bool" if is_bool else plan.dtype,
            chunks=chunks,
            dimension_names=list(plan.dims),
            fill_value=False if is_bool else np.nan,
            attributes={"description": _metrics.METRICS[m]},
        )
    # the config is written last: its presence marks a fully created store
    tmp = out / (_CONFIG + ".tmp")
    tmp.write_text(json.dumps(meta, indent=1) + "\n")
    os.replace(tmp, out / _CONFIG)


def _open_group(out: pathlib.Path):
    import zarr

    try:
        return zarr.open_group(str(out / _STORE), mode="r+")
    except Exception as e:  # zarr raises several types for a damaged store
        raise _store_error(out, f"{_STORE} cannot be opened ({type(e).__name__}: {e})") from None


def _check_chunks(out: pathlib.Path, g, metrics, n_done: int) -> None:
    """Every chunk logged as done must exist on disk for every metric (empty chunks are written)."""
    for m in metrics:
        try:
            stored = g[m].nchunks_initialized
        except Exception as e:
            raise _store_error(out, f"variable {m!r} cannot be listed ({type(e).__name__}: {e})") from None
        if stored < n_done:
            raise _store_error(out, f"{n_done} chunks are logged as done but only {stored} are stored for {m!r}")


def open_result(out: str | pathlib.Path):
    """Open a finished (or partial) sweep directory as an :class:`xarray.Dataset` (lazy)."""
    import xarray as xr

    out = pathlib.Path(out)
    if not out.is_dir():
        raise FileNotFoundError(f"no sweep result directory {out}")
    _read_config(out)
    try:
        ds = xr.open_zarr(str(out / _STORE), consolidated=False)
    except Exception as e:
        raise _store_error(out, f"{_STORE} cannot be read ({type(e).__name__}: {e})") from None
    return ds


def _load_dataset(out: pathlib.Path):
    ds = open_result(out)
    try:
        return ds.load()
    except Exception as e:
        raise _store_error(out, f"data cannot be read ({type(e).__name__}: {e})") from None


# --------------------------------------------------------------------------- sweep


def _attrs(plan: _Plan, n_devices: int) -> dict:
    import jax

    import dynsim

    c = plan.config
    devs = _devices()[:n_devices]
    return {
        "rule": c["optimizer"],
        "landscape": c["landscape"],
        "landscape_params": json.dumps(c["landscape_params"]),
        "steps": c["steps"],
        "dtype": c["dtype"],
        "device": f"{n_devices} x {devs[0].device_kind} ({devs[0].platform})",
        "dynsim_version": dynsim.__version__,
        "jax_version": jax.__version__,
        "seed": c["seed"],
        "theta0": json.dumps(c["theta0"]),
        "fixed": json.dumps(c["fixed"]),
        "options": json.dumps(c["options"]),
        "k_eta": "learning_rate = k_eta / k" if ("k_eta" in c["grid"] or "k_eta" in c["fixed"]) else "",
        "config": json.dumps(c, sort_keys=True),
    }


def sweep(
    optimizer: str | Callable,
    landscape: str | Callable,
    grid: Mapping[str, Any],
    steps: int,
    metrics: Sequence[str] | None = None,
    *,
    theta0=None,
    landscape_params: Mapping[str, Any] | None = None,
    dtype: str = "float32",
    seed: int = 0,
    every: int | None = None,
    window: float = 0.5,
    eps: float = 1e-6,
    divergence_factor: float = 1e6,
    renormalise: bool | str = "auto",
    unroll: int | None = None,
    pack: bool = True,
    fit_every: int | None = None,
    chunk_size: int | None = None,
    block_size: int | None = None,
    devices: int | None = None,
    out: str | pathlib.Path | None = None,
    progress: bool = True,
    chunks: slice | None = None,
    _stop_after: int | None = None,
):
    r"""Run ``optimizer`` on ``landscape`` at every point of ``grid``; return an ``xarray.Dataset``.

    Args:
      optimizer: rule name or :mod:`dynsim.optim` factory (e.g. ``"super_accelerated"``).
      landscape: landscape name or :mod:`dynsim.landscapes` factory (e.g. ``"quadratic"``).
      grid: ``name -> 1-D array`` (swept; one dimension each, in this order) or
        ``name -> scalar`` (fixed). See the module docstring for names and ``k_eta``.
      steps: steps per point.
      metrics: names from :data:`dynsim.metrics.METRICS` (default: all). The per-step ones
        (``steps_to_eps``, ``overshoot``) roughly double the cost per step.
      theta0: initial point (default per landscape: ``[1.0]`` on the quadratic).
      landscape_params: fixed landscape parameters (e.g. ``{"k": 2.0}``).
      dtype: ``"float32"`` (default) or ``"float64"`` (needs ``jax_enable_x64``).
      seed: recorded in the provenance (the maps are deterministic).
      every, window, eps, divergence_factor, renormalise, unroll, pack, fit_every: see
        :func:`dynsim.metrics.run_metrics`; ``renormalise="auto"`` rescales exactly when the
        map is linear (:func:`dynsim.metrics.can_renormalise`). ``every`` defaults to 32
        (float32) / 64 (float64); ``unroll`` to :func:`default_unroll` (4 on CPU).
      chunk_size: points per chunk (default: sized from device memory, capped).
      block_size: points per vmapped scan on one device (default 2^18 on CPU, where
        blocks that fit the cache are fastest; the whole local chunk elsewhere).
      devices: number of local devices to shard over (default all).
      out: result directory (zarr store, config, progress log); ``None`` keeps it in memory.
        An existing ``out`` holding the same sweep is resumed; a different one is refused.
      progress: show a tqdm bar (points, point-steps/s, ETA).
      chunks: run only these chunk indices (multi-host; see the module docstring).

    Returns:
      ``xarray.Dataset`` with dims = swept names, coords = their values, variables =
      metrics, and provenance in ``attrs`` (rule, landscape, steps, dtype, device,
      dynsim version, seed, the full config as JSON).

    Raises:
      ValueError: bad arguments (one message naming the argument), a corrupt store,
        or an ``out`` holding a different sweep.
    """
    plan = _plan(
        optimizer, landscape, grid, steps,
        metrics=metrics, theta0=theta0, landscape_params=landscape_params, dtype=dtype,
        seed=seed, every=every, window=window, eps=eps, divergence_factor=divergence_factor,
        renormalise=renormalise, unroll=unroll, pack=pack, chunk_size=chunk_size, fit_every=fit_every,
    )
    return _run(plan, out=out, progress=progress, devices=devices, block_size=block_size,
                chunks=chunks, _stop_after=_stop_after)


def _run(plan: _Plan, *, out=None, progress=True, devices=None, block_size=None, chunks=None,
         _stop_after=None, source_text: str | None = None, source: Mapping | None = None,
         resume_only: bool = False):
    import jax
    import jax.numpy as jnp
    import xarray as xr

    all_devs = _devices()
    n_dev = len(all_devs) if devices is None else int(devices)
    if not 1 <= n_dev <= len(all_devs):
        raise ValueError(f"devices={devices} must be between 1 and {len(all_devs)}")
    platform = all_devs[0].platform
    if plan.config["chunk_size"] is None:
        stored_cs = None
        if out is not None and (pathlib.Path(out) / _CONFIG).exists():
            stored_cs = _read_config(pathlib.Path(out))["sweep"].get("chunk_size")
        # the resolved size is part of the config: a resume reuses the same chunks
        plan.config["chunk_size"] = stored_cs or _default_chunk_size(plan, n_dev, platform)
    cs = plan.config["chunk_size"]
    if block_size is None:
        block_size = (1 << 18) if platform == "cpu" else 1 << 30
    block_size = max(8, int(block_size))
    layout = _make_layout(plan.shape, cs, n_dev, block_size)
    meta = {
        "sweep": plan.config,
        "layout": {"axis": layout.axis, "block": layout.block, "n_chunks": layout.n_chunks},
    }
    if source is not None:  # the TOML config as parsed (overrides applied): --resume rebuilds from it
        meta["source"] = json.loads(json.dumps(_jsonable(source)))
    attrs = _attrs(plan, n_dev)

    done: set[int] = set()
    if out is not None:
        out = pathlib.Path(out)
        if (out / _CONFIG).exists():
            stored = _read_config(out)
            if stored.get("sweep") != json.loads(json.dumps(plan.config)) or stored.get("layout") != meta["layout"]:
                diffs = _diff(stored.get("sweep", {}), json.loads(json.dumps(plan.config)))
                diffs += _diff({"layout": stored.get("layout")}, {"layout": meta["layout"]})
                raise ValueError(
                    f"out={str(out)!r} holds a different sweep ({'; '.join(diffs[:4])}"
                    f"{'; ...' if len(diffs) > 4 else ''}); choose another directory. Nothing was changed."
                )
            if not (out / _STORE).exists():
                raise _store_error(out, f"{_STORE} is missing")
            g = _open_group(out)
            for m in plan.config["metrics"]:
                if m not in g or tuple(g[m].shape) != plan.shape:
                    raise _store_error(out, f"variable {m!r} is missing or has the wrong shape")
            done = _read_done(out, layout.n_chunks)
            _check_chunks(out, g, plan.config["metrics"], len(done))
        else:
            if resume_only:
                raise FileNotFoundError(f"--resume {out}: no sweep there ({_CONFIG} missing)")
            present = {p.name for p in out.iterdir()} if out.exists() else set()
            if present - {_STORE, "config.toml", _CONFIG + ".tmp"}:
                raise ValueError(
                    f"out={str(out)!r} exists and is not a sweep result directory; refusing to write into it"
                )
            out.mkdir(parents=True, exist_ok=True)
            # only our own files from a creation interrupted before config.json: start over
            if (out / _STORE).exists():
                shutil.rmtree(out / _STORE)
            if source_text is not None:
                (out / "config.toml").write_text(source_text)
            _create_store(out, plan, layout, attrs, meta)
        g = _open_group(out)
        # write every chunk, even one equal to the fill value: a logged chunk then always
        # has a file, and a missing file is detectable corruption
        arrays = {m: g[m].with_config({"write_empty_chunks": True}) for m in plan.config["metrics"]}
        log_name = _LOG_PREFIX + (f"-{jax.process_index()}" if jax.process_count() > 1 else "") + ".log"
        _drop_partial_line(out / log_name)
        log = open(out / log_name, "ab")
    else:
        results = {
            m: np.full(plan.shape, False if m == "diverged" else np.nan,
                       dtype=bool if m == "diverged" else plan.dtype)
            for m in plan.config["metrics"]
        }

    todo = [i for i in range(layout.n_chunks) if i not in done]
    if chunks is not None:
        keep = set(range(layout.n_chunks)[chunks])
        todo = [i for i in todo if i in keep]

    fn, mesh = _compiled_kernel(_kernel_key(plan, layout, n_dev))
    npdt = np.dtype(plan.dtype)
    rep = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
    coords = jax.device_put([np.asarray(c, npdt) for c in plan.coords], rep)
    fixed = jax.device_put({k: np.asarray(v, npdt) for k, v in plan.fixed.items()}, rep)
    theta0 = jax.device_put(np.asarray(plan.theta0, npdt), rep)

    def dispatch(i):
        start, n_valid, region = layout.chunk(i)
        res = fn(coords, fixed, theta0, jnp.int32(start), jnp.int32(n_valid))
        return i, n_valid, region, res

    bar = _progress_bar(plan, layout, done, progress, todo)
    t_first, pts_first = time.perf_counter(), 0
    n_run = 0
    pending = dispatch(todo[0]) if todo else None
    k = 0
    try:
        while pending is not None:
            k += 1
            nxt = dispatch(todo[k]) if k < len(todo) else None
            i, n_valid, region, res = pending
            host = {m: np.asarray(res[m])[:n_valid] for m in plan.config["metrics"]}
            rshape = tuple(s.stop - s.start for s in region)
            if out is not None:
                for m, v in host.items():
                    arrays[m][region] = v.reshape(rshape)
                log.write(f"{i}\n".encode())
                log.flush()
                os.fsync(log.fileno())
            else:
                for m, v in host.items():
                    results[m][region] = v.reshape(rshape)
            n_run += 1
            if bar is not None:
                bar.update(n_valid)
                if n_run == 1:  # measure from the end of the first chunk: excludes compilation
                    t_first, pts_first = time.perf_counter(), bar.n
                elif bar.n > pts_first:
                    rate = (bar.n - pts_first) * plan.config["steps"] / max(time.perf_counter() - t_first, 1e-9)
                    bar.set_postfix_str(f"{rate:.3g} point-steps/s", refresh=False)
            pending = nxt
            if _stop_after is not None and n_run >= _stop_after:
                break
    finally:
        if bar is not None:
            bar.close()
        if out is not None:
            log.close()

    if out is not None:
        done_now = _read_done(out, layout.n_chunks)
        _check_chunks(out, g, plan.config["metrics"], len(done_now))
        ds = _load_dataset(out) if plan.n_points <= (1 << 24) else open_result(out)
        ds.attrs["complete"] = len(done_now) == layout.n_chunks
        return ds
    ds = xr.Dataset(
        {m: (plan.dims, v, {"description": _metrics.METRICS[m]}) for m, v in results.items()},
        coords={d: c for d, c in zip(plan.dims, plan.coords)},
        attrs=attrs,
    )
    ds.attrs["complete"] = True
    return ds


def _progress_bar(plan, layout, done, progress, todo):
    if not progress or not todo:
        return None
    from tqdm.auto import tqdm

    done_pts = sum(layout.chunk(i)[1] for i in done)
    return tqdm(
        total=plan.n_points,
        initial=done_pts,
        unit="pt",
        unit_scale=True,
        desc=f"sweep {plan.config['optimizer']}/{plan.config['landscape']}",
        file=sys.stderr,
        dynamic_ncols=True,
    )


# --------------------------------------------------------------------------- locate


@functools.lru_cache(maxsize=16)
def _point_kernel(key: str):
    import jax
    import jax.numpy as jnp

    spec = json.loads(key)
    rule_factory = _optim.RULES[spec["optimizer"]]
    land_factory = _landscapes.LANDSCAPES[spec["landscape"]]
    land_static = dict(spec["landscape_params"])
    rule_args = _optim.hyperparameter_names(rule_factory)
    opts = spec["options"]

    from jax.sharding import Mesh, PartitionSpec as P

    devices = _devices()[: spec["n_devices"]]
    mesh = Mesh(np.array(devices), ("points",))

    def fn(vals, theta0):
        _TRACES["n"] += 1
        vals = dict(vals)
        if "k_eta" in vals:
            k = vals["k"] if "k" in vals else jnp.asarray(land_static.get("k", 1.0), theta0.dtype)
            vals["learning_rate"] = vals.pop("k_eta") / k
        hyper = {a: vals[a] for a in rule_args if a in vals}
        land = {a: vals[a] for a in spec["land_swept"] if a in vals}
        n = next(iter(vals.values())).shape[0]
        th0 = jnp.broadcast_to(theta0, (n,) + theta0.shape)
        return _metrics.run_metrics(
            rule_factory, hyper, land_factory, land, th0, spec["steps"], metrics=tuple(spec["metrics"]),
            every=opts["every"], window=spec["window"], eps=opts["eps"],
            divergence_factor=opts["divergence_factor"], renormalise=opts["renormalise"],
            unroll=opts["unroll"], pack=opts["pack"], fit_every=opts.get("fit_every"),
            static_hyper=spec["static"], static_land=land_static,
        )

    # points sharded over the local devices (refinement batches are small but long)
    return jax.jit(jax.shard_map(fn, mesh=mesh, in_specs=(P("points"), P()), out_specs=P("points"),
                                 check_vma=False))


def _run_points(plan, points, *, steps, window, metrics, dtype=None):
    import contextlib

    import jax

    dtype = dtype or plan.dtype
    ctx = jax.enable_x64(True) if dtype == "float64" else contextlib.nullcontext()
    with ctx:
        return _run_points_inner(plan, points, steps=steps, window=window, metrics=metrics, dtype=dtype)


def _run_points_inner(plan, points, *, steps, window, metrics, dtype):
    import jax.numpy as jnp

    c = plan.config
    names = sorted(points)
    n = len(points[names[0]])
    n_dev = len(_devices())
    npad = max(8, 1 << (n - 1).bit_length())  # few shapes -> few compiles
    npad = -(-npad // n_dev) * n_dev
    spec = {
        "optimizer": c["optimizer"], "landscape": c["landscape"], "landscape_params": c["landscape_params"],
        "land_swept": list(plan.land_swept), "static": c["static"], "steps": int(steps), "window": float(window),
        "metrics": list(metrics), "options": c["options"], "names": names, "npad": npad, "dtype": dtype,
        "n_devices": n_dev,
    }
    fn = _point_kernel(json.dumps(spec, sort_keys=True))
    jdt = jnp.dtype(dtype)
    vals = {}
    for k in names:
        v = np.asarray(points[k], np.float64)
        vals[k] = jnp.asarray(np.concatenate([v, np.full(npad - n, v[-1])]), jdt)
    res = fn(vals, jnp.asarray(plan.theta0, jdt))
    return {m: np.asarray(res[m])[:n] for m in metrics}


_GOLD = (math.sqrt(5.0) - 1.0) / 2.0


def _golden(f, a, b, tol_abs, maxiter=200):
    """Vectorised golden-section minimisation of ``f`` on brackets ``[a, b]``."""
    a, b = np.array(a, float), np.array(b, float)
    c = b - _GOLD * (b - a)
    d = a + _GOLD * (b - a)
    fc, fd = f(c), f(d)
    for _ in range(maxiter):
        if np.all(b - a <= tol_abs):
            break
        left = fc <= fd  # minimum in [a, d]
        a2 = np.where(left, a, c)
        b2 = np.where(left, d, b)
        # the kept interior point is reused; one new evaluation per problem per iteration
        new = np.where(left, b2 - _GOLD * (b2 - a2), a2 + _GOLD * (b2 - a2))
        fnew = f(new)
        c2 = np.where(left, new, d)
        fc2 = np.where(left, fnew, fd)
        d2 = np.where(left, c, new)
        fd2 = np.where(left, fc, fnew)
        frozen = (b - a) <= tol_abs
        a, b = np.where(frozen, a, a2), np.where(frozen, b, b2)
        c, d = np.where(frozen, c, c2), np.where(frozen, d, d2)
        fc, fd = np.where(frozen, fc, fc2), np.where(frozen, fd, fd2)
    # the better interior point (and its value); it lies within the final bracket, i.e.
    # within tol_abs of the minimiser
    better = fc <= fd
    return np.where(better, c, d), np.where(better, fc, fd)


def _bracket_walk(f, grid, i0, max_steps=None):
    """Move each index downhill on ``grid`` until ``f`` at ``(i−1, i, i+1)`` brackets a minimum.

    Vectorised over problems; one new evaluation per problem and step. Returns the final
    indices and a flag for problems that ran into the grid edge.
    """
    n = len(grid)
    i = np.clip(np.asarray(i0), 1, n - 2)
    fl, fm, fr = f(grid[i - 1]), f(grid[i]), f(grid[i + 1])
    edge = np.zeros(i.shape, bool)
    for _ in range(max_steps or n):
        go_left = (fl < fm) & (fl <= fr) & ~edge
        go_right = (fr < fm) & (fr < fl) & ~edge
        if not np.any(go_left | go_right):
            break
        edge |= (go_left & (i - 1 < 1)) | (go_right & (i + 1 > n - 2))
        go_left &= ~edge
        go_right &= ~edge
        i_new = np.where(go_left, i - 1, np.where(go_right, i + 1, i))
        probe = np.where(go_left, i_new - 1, np.where(go_right, i_new + 1, i_new))
        fp = f(grid[probe])
        fl, fm, fr = (np.where(go_left, fp, np.where(go_right, fm, fl)),
                      np.where(go_left, fl, np.where(go_right, fr, fm)),
                      np.where(go_left, fm, np.where(go_right, fp, fr)))
        i = i_new
    return i, edge


def _bisect_sign(f, lo, hi, rtol, atol, maxiter=200):
    """Vectorised bisection for the sign change of ``f`` between ``lo`` and ``hi``.

    Stops when the bracket is below ``rtol·|midpoint| + atol``; returns the midpoint.
    """
    lo, hi = np.array(lo, float), np.array(hi, float)
    flo = f(lo) > 0
    for _ in range(maxiter):
        if np.all(np.abs(hi - lo) <= rtol * np.abs(0.5 * (lo + hi)) + atol):
            break
        mid = 0.5 * (lo + hi)
        fm = f(mid) > 0
        same = fm == flo
        lo, hi = np.where(same, mid, lo), np.where(same, hi, mid)
    return 0.5 * (lo + hi)


def locate(
    ds,
    over: str = "sigma",
    *,
    refine: bool = True,
    refine_steps: int = 1 << 18,
    refine_window: float = 1.0,
    tol: float = 1e-4,
    boundary: bool = True,
    T_scan: int = 64,
    refine_dtype: str | None = "float64",
):
    r"""Locate the minimiser of the contraction (and of ``T``) along ``over``.

    ``ds`` is a sweep result (it carries its config in ``attrs["config"]``) containing
    ``rate`` (and ``timescale`` for the T-minimiser). For each point of the other
    dimensions:

    * ``sigma_star``: ``argmax rate`` = ``argmin ρ``: coarse grid argmax, a downhill walk
      on the grid with refine-quality rates until ``(σ_{i−1}, σ_i, σ_{i+1})`` brackets the
      minimum (the short coarse runs are biased near the kink), then golden-section
      inside ``[σ_{i−1}, σ_{i+1}]``, all with ``refine_steps``-step runs
      fitted over ``refine_window`` of the run (asymptotic rate), until the bracket is
      below ``tol/2`` relative (absolute floor ``tol·1e-3·Δσ``); ``rho_star`` is ρ there.
    * ``sigma_star_T``: ``argmin timescale``, with the sweep's own ``steps`` (T is defined
      by the run length); ``T_star`` its value. T of a finite run ripples slightly in σ,
      so the two grid cells around the coarse argmin are first scanned at ``T_scan``
      points, then golden-section refines inside the best fine cell.
    * ``sigma_stable_lo``/``sigma_stable_hi``: the ends of the stable interval
      (``rate > 0``) containing the argmax, refined by bisection on the sign of the
      asymptotic rate (``refine_steps`` runs); NaN where the grid does not bracket them.
    * ``at_edge``: the coarse optimum lies on the grid edge (refinement impossible;
      ``sigma_star`` is NaN there).

    The refinement runs in ``refine_dtype`` (default float64, inside
    ``jax.enable_x64``; ``None`` = the sweep's dtype): it has few points, and float32
    resolves σ* only to ~1e-5 absolute (3e-4 relative where σ* ≈ 0.04).

    Returns an ``xarray.Dataset`` over the other dimensions.
    """
    import xarray as xr

    if "config" not in ds.attrs:
        raise ValueError("ds: not a dynsim.sweep result (attrs['config'] missing)")
    if refine_dtype not in (None, "float32", "float64"):
        raise ValueError(f"refine_dtype={refine_dtype!r} must be 'float32', 'float64' or None")
    config = json.loads(ds.attrs["config"])
    plan = _plan_from_config(config)
    if over not in ds.dims:
        raise ValueError(f"over={over!r} is not a swept dimension ({', '.join(ds.dims)})")
    if "rate" not in ds:
        raise ValueError("ds: locate needs the 'rate' metric")
    if not config["options"]["renormalise"] and refine:
        pass  # works too; precision limited by the floor of the unrescaled fits
    others = [d for d in ds.rate.dims if d != over]
    rate = ds.rate.transpose(*others, over).values.astype(np.float64)
    sig = ds[over].values.astype(np.float64)
    if len(sig) < 3:
        raise ValueError(f"over={over!r}: need at least 3 grid values")
    if np.any(np.diff(sig) <= 0):
        raise ValueError(f"over={over!r}: grid values must be increasing")
    oshape = rate.shape[:-1]
    R = rate.reshape(-1, len(sig))
    n = R.shape[0]
    other_vals = {}
    grids = np.meshgrid(*[ds[d].values for d in others], indexing="ij") if others else []
    for d, gv in zip(others, grids):
        other_vals[d] = gv.reshape(-1).astype(np.float64)
    fixed_pts = {k: np.full(n, v) for k, v in plan.fixed.items()}

    def pts(s):
        return {**other_vals, **fixed_pts, over: np.asarray(s, np.float64)}

    Rm = np.where(np.isfinite(R), R, -np.inf)
    i_best = np.argmax(Rm, axis=1)
    valid = np.isfinite(R[np.arange(n), i_best])
    at_edge = (i_best == 0) | (i_best == len(sig) - 1) | ~valid
    i_c = np.clip(i_best, 1, len(sig) - 2)
    coarse = sig[i_best]
    spacing = np.diff(sig).min()
    out = {
        "sigma_star_coarse": coarse,
        "at_edge": at_edge,
    }
    steps = config["steps"]
    if refine:
        tol_abs = tol * np.maximum(np.abs(coarse), 1e-3 * spacing)

        def neg_rate(s):
            r = _run_points(plan, pts(s), steps=refine_steps, window=refine_window, metrics=["rate"],
                            dtype=refine_dtype)["rate"]
            return np.where(np.isfinite(r), -r, np.inf)

        # The coarse rates (short runs) are biased near the kink, by several grid cells
        # at small kη: walk downhill on the grid with refine-quality rates until the
        # cell triple brackets the minimum, then golden-section inside it.
        i_w, walk_edge = _bracket_walk(neg_rate, sig, i_c)
        at_edge = at_edge | walk_edge
        s_star, f_star = _golden(neg_rate, sig[i_w - 1], sig[i_w + 1], 0.5 * tol_abs)
        out["at_edge"] = at_edge
        out["sigma_star"] = np.where(at_edge, np.nan, s_star)
        out["rho_star"] = np.where(at_edge, np.nan, np.exp(f_star))
    else:
        out["sigma_star"] = np.where(at_edge, np.nan, coarse)
        out["rho_star"] = np.where(at_edge, np.nan, np.exp(-R[np.arange(n), i_best]))
    if "timescale" in ds:
        T = ds.timescale.transpose(*others, over).values.astype(np.float64).reshape(-1, len(sig))
        Tm = np.where(np.isfinite(T), T, np.inf)
        j_best = np.argmin(Tm, axis=1)
        edge_T = (j_best == 0) | (j_best == len(sig) - 1) | ~np.isfinite(T[np.arange(n), j_best])
        j_c = np.clip(j_best, 1, len(sig) - 2)
        out["sigma_star_T_coarse"] = sig[j_best]
        if refine:
            tol_T = tol * np.maximum(np.abs(sig[j_best]), 1e-3 * spacing)

            def Tfun(s):
                t = _run_points(plan, pts(s), steps=steps, window=config["options"]["window"],
                                metrics=["timescale"], dtype=refine_dtype)["timescale"]
                return np.where(np.isfinite(t) & (t > 0), t, np.inf)

            # T of a finite run ripples in σ (the envelope fit sees few oscillation
            # periods), so golden-section alone can stop in a ripple: scan the two grid
            # cells finely first, then refine inside the best fine cell.
            lo_c, hi_c = sig[j_c - 1], sig[j_c + 1]
            fine = np.linspace(0.0, 1.0, T_scan + 1)
            grid_pts = lo_c[:, None] + fine[None, :] * (hi_c - lo_c)[:, None]
            rep = {k: np.repeat(v, T_scan + 1) for k, v in {**other_vals, **fixed_pts}.items()}
            t_all = _run_points(plan, {**rep, over: grid_pts.ravel()}, steps=steps,
                                window=config["options"]["window"], metrics=["timescale"],
                                dtype=refine_dtype)["timescale"].reshape(grid_pts.shape)
            vals = np.where(np.isfinite(t_all) & (t_all > 0), t_all, np.inf)
            q = np.clip(np.argmin(vals, axis=1), 1, T_scan - 1)
            rows = np.arange(n)
            sT, fT = _golden(Tfun, grid_pts[rows, q - 1], grid_pts[rows, q + 1], 0.5 * tol_T)
        else:
            sT, fT = sig[j_best], T[np.arange(n), j_best]
        out["sigma_star_T"] = np.where(edge_T, np.nan, sT)
        out["T_star"] = np.where(edge_T, np.nan, fT)
    if boundary:
        # ρ grows monotonically away from its minimum on both sides, so each end of the
        # stable interval is the one sign change of the asymptotic rate between σ* and
        # the grid edge. The coarse rates are not trusted near |ρ| = 1 (short runs): the
        # brackets are checked with refine-quality runs.
        def rate_at(s):  # the sign of the asymptotic rate: long runs, as for sigma_star
            r = _run_points(plan, pts(s), steps=refine_steps, window=refine_window,
                            metrics=["rate"], dtype=refine_dtype)["rate"]
            return np.nan_to_num(r, nan=-1.0)  # non-finite = unstable

        centre = np.where(np.isfinite(out["sigma_star"]), out["sigma_star"], coarse)
        centre_ok = valid & (rate_at(centre) > 0)
        for name, edge in (("sigma_stable_lo", sig[0]), ("sigma_stable_hi", sig[-1])):
            edges = np.full(n, edge)
            has = centre_ok & (rate_at(edges) <= 0)
            res = np.full(n, np.nan)
            if np.any(has):
                r = _bisect_sign(rate_at, centre, edges, tol, tol * 1e-3 * spacing) if refine else edges
                res[has] = r[has]
            out[name] = res
    coords = {d: ds[d].values for d in others}
    res = xr.Dataset(
        {k: (others, np.asarray(v).reshape(oshape)) for k, v in out.items()},
        coords=coords,
        attrs={**{k: v for k, v in ds.attrs.items() if k != "complete"},
               "locate_over": over, "refine_steps": refine_steps if refine else 0,
               "refine_window": refine_window, "tol": tol, "refine_dtype": refine_dtype or plan.dtype},
    )
    return res


# --------------------------------------------------------------------------- config files & CLI


def _expand_axis(name, value):
    """TOML grid entry → array/scalar: lists, scalars, or {linspace|geomspace|logspace|arange = [...]}."""
    if isinstance(value, Mapping):
        if len(value) != 1:
            raise ValueError(f"grid.{name}: give one of linspace/geomspace/logspace/arange, got {sorted(value)}")
        (kind, args), = value.items()
        fns = {"linspace": np.linspace, "geomspace": np.geomspace, "logspace": np.logspace, "arange": np.arange}
        if kind not in fns:
            raise ValueError(f"grid.{name}: unknown spacing {kind!r}; use {', '.join(fns)}")
        if not isinstance(args, list) or not 2 <= len(args) <= 3:
            raise ValueError(f"grid.{name}.{kind}: expected [start, stop, num/step], got {args!r}")
        try:
            if kind in ("linspace", "geomspace", "logspace"):
                if len(args) != 3:
                    raise ValueError
                return fns[kind](float(args[0]), float(args[1]), int(args[2]))
            return np.arange(*[float(a) for a in args])
        except (TypeError, ValueError):
            raise ValueError(f"grid.{name}.{kind}: bad arguments {args!r}") from None
    return value


_TOP_KEYS = {
    "optimizer", "landscape", "landscape_params", "grid", "steps", "metrics", "theta0", "dtype", "seed",
    "options", "chunk_size", "locate", "description",
}
_OPTION_KEYS = {"every", "window", "eps", "divergence_factor", "renormalise", "unroll", "pack", "block_size",
                "fit_every"}
_LOCATE_KEYS = {"over", "refine", "refine_steps", "refine_window", "tol", "boundary", "T_scan", "refine_dtype"}


def _parse_value(text: str):
    import tomllib

    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text  # a bare string


def _apply_set(cfg: dict, item: str) -> None:
    if "=" not in item:
        raise ValueError(f"--set {item!r}: expected KEY=VALUE")
    key, text = item.split("=", 1)
    key = key.strip()
    parts = key.split(".")
    if not all(parts):
        raise ValueError(f"--set {item!r}: bad key {key!r}")
    d = cfg
    for p in parts[:-1]:
        if not isinstance(d.get(p, {}), dict):
            raise ValueError(f"--set {item!r}: {p!r} is not a table")
        d = d.setdefault(p, {})
    d[parts[-1]] = _parse_value(text.strip())


def load_config(path: str | pathlib.Path, overrides: Sequence[str] = ()) -> tuple[dict, str]:
    """Read a sweep TOML config and apply ``KEY=VALUE`` overrides; returns (config, source text)."""
    import tomllib

    path = pathlib.Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise FileNotFoundError(f"config {path} not found") from None
    try:
        cfg = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ValueError(f"config {path}: invalid TOML ({e})") from None
    for item in overrides:
        _apply_set(cfg, item)
    unknown = set(cfg) - _TOP_KEYS
    if unknown:
        raise ValueError(f"config {path}: unknown key(s) {', '.join(sorted(unknown))}; expected {', '.join(sorted(_TOP_KEYS))}")
    for need in ("optimizer", "landscape", "grid", "steps"):
        if need not in cfg:
            raise ValueError(f"config {path}: missing {need!r}")
    if not isinstance(cfg["grid"], Mapping):
        raise ValueError(f"config {path}: 'grid' must be a table")
    bad = set(cfg.get("options", {})) - _OPTION_KEYS
    if bad:
        raise ValueError(f"config {path}: unknown option(s) {', '.join(sorted(bad))}")
    bad = set(cfg.get("locate", {})) - _LOCATE_KEYS
    if bad:
        raise ValueError(f"config {path}: unknown locate key(s) {', '.join(sorted(bad))}")
    return cfg, text


def run_config(cfg: Mapping, out=None, *, chunk_size=None, progress=True, source_text=None,
               resume_only=False, _stop_after=None):
    """Run a parsed config (see :func:`load_config`); returns ``(dataset, located or None)``."""
    opts = dict(cfg.get("options", {}))
    block_size = opts.pop("block_size", None)
    grid = {k: _expand_axis(k, v) for k, v in cfg["grid"].items()}
    plan = _plan(
        cfg["optimizer"], cfg["landscape"], grid, cfg["steps"],
        metrics=cfg.get("metrics"), theta0=cfg.get("theta0"), landscape_params=cfg.get("landscape_params"),
        dtype=cfg.get("dtype", "float32"), seed=cfg.get("seed", 0), every=opts.get("every"),
        window=opts.get("window", 0.5), eps=opts.get("eps", 1e-6),
        divergence_factor=opts.get("divergence_factor", 1e6), renormalise=opts.get("renormalise", "auto"),
        unroll=opts.get("unroll"), pack=opts.get("pack", True), fit_every=opts.get("fit_every"),
        chunk_size=chunk_size if chunk_size is not None else cfg.get("chunk_size"),
    )
    ds = _run(plan, out=out, progress=progress, block_size=block_size, source_text=source_text,
              source=cfg, resume_only=resume_only, _stop_after=_stop_after)
    located = None
    if cfg.get("locate") and ds.attrs.get("complete", True):
        loc = dict(cfg["locate"])
        located = locate(ds, **loc)
        if out is not None:
            _write_located(pathlib.Path(out), located)
    return ds, located


def _write_located(out: pathlib.Path, located) -> None:
    import pandas as pd

    if located.sizes:
        df = located.to_dataframe().reset_index()
    else:  # only σ was swept: one row
        df = pd.DataFrame([{k: located[k].item() for k in located.data_vars}])
    tmp = out / "locate.csv.tmp"
    df.to_csv(tmp, index=False, float_format="%.17g")
    os.replace(tmp, out / "locate.csv")
    try:
        plot_located(located, out / "locate.png")
    except ImportError:  # matplotlib is an extra: the CSV is the result, the PNG a view of it
        pass


def _located_config(located) -> dict:
    """The sweep config carried by a :func:`locate` result (``{}`` if absent or unreadable)."""
    try:
        cfg = json.loads(located.attrs.get("config", "{}"))
    except (json.JSONDecodeError, TypeError):
        return {}
    return cfg if isinstance(cfg, dict) else {}


def _exact_sigma_star(located):
    """The closed form σ* where it applies (SA on kθ²/2 over a kη × μ grid), else ``None``."""
    cfg = _located_config(located)
    if (cfg.get("optimizer") != "super_accelerated" or cfg.get("landscape") != "quadratic"
            or located.attrs.get("locate_over") != "sigma"):
        return None
    have = {**cfg.get("fixed", {}), **{d: located[d].values for d in located.dims}}
    if "k_eta" not in have or "momentum" not in have or set(located.dims) - {"k_eta", "momentum"}:
        return None
    import jax
    import xarray as xr

    from dynsim import analysis

    def axis(name):
        v = np.asarray(have[name], float)
        return xr.DataArray(v, dims=[name] if name in located.dims else [])

    ke, mu = xr.broadcast(axis("k_eta"), axis("momentum"))
    with jax.enable_x64(True):  # the closed form in float64 whatever the session's dtype
        exact = np.asarray(analysis.critical_sigma(ke.values, mu.values))
    return ke.copy(data=exact).broadcast_like(located["sigma_star"]).transpose(*located["sigma_star"].dims)


def plot_located(located, path, *, max_lines: int = 8) -> pathlib.Path | None:
    """Plot :func:`locate` output: σ* (and σ*_T) and ρ(σ*) against its first dimension.

    One line per value of the second dimension (at most ``max_lines``); further dimensions
    are fixed at their first value. Where the closed form applies (super-acceleration on
    the quadratic over kη × μ) it is drawn dashed, with the relative error in a third panel.
    Returns ``path``, or ``None`` when ``located`` has no dimension to plot against.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dims = list(located["sigma_star"].dims)
    if not dims:
        return None
    x_name = dims[0]
    sel = {d: 0 for d in dims[2:]}
    loc = located.isel(sel)
    exact = _exact_sigma_star(located)
    exact = exact.isel(sel) if exact is not None else None
    x = loc[x_name].values
    lines = [None] if len(dims) == 1 else list(range(min(loc.sizes[dims[1]], max_lines)))
    n_pan = 3 if exact is not None else 2
    fig, ax = plt.subplots(1, n_pan, figsize=(4.6 * n_pan, 3.8), constrained_layout=True)
    for j in lines:
        pick = (lambda v: v) if j is None else (lambda v, j=j: v.isel({dims[1]: j}))
        label = None if j is None else f"{dims[1]} = {loc[dims[1]].values[j]:g}"
        (ln,) = ax[0].plot(x, pick(loc["sigma_star"]).values, lw=1.6, label=label)
        if "sigma_star_T" in loc:
            ax[0].plot(x, pick(loc["sigma_star_T"]).values, ":", color=ln.get_color(), lw=1.2)
        ax[1].plot(x, pick(loc["rho_star"]).values, color=ln.get_color(), lw=1.6, label=label)
        if exact is not None:
            ex = pick(exact).values
            ax[0].plot(x, ex, "--", color="k", lw=0.8)
            rel = np.abs(pick(loc["sigma_star"]).values - ex) / np.maximum(np.abs(ex), 1e-300)
            ax[2].plot(x, rel, color=ln.get_color(), lw=1.2, label=label)
    positive = np.all(x > 0) and x.max() / x.min() > 20
    for a in ax:
        a.set_xlabel(x_name)
        if positive:
            a.set_xscale("log")
    ax[0].set_ylabel("σ*  (— argmin ρ, ··· argmin T" + (", -- exact)" if exact is not None else ")"))
    ax[1].set_ylabel("ρ(σ*) per step")
    if exact is not None:
        ax[2].set_yscale("log")
        ax[2].set_ylabel("|σ*_sweep − σ*_exact| / |σ*_exact|")
    if lines != [None]:
        ax[0].legend(fontsize=8)
    cfg = _located_config(located)
    fig.suptitle(f"{cfg.get('optimizer', '?')} on {cfg.get('landscape', '?')}: σ* located "
                 f"({located.attrs.get('refine_steps', '?')}-step refinement)", fontsize=10)
    path = pathlib.Path(path)
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return path


def _cpu_has_avx512() -> bool:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return "avx512f" in line.split()
    except OSError:
        pass
    return False


def _configure_xla_cpu() -> None:
    """Set XLA:CPU flags for sweeps, if JAX is not up yet and the user has not set them.

    * Every CPU core becomes a JAX device, so chunks shard over cores.
    * On CPUs with AVX-512, loops are vectorised 512 bits wide: XLA's default is 256, while
      numpy's own loops use AVX-512 there. The sweep's results are bit-identical either way
      (tests/test_sweep.py checks all 9 metrics); on the dev box (AVX-512, 2 cores) the σ*
      sweep went from 1.16e10 to 1.72e10 point-steps/s (`dynsim bench`: 1.83e10).

    Python API users who want the same set ``XLA_FLAGS`` before importing JAX.
    """
    flags = os.environ.get("XLA_FLAGS", "")
    try:
        from jax._src import xla_bridge

        if xla_bridge.backends_are_initialized():
            return
    except Exception:  # pragma: no cover - private API moved
        return
    add = []
    n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if n > 1 and "xla_force_host_platform_device_count" not in flags:
        add.append(f"--xla_force_host_platform_device_count={n}")
    if "xla_cpu_prefer_vector_width" not in flags and _cpu_has_avx512():
        add.append("--xla_cpu_prefer_vector_width=512")
    if add:
        os.environ["XLA_FLAGS"] = " ".join([flags, *add]).strip()


def cli(args) -> int:
    """``dynsim sweep CONFIG.toml --out DIR [--set k=v] [--chunk-size N] [--no-progress]``
    or ``dynsim sweep --resume DIR``."""
    _configure_xla_cpu()
    progress = not getattr(args, "no_progress", False)
    if args.resume:
        if args.config:
            raise ValueError("give either CONFIG or --resume DIR, not both")
        if args.set:
            raise ValueError("--set cannot change a sweep being resumed")
        out = pathlib.Path(args.resume)
        if not (out / _CONFIG).exists():
            raise FileNotFoundError(f"--resume {out}: no sweep there ({_CONFIG} missing)")
        stored = _read_config(out)
        if args.chunk_size is not None and args.chunk_size != stored["sweep"].get("chunk_size"):
            raise ValueError(
                f"--chunk-size {args.chunk_size}: the stored sweep uses chunk_size="
                f"{stored['sweep'].get('chunk_size')} (fixed when it was started)"
            )
        cfg = stored.get("source") or _config_from_stored(stored)
        ds, located = run_config(cfg, out, chunk_size=stored["sweep"].get("chunk_size"),
                                 progress=progress, resume_only=True)
    else:
        if not args.config:
            raise ValueError("give a CONFIG.toml (or --resume DIR)")
        if not args.out:
            raise ValueError("--out DIR is required")
        cfg, text = load_config(args.config, args.set)
        out = pathlib.Path(args.out)
        ds, located = run_config(cfg, out, chunk_size=args.chunk_size, progress=progress, source_text=text)
    n = int(np.prod([ds.sizes[d] for d in ds.dims]))
    state = "complete" if ds.attrs.get("complete", True) else "INCOMPLETE"
    print(f"sweep: {n:,} points x {ds.attrs['steps']} steps, {state} -> {out}")
    if located is not None:
        print(f"locate: {located.rate_star.size if 'rate_star' in located else located.sigma_star.size} "
              f"points -> {out / 'locate.csv'}")
    return 0


def _config_from_stored(stored: Mapping) -> dict:
    s = stored["sweep"]
    return {
        "optimizer": s["optimizer"], "landscape": s["landscape"], "landscape_params": s["landscape_params"],
        "grid": {**s["grid"], **s["fixed"], **s["static"]}, "steps": s["steps"], "metrics": s["metrics"],
        "theta0": s["theta0"], "dtype": s["dtype"], "seed": s["seed"], "options": s["options"],
        "chunk_size": s["chunk_size"],
    }


