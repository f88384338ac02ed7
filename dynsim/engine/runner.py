r"""The sweep itself: plan → layout → store → chunks (:func:`sweep`).

``sweep(optimizer, landscape, grid, steps)`` runs one optimizer at every point of a
Cartesian grid of hyperparameters and returns an :class:`xarray.Dataset` with one
dimension per swept name and one variable per metric (:data:`dynsim.metrics.METRICS`,
accumulated online: no trajectory is stored). What ``optimizer`` and ``landscape`` may be
is in :mod:`dynsim.engine.problem`; the grid in :mod:`dynsim.engine.plan`; chunks and
blocks in :mod:`dynsim.engine.layout`; the program in :mod:`dynsim.engine.execute`; the
store in :mod:`dynsim.engine.store`.

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
``progress-<i>.log``; any host can ``--resume`` the remainder. Tested with two processes on
one host (``jax.distributed`` over localhost): bit-identical to a single-process run.

**Who may write a directory.** A writer holds an advisory lock on ``out``
(:func:`dynsim.engine.store.writing`; it dies with its process, so a kill leaves none). A
process running the whole sweep holds it exclusively: a second writer, of the same sweep
or another, is refused at once (:class:`~dynsim.engine.store.StoreBusyError`, naming the
holder). Processes running slices of the chunks share the directory: under
``jax.distributed`` each holds the slice lock of its process index, and independent jobs
started with ``chunks=`` hold one per slice (a second job given the *same* slice is
refused, and so is a whole-sweep writer while any slice runs). Store creation is
serialised between them, so the recipe above also works without its barrier. The file
system must support ``flock`` (local disks, NFSv4, Lustre mounted with ``flock``).
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import pathlib
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from dynsim import metrics as _metrics
from dynsim.checks import check_int
from dynsim.engine import execute as _execute
from dynsim.engine import layout as _layout
from dynsim.engine import platform as _platform
from dynsim.engine import store as _store
from dynsim.engine.batch import local_devices
from dynsim.engine.optimum import remember
from dynsim.engine.plan import Plan, jsonable, make_plan

__all__ = ["sweep", "Job", "run_job", "run_plan", "check_devices", "estimate"]


def sweep(
    optimizer: str | Callable,
    landscape: Any,
    grid: Mapping[str, Any],
    steps: int,
    metrics: Sequence[str] | None = None,
    *,
    theta0=None,
    landscape_params: Mapping[str, Any] | None = None,
    dtype: str = "float32",
    seed: int = 0,
    chunk_size: int | None = None,
    block_size: int | None = None,
    devices: int | None = None,
    out: str | pathlib.Path | None = None,
    progress: bool = True,
    chunks: slice | None = None,
    options: _metrics.MetricConfig | None = None,
):
    r"""Run ``optimizer`` on ``landscape`` at every point of ``grid``; return an ``xarray.Dataset``.

    >>> import numpy as np, dynsim
    >>> ds = dynsim.sweep("super_accelerated", "quadratic",
    ...                   {"k_eta": 0.01, "momentum": 0.9, "sigma": np.array([0.0, 9.0])},
    ...                   steps=4096, metrics=["rho"], progress=False)
    >>> [round(float(r), 3) for r in ds.rho.values]     # sqrt(0.9), and 1 - sqrt(0.01) at σ*
    [0.949, 0.9]

    Any loss and any optax optimizer run the same way (one compile for the whole grid):

    >>> import optax, jax.numpy as jnp
    >>> beale = lambda t: ((1.5 - t[0] + t[0] * t[1]) ** 2 + (2.25 - t[0] + t[0] * t[1] ** 2) ** 2
    ...                    + (2.625 - t[0] + t[0] * t[1] ** 3) ** 2)
    >>> ds = dynsim.sweep(optax.adam, beale, {"learning_rate": np.array([1e-3, 1e-2])}, 512,
    ...                   ["final_loss", "diverged"], theta0=[1.0, 1.0], progress=False)
    >>> bool(ds.final_loss[1] < ds.final_loss[0])
    True

    Args:
      optimizer: a rule name or :mod:`dynsim.optim` factory, any factory of an optax
        transformation (``optax.adam``), or an import path ``"module:function"``.
      landscape: a landscape name or :mod:`dynsim.landscapes` factory, a ``Landscape``, a
        user function returning one, a loss ``loss(theta, **params) -> scalar``, or an
        import path. Without a known minimum the distance metrics are unavailable.
      grid: ``name -> 1-D array`` (swept; one dimension each, in this order: their outer
        product) or ``name -> scalar`` (fixed); numbers only are one point. Or a list of points
        ``[{name: number}, ...]``: one dimension ``config``, each name a coordinate along it
        (:mod:`dynsim.engine.grid`, as :func:`dynsim.train` reads grids). Names are the
        optimizer's and the landscape's numeric keyword arguments, and ``k_eta`` (= kη) on the
        built-in quadratic.
      steps: steps per point.
      metrics: names from :data:`dynsim.metrics.METRICS` (default: all that apply).
      theta0: initial point (required where the landscape has no default).
      landscape_params: fixed landscape arguments (e.g. ``{"k": 2.0}``).
      dtype: ``"float32"`` (default) or ``"float64"`` (needs ``jax_enable_x64``).
      seed: recorded in the provenance (the maps are deterministic).
      chunk_size: points per chunk (default: sized from device memory, capped).
      block_size: points per vmapped scan on one device (default per platform:
        :func:`dynsim.engine.platform.default_block_size`).
      devices: number of local devices to shard over (default all).
      out: result directory (zarr store, config, progress log); ``None`` keeps it in memory.
        An existing ``out`` holding the same sweep is resumed; a different one is refused.
      progress: show a tqdm bar (points, point-steps/s, ETA).
      chunks: run only these chunk indices (multi-host; see the module docstring).
      options: the metric options, a :class:`dynsim.metrics.MetricConfig` (checkpoint
        interval ``every``, fit ``window``, ``eps``, ``renormalise``, …; default: its defaults,
        ``MetricConfig()``), e.g. ``options=MetricConfig(every=16, window=0.25)``.

    Returns:
      ``xarray.Dataset``: dims = swept names, coords = their values, variables = metrics,
      provenance in ``attrs`` (optimizer, landscape, steps, dtype, device, versions, the
      full config as JSON); ``attrs["complete"]`` tells whether every chunk ran.

    Raises:
      ValueError: bad arguments (one message naming the argument), a corrupt store, or an
        ``out`` holding a different sweep.
    """
    _platform.warn_if_unconfigured()
    plan = make_plan(optimizer, landscape, grid, steps, metrics=metrics, theta0=theta0,
                     landscape_params=landscape_params, dtype=dtype, seed=seed, chunk_size=chunk_size,
                     options=options)
    return run_plan(plan, out=out, progress=progress, devices=devices, block_size=block_size, chunks=chunks)


def _attrs(plan: Plan, n_devices: int) -> dict:
    import jax

    import dynsim

    c = plan.config
    devs = local_devices()[:n_devices]
    return {
        "rule": c["optimizer"],
        "landscape": c["landscape"],
        "landscape_params": json.dumps(c["landscape_params"], default=str),
        "steps": c["steps"],
        "dtype": c["dtype"],
        "device": f"{n_devices} x {devs[0].device_kind} ({devs[0].platform})",
        "dynsim_version": dynsim.__version__,
        "jax_version": jax.__version__,
        "seed": c["seed"],
        "theta0": json.dumps(c["theta0"]),
        "fixed": json.dumps(c["fixed"]),
        "options": json.dumps(c["options"]),
        "k_eta": "learning_rate = k_eta / k" if "k_eta" in {*c["grid"], *c["fixed"], *c.get("points", ())} else "",
        "config": json.dumps(c, sort_keys=True),
    }


def lock_key(chunks: slice | None, n_chunks: int) -> str | None:
    """The slice lock a writer of ``chunks`` holds (``None``: the whole sweep, exclusive)."""
    import jax

    if jax.process_count() > 1:
        return f"process-{jax.process_index()}"
    if chunks is None:
        return None
    r = range(n_chunks)[chunks]
    return f"chunks-{r.start}-{r.stop}-{r.step}"


@contextlib.contextmanager
def writing_store(out: pathlib.Path, key: str | None, n_chunks: int):
    """Lock ``out`` for this process and announce it (for the CLI's interrupt message)."""
    lock = _store.writing(out, key)
    try:
        lock.__enter__()
    except (_store.StoreBusyError, ValueError):
        raise
    except OSError as e:  # an unwritable parent: nothing could be created
        raise _store.write_failed(out, n_chunks, e) from None
    prev = dict(_store._LIVE)
    _store._LIVE.update(out=out, n_chunks=n_chunks)
    try:
        yield
    finally:
        _store._LIVE.clear()
        _store._LIVE.update(prev)
        lock.__exit__(None, None, None)


def create_or_check(out: pathlib.Path, n_chunks: int, prepare: Callable, check: Callable, create: Callable):
    """Prepare ``out``, then ``check()`` its store or ``create()`` one, under the creation lock.

    Returns the set of done chunks. OS errors (a read-only directory, a full disk) become
    :class:`~dynsim.engine.store.StoreWriteError`.
    """
    try:
        with _store.creating(out):
            prepare()
            if (out / _store.CONFIG).exists():
                return check()
            create()
            return set()
    except (FileNotFoundError, _store.StoreBusyError, _store.StoreWriteError):
        raise
    except OSError as e:
        raise _store.write_failed(out, n_chunks, e) from None


def _series_block_cap(plan: Plan, block: int) -> int:
    """Unrescaled runs carry their series of fit points (up to 1024 per point, dynsim.metrics):
    the default block is capped so that one block's series stays within _SERIES_BUDGET bytes."""
    per_point = _metrics.series_bytes_per_point(plan.steps, plan.options, plan.dtype, len(plan.theta0))
    if not per_point:
        return block
    return max(1024, min(block, _SERIES_BUDGET // per_point))


_SERIES_BUDGET = 256 * 2**20


@dataclasses.dataclass
class Job:
    """What :func:`run_job` runs: a landscape plan (:func:`run_plan`) or a training job
    (:mod:`dynsim.training.job`), cut into the chunks of ``layout``.

    Attributes:
      kind: ``"sweep"`` (landscape) or ``"train"``: a store of one kind is never resumed as the other.
      config: canonical JSON-serialisable description; compared on resume.
      layout: the chunks (:mod:`dynsim.engine.layout`).
      grid_dims: the grid's dims (each chunk is a rectangular region of them).
      coords: ``name -> (dims, values)`` for every coordinate.
      variables: what is stored (:class:`dynsim.engine.store.Variable`, grid dims first).
      attrs: provenance attributes of the result.
      run: ``run(todo, write, progress, done, stop_after) -> chunks run``: runs the chunks
        ``todo`` in order, calling ``write(i, region, {variable: (n_valid, ...)})`` as each
        finishes; ``done`` is the number of grid points already stored, ``progress`` whether
        to show a bar.
    """

    kind: str
    config: dict
    layout: _layout.Layout
    grid_dims: list[str]
    coords: Mapping[str, tuple[tuple[str, ...], np.ndarray]]
    variables: list
    attrs: dict
    run: Callable

    @property
    def n_points(self) -> int:
        return int(np.prod(self.layout.shape))


def check_devices(devices) -> int:
    """The number of local devices to use (default all); ValueError naming ``devices`` otherwise."""
    n_all = len(local_devices())
    if devices is None:
        return n_all
    n = check_int("devices", devices)
    if n > n_all:
        raise ValueError(f"devices={devices} must be between 1 and {n_all}")
    return n


def run_plan(plan: Plan, *, out=None, progress=True, devices=None, block_size=None, chunks=None,
             stop_after=None, source_text: str | None = None, source: Mapping | None = None,
             resume_only: bool = False):
    """Run a validated :class:`~dynsim.engine.plan.Plan` (in memory, or into/from ``out``) by :func:`run_job`."""
    n_dev = check_devices(devices)
    if block_size is None:
        block_size = _series_block_cap(plan, _platform.default_block_size())
    block_size = max(8, check_int("block_size", block_size))
    out = None if out is None else pathlib.Path(out)
    if plan.config["chunk_size"] is None:
        stored_cs = None
        if out is not None and (out / _store.CONFIG).exists():
            stored_cs = _store.read_config(out)["sweep"].get("chunk_size")
        # the resolved size is part of the config: a resume reuses the same chunks
        plan.config["chunk_size"] = stored_cs or _layout.default_chunk_size(
            plan.n_points, plan.steps, len(plan.theta0), len(plan.metrics), n_dev)
    layout = _layout.make_layout(plan.shape, plan.config["chunk_size"], n_dev, block_size)
    remember(plan)

    def run(todo, write, progress, done, stop_after):
        return _execute.run_chunks(plan, layout, n_dev, todo, write, progress=progress, done_points=done,
                                   stop_after=stop_after)

    job = Job(kind="sweep", config=plan.config, layout=layout, grid_dims=list(plan.dims),
              coords={**{d: ((d,), c) for d, c in zip(plan.dims, plan.coords)},
                      **{n: (("config",), v) for n, v in plan.points.items()}},
              variables=_store.metric_variables(plan.dims, plan.metrics, plan.dtype), attrs=_attrs(plan, n_dev),
              run=run)
    ds = run_job(job, out=out, progress=progress, chunks=chunks, stop_after=stop_after, source_text=source_text,
                 source=source, resume_only=resume_only)
    return _store.squeeze_point(ds, plan.config)


def run_job(job: Job, *, out=None, progress=True, chunks=None, stop_after=None, source_text: str | None = None,
            source: Mapping | None = None, resume_only: bool = False):
    """Run (or resume) ``job`` in memory or into ``out``; return its ``xarray.Dataset`` (``attrs["complete"]``).

    Prepares or resumes the store, runs the chunks not yet done (of ``chunks``, when given),
    writes each as it finishes, and returns the result.

    Raises:
      StoreBusyError: another live process writes ``out`` (see the module docstring).
      StoreWriteError: ``out`` cannot be written (disk full, read-only): an ``OSError``
        whose message names the directory, the chunks stored and the resume command.
    """
    out = None if out is None else pathlib.Path(out)
    layout_meta = {"axis": job.layout.axis, "block": job.layout.block, "n_chunks": job.layout.n_chunks}
    n_chunks = job.layout.n_chunks
    if out is not None and resume_only and not (out / _store.CONFIG).exists():
        _store.prepare(out, job.config, layout_meta, resume_only=True)  # raises, saying what is there
    lock = contextlib.nullcontext() if out is None else writing_store(out, lock_key(chunks, n_chunks), n_chunks)
    with lock:
        write: _InMemory | _store.Writer
        if out is None:
            done, write = set(), _InMemory(job)
        else:
            done = _open_store(job, out, layout_meta, source=source, source_text=source_text,
                               resume_only=resume_only)
            import jax

            write = _store.Writer(out, [v.name for v in job.variables],
                                  jax.process_index() if jax.process_count() > 1 else None, n_chunks)
        todo = [i for i in range(n_chunks) if i not in done]
        if chunks is not None:
            keep = set(range(n_chunks)[chunks])
            todo = [i for i in todo if i in keep]
        try:
            job.run(todo, write, progress, sum(job.layout.chunk(i)[1] for i in done), stop_after)
        finally:
            write.close()
    if out is None:
        assert isinstance(write, _InMemory)  # set above for out=None
        return write.dataset()
    names = [v.name for v in job.variables]
    _store.check_chunks(out, _store.open_group(out), names, len(_store.read_done(out, n_chunks)))
    ds = _store.open_result(out)
    return ds.load() if job.n_points <= (1 << 24) else ds


_KINDS = {"sweep": "a landscape sweep", "train": "a training sweep"}


def _open_store(job: Job, out: pathlib.Path, layout_meta, *, source, source_text, resume_only) -> set[int]:
    """Create ``out``'s store or check the one there; returns the chunks already done."""
    if (out / _store.CONFIG).exists():
        kind = _store.read_config(out).get("sweep", {}).get("kind", "sweep")
        if kind != job.kind:
            raise ValueError(f"out={str(out)!r} holds {_KINDS.get(kind, kind)}, not {_KINDS[job.kind]}; choose "
                             "another directory. Nothing was changed.")
    sizes = {k: len(v) for k, (d, v) in job.coords.items() if len(d) == 1 and d[0] == k}

    def check():
        g = _store.open_group(out)
        for v in job.variables:
            if v.name not in g or tuple(g[v.name].shape) != tuple(sizes[d] for d in v.dims):
                raise _store.CorruptStoreError(f"result store {out} is corrupt: variable {v.name!r} is missing "
                                               "or has the wrong shape")
        found = _store.read_done(out, job.layout.n_chunks)
        _store.check_chunks(out, g, [v.name for v in job.variables], len(found))
        return found

    def create():
        meta = {"sweep": job.config, "layout": layout_meta}
        if source is not None:  # the TOML config as parsed (overrides applied): --resume rebuilds from it
            meta["source"] = json.loads(json.dumps(jsonable(source), default=str))
        _store.create(out, job.coords, job.grid_dims, job.variables, job.layout.zarr_chunks(), job.attrs, meta)

    return create_or_check(out, job.layout.n_chunks, lambda: _store.prepare(
        out, job.config, layout_meta, resume_only=resume_only, source_text=source_text), check, create)


class _InMemory:
    """The runner's writer without a store: chunks fill arrays, :meth:`dataset` wraps them."""

    def __init__(self, job: Job):
        self.job = job
        sizes = {k: len(v) for k, (d, v) in job.coords.items() if len(d) == 1 and d[0] == k}
        self.results = {v.name: np.full(tuple(sizes[d] for d in v.dims), v.fill, dtype=v.dtype)
                        for v in job.variables}

    def __call__(self, i, region, values):
        rshape = tuple(s.stop - s.start for s in region)
        for k, val in values.items():
            val = np.asarray(val)
            self.results[k][region] = val.reshape(rshape + val.shape[1:])

    def close(self):
        pass

    def dataset(self):
        import xarray as xr

        job = self.job
        ds = xr.Dataset({v.name: (v.dims, self.results[v.name], dict(v.attrs)) for v in job.variables},
                        coords={k: (d, np.asarray(val)) for k, (d, val) in job.coords.items()},
                        attrs=dict(job.attrs))
        ds.attrs["complete"] = True
        return ds


def store_bytes(plan: Plan) -> int:
    """Uncompressed size of the store's variables (an upper bound: zarr compresses)."""
    per_point = sum(1 if m == "diverged" else np.dtype(plan.dtype).itemsize for m in plan.metrics)
    return plan.n_points * per_point


def estimate(plan: Plan, *, devices=None, block_size=None, calibration_steps: int = 1024) -> dict:
    """The plan's size and an estimated run time, from a short calibration run (nothing written).

    One chunk of one block per device runs ``min(steps, calibration_steps)`` steps twice:
    the first run's extra time is the compile, the second gives point-steps/s.

    Returns:
      ``points``, ``steps``, ``chunks``, ``chunk_size``, ``store_bytes``, ``compile_s``,
      ``point_steps_per_s``, ``seconds`` (estimated total) and ``lines`` (printable).
    """
    import dataclasses
    import time

    n_dev = check_devices(devices)
    block = max(8, int(block_size or _series_block_cap(plan, _platform.default_block_size())))
    cs = plan.config["chunk_size"] or _layout.default_chunk_size(plan.n_points, plan.steps, len(plan.theta0),
                                                                 len(plan.metrics), n_dev)
    layout = _layout.make_layout(plan.shape, cs, n_dev, block)
    assert plan.options.every is not None  # plan.options is resolved (make_plan)
    every = int(plan.options.every)
    cal_steps = min(plan.steps, max(int(calibration_steps), 3 * every))
    cal_steps -= cal_steps % every if cal_steps > every else 0
    cal = dataclasses.replace(plan, config={**plan.config, "steps": cal_steps})
    cal_layout = _layout.make_layout(plan.shape, min(cs, n_dev * block), n_dev, block)
    n_cal = cal_layout.chunk(0)[1]
    times = []
    for _ in range(2):
        t = time.perf_counter()
        _execute.run_chunks(cal, cal_layout, n_dev, [0], lambda i, r, v: None, progress=False)
        times.append(time.perf_counter() - t)
    rate = n_cal * cal_steps / max(times[1], 1e-9)
    compile_s = max(times[0] - times[1], 0.0)
    seconds = compile_s + plan.n_points * plan.steps / rate
    size = store_bytes(plan)
    lines = [
        f"points: {plan.n_points:,} ({' x '.join(f'{n:,}' for n in plan.shape)}: {', '.join(plan.dims)})",
        f"steps: {plan.steps:,}",
        f"chunks: {layout.n_chunks:,} of {cs:,} points",
        f"store: {human_bytes(size)} uncompressed ({len(plan.metrics)} metrics)",
        f"calibration: {n_cal:,} points x {cal_steps:,} steps in {times[1]:.3g} s "
        f"({rate:.3g} point-steps/s on {n_dev} device(s)), compile {compile_s:.3g} s",
        f"estimated time: {human_seconds(seconds)}",
    ]
    return {"points": plan.n_points, "steps": plan.steps, "chunks": layout.n_chunks, "chunk_size": cs,
            "store_bytes": size, "compile_s": compile_s, "point_steps_per_s": rate, "seconds": seconds,
            "lines": lines}


def human_bytes(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB", "PB"):
        if n < 1000 or unit == "PB":
            return f"{n:.3g} {unit}"
        n /= 1000
    return f"{n:.3g} PB"


def human_seconds(s: float) -> str:
    if s < 120:
        return f"{s:.3g} s"
    if s < 2 * 3600:
        return f"{s / 60:.3g} min"
    if s < 3 * 86400:
        return f"{s / 3600:.3g} h"
    return f"{s / 86400:.3g} days"
