r"""A training sweep as the engine runs it: :func:`make_job` turns a resolved
:class:`dynsim.training.problem.Problem` into a :class:`dynsim.engine.runner.Job`; :func:`run`
places it, runs it and returns the result.

A training sweep is a grid ``(*hyperparameter axes, seed)`` of *models*. It is cut into
chunks exactly as a landscape sweep is (:mod:`dynsim.engine.layout`: rectangular blocks of
the grid, so each chunk is one zarr region), each chunk's models are split over the local
devices along a 1-D ``Mesh`` (axis ``"models"``), trained by one of the step loops
(:mod:`~dynsim.training.device`, :mod:`~dynsim.training.host`, :mod:`~dynsim.training.stream`),
and written by the engine's runner (:func:`dynsim.engine.runner.run_job`): stored as soon as
it finishes, resumable after any kill (bit for bit, except ``wall_time``), split over
``jax.distributed`` processes like landscape sweeps.

The result has ONE time dimension, ``step`` (step 0 first, then one record every
``metrics_every`` steps), with ``epoch`` as a coordinate along it for minibatch runs.
"""
from __future__ import annotations

import json
import pathlib

import jax
import numpy as np

from dynsim.engine import layout as _layout
from dynsim.engine import store as _store
from dynsim.engine.batch import local_devices
from dynsim.engine.execute import Progress, write_in_order
from dynsim.engine.plan import jsonable
from dynsim.engine.runner import Job, check_devices, run_job
from dynsim.engine.store import Variable
from dynsim.training import device, host, stream
from dynsim.training.kernel import initial_carry, initial_params
from dynsim.training.placement import Placed, Placement, place
from dynsim.training.problem import Problem, data_digest, model_digest, optimizer_digest
from dynsim.training.spec import Chunk, record_names
from dynsim.training.thresholds import first_reach

__all__ = ["run", "make_job", "ChunkRunner", "model_sharding", "check_stored_layout", "LOOPS"]

#: The step loops by name, one signature each: ``run_chunk(spec, chunk, tick) -> ChunkResult``.
LOOPS = {"device": device.run_chunk, "host": host.run_chunk, "stream": stream.run_chunk}


def model_sharding(n_devices: int):
    """``NamedSharding`` of a leading model axis over the first ``n_devices`` local devices."""
    from jax.sharding import Mesh, NamedSharding
    from jax.sharding import PartitionSpec as P

    mesh = Mesh(np.array(local_devices()[:n_devices]), ("models",))
    return NamedSharding(mesh, P("models"))


def check_stored_layout(out) -> None:
    """Refuse to resume a store written with the old ``epoch`` time dimension, saying what to do."""
    out = pathlib.Path(out)
    if not (out / _store.CONFIG).exists():
        return
    meta = _store.read_config(out)
    if meta.get("sweep", {}).get("kind") == "train" and any("epoch" in d for d in meta.get("variables", {}).values()):
        raise ValueError(f"out={str(out)!r} holds a training sweep written by an older dynsim (time dimension "
                         "'epoch', epochs_to_* variables). dynsim.open_result reads it in today's layout (dimension "
                         "'step' with an 'epoch' coordinate, steps_to_*); to continue it, run again into a new "
                         "directory. Nothing was changed.")


def run(problem: Problem, placement: Placement, *, out=None, chunks=None, progress=True, stop_after=None,
        resume_only=False, source=None, source_text=None):
    """Place ``problem`` (:func:`dynsim.training.placement.place`), run it through the engine's runner
    (:func:`dynsim.engine.runner.run_job`; ``stop_after``, ``resume_only``, ``source`` and
    ``source_text`` as there: the CLI's and the configs' options) and return the ``xarray.Dataset``."""
    placed = place(placement, problem.spec, problem.host_data, problem.dataset_name, problem.data_bytes,
                   problem.n_models, len(problem.seeds))
    n_dev = placement.devices
    if n_dev is None:  # all local devices, but never more than models per chunk (no padding to the count)
        n_dev = min(len(local_devices()), placed.chunk_size)
    job = make_job(problem, placed, check_devices(n_dev), problem.spec.model.name)
    if out is not None:
        check_stored_layout(out)
    ds = run_job(job, out=out, chunks=chunks, progress=progress, stop_after=stop_after, resume_only=resume_only,
                 source=source, source_text=source_text)
    assert isinstance(job.run, ChunkRunner)  # make_job's runner
    ds.attrs["compile_seconds"] = job.run.compile_seconds
    ds.attrs["n_chunks"] = job.layout.n_chunks
    return ds


def make_job(problem: Problem, placed: Placed, n_devices: int, model_name: str) -> Job:
    """The engine job of ``problem``: variables, coordinates, config, attributes and the chunk runner."""
    grid = problem.grid
    grid_dims = [*grid.dims, "seed"]
    shape = grid.shape + (len(problem.seeds),)
    variables, coords = _variables_and_coords(problem, grid_dims)
    # one block per device (a chunk is one vmapped program), padding only to the device count
    layout = _layout.make_layout(shape, placed.chunk_size, n_devices, 1 << 62, align=1)
    config = _config(problem, placed, model_name)
    return Job(kind="train", config=config, layout=layout, grid_dims=grid_dims, coords=coords, variables=variables,
               attrs=_attrs(problem, placed, model_name, config), run=ChunkRunner(problem, placed, layout, n_devices))


def _variables_and_coords(problem: Problem, grid_dims):
    spec, shapes = problem.spec, record_names(problem.spec)
    np_dtype = np.dtype(spec.dtype)
    times = np.arange(problem.n_records) * spec.steps_per_block
    variables = [Variable(k, (*grid_dims, "step", *(("eig",) if k == "hessian_eigenvalues" else ())), np_dtype.str)
                 for k in shapes]
    variables.append(Variable("wall_time", (*grid_dims, "step"), "<f8",
                              attrs={"description": "seconds since the chunk started, compile excluded"}))
    variables.append(Variable("diverged", tuple(grid_dims), "bool", False))
    variables.append(Variable("diverged_at", tuple(grid_dims), "<i8", -1))
    for k in problem.thresholds:
        if k not in shapes or shapes[k] != ():
            raise ValueError(f"thresholds: {k!r} is not a recorded curve; choose from "
                             f"{', '.join(k for k, s in shapes.items() if s == ())}")
        variables.append(Variable(f"steps_to_{k}", (*grid_dims, f"{k}_threshold"), "<f8",
                                  attrs={"description": f"first step with {k} >= threshold (NaN: never)"}))
    coords = {**problem.grid.coords, "seed": (("seed",), np.array(problem.seeds)), "step": (("step",), times)}
    if not spec.full_batch:
        coords["epoch"] = (("step",), times / problem.steps_per_epoch)
    if spec.hessian is not None:
        coords["eig"] = (("eig",), np.arange(spec.hessian.k))
    for k, ts in problem.thresholds.items():
        coords[f"{k}_threshold"] = ((f"{k}_threshold",), np.array(ts))
    return variables, coords


def _config(problem: Problem, placed: Placed, model_name: str) -> dict:
    """The canonical description compared on resume (unchanged keys: older stores stay resumable)."""
    spec, grid, h = problem.spec, problem.grid, problem.spec.hessian
    xtr, _, xte, _ = problem.host_data
    config = {
        "kind": "train", "model": model_name,
        "model_digest": model_digest(spec.model, spec.input_shape, np.dtype(spec.dtype)),
        "dataset": problem.dataset_name, "data_sha256": data_digest(*problem.host_data), "n_train": len(xtr),
        "n_test": len(xte), "optimizer": spec.optimizer.name,
        "optimizer_digest": optimizer_digest(spec.optimizer, grid.points[0], grid.static),
        "grid": {d: jsonable(grid.coords[d][1]) for d in grid.dims},
        "points": jsonable(grid.points) if grid.dims == ["config"] else None,
        "fixed": grid.fixed, "static": grid.static, "seeds": problem.seeds,
        "batch_size": None if spec.full_batch else spec.batch_size,
        "steps_per_record": spec.steps_per_block, "records": problem.n_records, "eval_on": list(problem.eval_on),
        "eval_batch": spec.eval_batch, "dtype": spec.dtype,
        "hessian": None if h is None else {"every": h.every, "k": h.k, "iters": h.iters, "at": h.at},
        "thresholds": problem.thresholds, "chunk_size": placed.chunk_size,
    }
    if placed.data == "stream":
        # only when streaming: stores written before the placement option existed (replicated) stay resumable
        config["data_placement"] = placed.data
    return config


def _attrs(problem: Problem, placed: Placed, model_name: str, config: dict) -> dict:
    spec, grid, h = problem.spec, problem.grid, problem.spec.hessian
    model = spec.model
    attrs = {
        "model": model_name,
        "loss": model.loss if isinstance(model.loss, str) else getattr(model.loss, "__name__", "custom"),
        "optimizer": spec.optimizer.name, "hyperparameters": list(spec.hp_names), "fixed": str(grid.fixed),
        "dataset": problem.dataset_name, "n_train": len(problem.host_data[0]), "n_test": len(problem.host_data[2]),
        "batch_size": "full" if spec.full_batch else spec.batch_size, "steps_per_epoch": problem.steps_per_epoch,
        "metrics_every": spec.steps_per_block, "dtype": spec.dtype, "chunk_size": placed.chunk_size,
        "data_placement": placed.data, "step_loop": placed.loop, "device": str(jax.devices()[0]),
        "coordinates": "metrics at the paper's theta = rule.to_paper(params, state)",
        "grad_norm": "norm of the last gradient used (at the look-ahead point, last minibatch)",
        "config": json.dumps(config, sort_keys=True, default=str),
    }
    if h is not None:
        attrs.update({
            "hessian_every": h.every, "hessian_k": h.k, "hessian_iters": h.iters, "hessian_at": h.at,
            "hessian": ("top eigenvalues of the Hessian of the full training loss at the "
                        + ("look-ahead point (optax params)" if h.at == "lookahead" else "paper's theta")
                        + f", Lanczos with {h.iters} HVPs, every {h.every} steps"),
        })
    if placed.data == "stream":
        attrs.update({
            "stream_steps_per_transfer": placed.segment,
            "stream_slots": placed.n_slots,
            "data_transfer": (f"per call (epoch), host->device: each segment of <= {placed.segment} steps sends "
                              f"the minibatches of the chunk's <= {placed.n_slots} seeds; each record sends the "
                              f"evaluated sets in batches of {spec.eval_batch}"),
        })
    return attrs


class ChunkRunner:
    """The job's ``run(todo, write, progress, done, stop_after)`` (see :class:`dynsim.engine.runner.Job`):
    trains each chunk with its step loop (:data:`LOOPS`); ``compile_seconds`` sums the compiling."""

    def __init__(self, problem: Problem, placed: Placed, layout: _layout.Layout, n_devices: int):
        spec, grid, seeds = problem.spec, problem.grid, problem.seeds
        self.problem, self.placed, self.layout = problem, placed, layout
        np_dtype = np.dtype(spec.dtype)
        # model m = (point m // n_seeds, seed m % n_seeds): C order over (*grid dims, seed)
        self.hp_all = {k: np.array([p[k] for p in grid.points], np_dtype).repeat(len(seeds)) for k in spec.hp_names}
        self.seed_all = np.tile(np.array(seeds, np.int32), len(grid.points))
        self.seed_idx_all = np.tile(np.arange(len(seeds)), len(grid.points))
        self.params_by_seed = initial_params(spec.model, seeds, spec.input_shape, spec.dtype)
        self.rule0 = spec.build(grid.points[0])  # only for the (value-independent) state layout
        self.loop = LOOPS["stream" if placed.data == "stream" else placed.loop]
        self.sharding = model_sharding(n_devices)
        self.replicated = jax.sharding.NamedSharding(self.sharding.mesh, jax.sharding.PartitionSpec())
        self.device_data = None  # the data, replicated on every device of the mesh, once
        self.compile_seconds = 0.0

    def chunk(self, start: int, n_valid: int) -> Chunk:
        """The step loop's inputs for models ``start … start+n_valid−1``, padded with the last model."""
        problem, placed = self.problem, self.placed
        take = np.minimum(np.arange(start, start + self.layout.padded), start + n_valid - 1)
        put = lambda t: jax.device_put(t, self.sharding)  # noqa: E731
        carry = initial_carry(self.rule0, jax.tree.map(lambda a: a[self.seed_idx_all[take]], self.params_by_seed),
                              np.dtype(problem.spec.dtype))
        chunk = Chunk(carry=put(carry), hp=put({k: v[take] for k, v in self.hp_all.items()}),
                      seeds=put(self.seed_all[take]), data=None, host_data=problem.host_data, n_calls=problem.n_calls,
                      replicated=self.replicated)
        if placed.data == "stream":
            distinct = np.unique(self.seed_idx_all[take])  # the chunk's seeds: one slot of minibatches each
            return chunk._replace(slot=put(np.searchsorted(distinct, self.seed_idx_all[take]).astype(np.int32)),
                                  slot_seeds=np.array(problem.seeds)[distinct], n_slots=placed.n_slots,
                                  segment=placed.segment)
        if self.device_data is None:
            self.device_data = jax.device_put(problem.host_data, self.replicated)
        return chunk._replace(data=self.device_data)

    def train(self, start: int, n_valid: int, tick) -> dict:
        """Train one chunk; ``{variable: (n_valid, ...)}`` as the runner writes it."""
        problem, spec = self.problem, self.problem.spec
        res = self.loop(spec, self.chunk(start, n_valid), tick)
        self.compile_seconds += res.compile_seconds
        values = {k: np.concatenate([r[k] for r in res.records], axis=1)[:n_valid] for k in res.records[0]}
        values["wall_time"] = np.broadcast_to(np.array(res.wall), (n_valid, problem.n_records))
        values["diverged"] = np.asarray(res.carry["diverged"])[:n_valid]
        values["diverged_at"] = np.asarray(res.carry["diverged_at"])[:n_valid].astype(np.int64)
        times = np.arange(problem.n_records) * spec.steps_per_block
        for k, ts in problem.thresholds.items():
            values[f"steps_to_{k}"] = first_reach(values[k], times, ts)
        return values

    def __call__(self, todo, write, progress, done, stop_after) -> int:
        problem, layout = self.problem, self.layout
        steps = problem.steps
        prog = None if not todo else Progress(f"train {problem.spec.optimizer.name} x{problem.n_models}",
                                              problem.n_models * steps, done * steps, layout.n_chunks,
                                              layout.n_chunks - len(todo), "step", bar=progress)

        def results():  # the step loops tick the progress as they go: no units left per chunk
            for i in todo:
                start, n_valid, region = layout.chunk(i)
                yield i, region, 0, self.train(start, n_valid, lambda n, n_valid=n_valid: prog.update(n * n_valid))

        return write_in_order(results(), write, prog, stop_after)
