r"""The compiled programs: a sharded chunk kernel (:func:`chunk_kernel`) and a point kernel.

A chunk is sharded over the local devices with ``jax.shard_map`` on a 1-D ``Mesh`` (axis
``"points"``). Each device computes its points' coordinates from the chunk offset (no
host→device transfer of the grid) and runs them in blocks (``lax.map`` over blocks of one
vmapped :func:`dynsim.metrics.run_metrics` each). Padding repeats the last valid point and
is cut on the host. Every hyperparameter is an argument: one compile serves every chunk
and every value; programs are cached per problem, shapes and options.

:func:`run_chunks` dispatches chunk ``i+1`` before it waits for chunk ``i``, so writing
overlaps computing. Donation does not apply: a chunk's inputs are the grid coordinates
(reused by every chunk) and two scalars; the state lives in the scan carry.
"""
from __future__ import annotations

import collections
import json
import logging
import sys
import time
from typing import Callable, Mapping

import numpy as np

from dynsim import metrics as _metrics
from dynsim.engine.batch import local_devices
from dynsim.engine.layout import Layout
from dynsim.engine.plan import Plan

__all__ = ["chunk_kernel", "run_chunks", "run_points", "trace_count", "count_trace", "cached", "compiled",
           "clear_cache", "Progress", "ProgressLog", "write_in_order"]

_TRACES: collections.Counter = collections.Counter()
#: Seconds between progress lines when there is no progress bar (``logging``, logger ``dynsim.sweep``).
LOG_EVERY = 60.0
_log = logging.getLogger("dynsim.sweep")


class ProgressLog:
    """Without a bar: a line per batch of chunks, at most every :data:`LOG_EVERY` seconds, with the ETA."""

    def __init__(self, what: str, total: int, done: int, n_chunks: int, chunks_done: int, unit: str):
        self.what, self.total, self.unit = what, total, unit
        self.done: float = done
        self.n_chunks, self.chunks = n_chunks, chunks_done
        self.t0 = self.last = time.perf_counter()
        self.start = done

    def update(self, n: float, chunks: int = 1) -> None:
        self.done += n
        self.chunks += chunks
        now = time.perf_counter()
        if now - self.last < LOG_EVERY:  # a short run logs nothing
            return
        self.last = now
        rate = (self.done - self.start) / max(now - self.t0, 1e-9)
        eta = max(self.total - self.done, 0) / rate if rate > 0 else float("inf")
        _log.info(f"{self.what}: {self.chunks:,}/{self.n_chunks:,} chunks, {self.done:,.0f}/{self.total:,} "
                  f"{self.unit}, {rate:.3g} {self.unit}/s, ETA {_clock(eta)}")


class Progress:
    """Progress of a run in whole units (points, model-steps): a tqdm bar, or else :class:`ProgressLog` lines.

    ``update(n)`` adds ``n`` units, ``chunk_done()`` closes a chunk. With ``steps_per_unit``
    the bar also shows unit-steps/s measured from the end of the first chunk (compilation
    excluded). Counts are integers that never pass ``total``, so the bar's ETA is never negative.
    """

    def __init__(self, what: str, total: int, done: int, n_chunks: int, chunks_done: int, unit: str, *,
                 bar: bool, steps_per_unit: int | None = None):
        self.bar = self.log = None
        self.steps_per_unit, self.pending, self.n_chunks_run = steps_per_unit, 0, 0
        if bar:
            from tqdm.auto import tqdm

            # whole numbers while they are short; 12.3k beyond (a count, never a fraction)
            self.bar = tqdm(total=total, initial=done, unit=unit, unit_scale=total >= 10_000, desc=what,
                            file=sys.stderr, dynamic_ncols=True)
        else:
            self.log = ProgressLog(what, total, done, n_chunks, chunks_done, f"{unit}s")
        self.t_first, self.n_first = time.perf_counter(), done

    def update(self, n: int) -> None:
        self.pending += int(n)
        if self.bar is not None:
            self.bar.update(int(n))

    def chunk_done(self) -> None:
        self.n_chunks_run += 1
        if self.log is not None:
            self.log.update(self.pending)
        self.pending = 0
        if self.bar is None or self.steps_per_unit is None:
            return
        if self.n_chunks_run == 1:
            self.t_first, self.n_first = time.perf_counter(), self.bar.n
        elif self.bar.n > self.n_first:
            rate = (self.bar.n - self.n_first) * self.steps_per_unit / max(time.perf_counter() - self.t_first, 1e-9)
            self.bar.set_postfix_str(f"{rate:.3g} {self.bar.unit}-steps/s", refresh=False)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _clock(s: float) -> str:
    if s == float("inf"):
        return "unknown"
    s = int(round(s))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


_CACHE: dict = {}
#: Programs and executables kept (oldest dropped first): a process sweeping many problems stays bounded.
_CACHE_MAX = 64


def trace_count(kind: str | None = None) -> int:
    """How many programs (all, or of ``kind``) the engine has traced (= compiled) in this process.

    Every compiled program of the library counts here, the sweep kernels and the training
    programs alike (each calls :func:`count_trace` when traced).
    """
    return sum(_TRACES.values()) if kind is None else _TRACES[kind]


def count_trace(kind: str) -> None:
    """Called by a program's Python body, which runs only when JAX traces (= compiles) it."""
    _TRACES[kind] += 1


def cached(key, build):
    """``build()``, once per ``key`` in this process (the one cache of compiled programs)."""
    if key not in _CACHE:
        if len(_CACHE) >= _CACHE_MAX:
            _CACHE.pop(next(iter(_CACHE)))
        _CACHE[key] = build()
    return _CACHE[key]


def clear_cache() -> None:
    """Forget every cached program and executable (tests count compilations from scratch)."""
    _CACHE.clear()


def compiled(kind: str, fn, *args):
    """``(executable, seconds)``: ``fn`` compiled ahead of time for these argument shapes and shardings.

    Once per process (``seconds`` is 0.0 when cached), with
    :func:`dynsim.engine.platform.compiler_options` (on CPU, a scheduler that avoids an
    XLA:CPU deadlock).
    """
    import jax

    from dynsim.engine.platform import compiler_options

    def aval(a):
        dt = np.dtype(a.dtype).str if hasattr(a, "dtype") else np.asarray(a).dtype.str
        return np.shape(a), dt, str(getattr(a, "sharding", None))

    avals = jax.tree.map(aval, args)
    is_aval = lambda x: isinstance(x, tuple) and len(x) == 3 and isinstance(x[2], str)  # noqa: E731
    key = ("executable", kind, fn, jax.tree.structure(args), tuple(jax.tree.leaves(avals, is_leaf=is_aval)))
    if key in _CACHE:
        return _CACHE[key][0], 0.0
    t0 = time.perf_counter()
    exe = fn.lower(*args).compile(compiler_options())
    seconds = time.perf_counter() - t0
    cached(key, lambda: (exe, seconds))
    return exe, seconds


def _problem_key(plan: Plan):
    """Identifies the code: the user's objects themselves (held by the cache), not their names."""
    return (plan.optimizer.factory, plan.landscape.cache_key, plan.landscape.factory)


def _options(plan: Plan, **over) -> dict:
    o = {k: getattr(plan.options, k) for k in ("every", "window", "eps", "divergence_factor", "renormalise",
                                               "unroll", "pack", "fit_every", "floor_eps",
                                               "tangent_steps")}
    o.update(over)
    return o


def _hyper_values(plan: Plan, vals: dict, dtype):
    """Split per-point values into the optimizer's and the landscape's (``k_eta`` → η = kη/k)."""
    import jax.numpy as jnp

    vals = dict(vals)
    if "k_eta" in vals:
        k = vals["k"] if "k" in vals else jnp.asarray(plan.land_static.get("k", 1.0), dtype)
        vals["learning_rate"] = vals.pop("k_eta") / k
    hyper = {a: vals[a] for a in plan.rule_args if a in vals}
    land = {a: vals[a] for a in plan.land_swept if a in vals}
    return hyper, land


def _run_metrics(plan: Plan, hyper, land, th0, *, steps, metrics, **over):
    return _metrics.run_metrics(
        plan.optimizer.factory, hyper, plan.landscape.factory, land, th0, steps, metrics=metrics,
        static_hyper=plan.static_hyper, static_land=plan.land_static,
        options=_metrics.MetricConfig(**_options(plan, **over)))


def chunk_kernel(plan: Plan, layout: Layout, n_devices: int):
    """``(fn, mesh)``: ``fn(coords, fixed, theta0, start, n_valid) -> {metric: (padded,)}``."""
    spec = json.dumps({"dims": plan.dims, "shape": list(plan.shape), "fixed": sorted(plan.fixed),
                       "static": plan.static_hyper, "land_swept": list(plan.land_swept),
                       "land_static": plan.config["landscape_params"], "rule_args": list(plan.rule_args),
                       "steps": plan.steps, "metrics": list(plan.metrics), "dtype": plan.dtype,
                       "options": _options(plan), "local": layout.local, "block": layout.block_points,
                       "n_devices": n_devices, "theta_dim": len(plan.theta0), "points": sorted(plan.points)},
                      sort_keys=True, default=str)
    return cached(("chunk", _problem_key(plan), spec), lambda: _build_chunk_kernel(plan, layout, n_devices))


def _build_chunk_kernel(plan: Plan, layout: Layout, n_devices: int):
    import jax
    import jax.numpy as jnp
    from jax.sharding import Mesh
    from jax.sharding import PartitionSpec as P

    dims, shape = list(plan.dims), list(plan.shape)
    strides = [int(np.prod(shape[i + 1:])) for i in range(len(shape))]
    listed = sorted(plan.points)  # a list of points: these vary together along the one dim "config"
    fixed_names = sorted(plan.fixed)
    dtype = jnp.dtype(plan.dtype)
    local, block = layout.local, layout.block_points
    n_blocks = local // block
    mesh = Mesh(np.array(local_devices()[:n_devices]), ("points",))
    steps, metrics = plan.steps, plan.metrics

    def run_block(coords, fixed, theta0, flat):
        vals = {name: coords[d][(flat // strides[d]) % shape[d]] for d, name in enumerate(dims)}
        for j, name in enumerate(listed):  # (none for a grid of axes: the same program as before)
            vals[name] = coords[len(dims) + j][flat % shape[0]]
        vals.update({name: jnp.broadcast_to(fixed[name], flat.shape) for name in fixed_names})
        hyper, land = _hyper_values(plan, vals, dtype)
        # Materialise the per-point values: otherwise XLA may fuse the index arithmetic and
        # gathers into the per-step loop body and redo them at every step.
        hyper, land = jax.lax.optimization_barrier((hyper, land))
        th0 = jnp.broadcast_to(theta0, flat.shape + theta0.shape)
        return _run_metrics(plan, hyper, land, th0, steps=steps, metrics=metrics)

    def local_fn(coords, fixed, theta0, start, n_valid):
        count_trace("sweep")
        dev = jax.lax.axis_index("points")
        pos = jnp.arange(local, dtype=jnp.int32) + dev * local
        flat = start + jnp.minimum(pos, n_valid - 1)  # padding repeats the last valid point
        if n_blocks == 1:
            return run_block(coords, fixed, theta0, flat)
        out = jax.lax.map(lambda f: run_block(coords, fixed, theta0, f), flat.reshape(n_blocks, block))
        return {k: v.reshape(local) for k, v in out.items()}

    fn = jax.shard_map(local_fn, mesh=mesh, in_specs=(P(), P(), P(), P(), P()), out_specs=P("points"),
                       check_vma=False)
    return jax.jit(fn), mesh


def run_chunks(plan: Plan, layout: Layout, n_devices: int, todo, write: Callable, *, progress: bool = True,
               done_points: int = 0, stop_after: int | None = None) -> int:
    """Run the chunks ``todo`` in order; ``write(i, region, {metric: values})`` as each finishes.

    Returns the number of chunks run. A progress bar shows points, point-steps/s
    (measured from the end of the first chunk: compilation excluded) and the ETA; without
    it, a line with the ETA is logged per batch of chunks (:class:`ProgressLog`).
    """
    import jax
    import jax.numpy as jnp

    fn, mesh = chunk_kernel(plan, layout, n_devices)
    npdt = np.dtype(plan.dtype)
    rep = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
    per_dim = [*plan.coords, *(plan.points[n] for n in sorted(plan.points))]  # the kernel's order
    coords = jax.device_put([np.asarray(c, npdt) for c in per_dim], rep)
    fixed = jax.device_put({k: np.asarray(v, npdt) for k, v in plan.fixed.items()}, rep)
    theta0 = jax.device_put(np.asarray(plan.theta0, npdt), rep)

    def dispatch(i):
        start, n_valid, region = layout.chunk(i)
        return i, n_valid, region, fn(coords, fixed, theta0, jnp.int32(start), jnp.int32(n_valid))

    def results():
        pending = dispatch(todo[0]) if todo else None
        k = 0
        while pending is not None:
            k += 1
            nxt = dispatch(todo[k]) if k < len(todo) else None  # in flight while chunk i is written
            i, n_valid, region, res = pending
            yield i, region, n_valid, {m: np.asarray(res[m])[:n_valid] for m in plan.metrics}
            pending = nxt

    what = f"sweep {plan.optimizer.name}/{plan.landscape.name}"
    prog = None if not todo else Progress(what, plan.n_points, done_points, layout.n_chunks,
                                          layout.n_chunks - len(todo), "point", bar=progress,
                                          steps_per_unit=plan.steps)
    return write_in_order(results(), write, prog, stop_after)


def write_in_order(results, write: Callable, prog: Progress | None, stop_after: int | None) -> int:
    """Write each ``(i, region, units, values)`` of ``results`` as it comes (``write(i, region,
    values)``), count ``units`` on ``prog`` and close a chunk there; stop after ``stop_after``
    chunks. Returns the number of chunks written."""
    n_run = 0
    try:
        for i, region, units, values in results:
            write(i, region, values)
            n_run += 1
            if prog is not None:
                prog.update(units)
                prog.chunk_done()
            if stop_after is not None and n_run >= stop_after:
                break
    finally:
        if prog is not None:
            prog.close()
    return n_run


def run_points(plan: Plan, points: Mapping[str, np.ndarray], *, steps: int, window: float,
               metrics, dtype: str | None = None, tangent_steps: int | None = None) -> dict[str, np.ndarray]:
    """Metrics at arbitrary points (``name -> (n,)`` values of swept names; fixed ones added).

    Used to refine located optima: few points, possibly long runs, optionally in float64
    (inside ``jax.enable_x64``). Points are padded to a power of two (few shapes, few
    compiles) and sharded over the local devices.
    """
    import contextlib

    import jax
    import jax.numpy as jnp
    from jax.sharding import Mesh
    from jax.sharding import PartitionSpec as P

    dtype = dtype or plan.dtype
    ctx = jax.enable_x64(True) if dtype == "float64" else contextlib.nullcontext()
    names = sorted(points)
    n = len(points[names[0]])
    n_dev = len(local_devices())
    npad = max(8, 1 << (n - 1).bit_length())
    npad = -(-npad // n_dev) * n_dev
    with ctx:
        spec = json.dumps({"names": names, "npad": npad, "steps": int(steps), "window": float(window),
                           "metrics": list(metrics), "dtype": dtype, "n_dev": n_dev,
                           "rule_args": list(plan.rule_args), "land_swept": list(plan.land_swept),
                           "static": plan.static_hyper, "land_static": plan.config["landscape_params"],
                           "options": _options(plan), "tangent_steps": tangent_steps}, sort_keys=True, default=str)

        def build():
            mesh = Mesh(np.array(local_devices()), ("points",))

            def fn(vals, theta0):
                count_trace("sweep")
                hyper, land = _hyper_values(plan, vals, theta0.dtype)
                th0 = jnp.broadcast_to(theta0, (next(iter(vals.values())).shape[0],) + theta0.shape)
                over = {} if tangent_steps is None else {"tangent_steps": int(tangent_steps)}
                return _run_metrics(plan, hyper, land, th0, steps=int(steps), metrics=tuple(metrics),
                                    window=float(window), **over)

            return jax.jit(jax.shard_map(fn, mesh=mesh, in_specs=(P("points"), P()), out_specs=P("points"),
                                         check_vma=False))

        fn = cached(("points", _problem_key(plan), spec), build)
        jdt = jnp.dtype(dtype)
        vals = {}
        for k in names:
            v = np.asarray(points[k], np.float64)
            vals[k] = jnp.asarray(np.concatenate([v, np.full(npad - n, v[-1])]), jdt)
        res = fn(vals, jnp.asarray(plan.theta0, jdt))
        return {m: np.asarray(res[m])[:n] for m in metrics}
