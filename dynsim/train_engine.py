r"""Training sweeps on the sweep engine: chunks of models, sharded, stored, resumable.

A training sweep is a grid ``(*hyperparameter axes, seed)`` of *models*. It is cut into
chunks exactly as a landscape sweep is (:mod:`dynsim.engine.layout`: rectangular blocks of
the grid, so each chunk is one zarr region), each chunk's models are split over the local
devices along a 1-D ``Mesh`` (axis ``"models"``; the data are replicated on each device, or
streamed to it: :mod:`dynsim.train_stream`), and each chunk's
curves and per-model summaries are written to the store (:mod:`dynsim.engine.store`) as
soon as it finishes, then logged. A sweep killed at any moment resumes where it stopped
(no chunk lost, none repeated) and gives the same store as an uninterrupted run, bit for
bit, except ``wall_time``, which records this run's clock. ``jax.distributed`` runs use the
recipe of :mod:`dynsim.engine.runner` (``chunks=slice(process_index, None, process_count)``)
and its directory locks.

What is trained is the caller's business (:func:`dynsim.train`): this module only needs a
:class:`ModelJob`, whose ``run_chunk`` trains a contiguous range of models.
"""
from __future__ import annotations

import dataclasses
import json
import pathlib
import sys
import time
from typing import Callable, Mapping

import numpy as np

from dynsim.engine import layout as _layout
from dynsim.engine import store as _store
from dynsim.engine.batch import local_devices

__all__ = ["ModelJob", "run_models", "model_sharding"]


@dataclasses.dataclass
class ModelJob:
    """A training sweep as the engine sees it.

    Attributes:
      config: canonical JSON-serialisable description (``kind = "train"``); compared on resume.
      grid_dims: the model grid's dims, ``seed`` last.
      shape: their sizes.
      coords: ``name -> (dims, values)`` for every coordinate (grid, time, eigenvalue index…).
      variables: what is stored per model (:class:`dynsim.engine.store.Variable`, grid dims first).
      run_chunk: ``run_chunk(start, n_valid, n_padded, sharding, tick) -> {variable: (n_valid, …)}``
        trains models ``start … start+n_valid−1`` (flat C order over ``shape``), padded to
        ``n_padded`` models laid out by ``sharding``; ``tick(fraction)`` reports progress.
      steps: optimizer steps per model (for the model-steps/s of the progress bar).
      attrs: provenance attributes of the result.
      chunk_size: models per chunk.
    """

    config: dict
    grid_dims: list[str]
    shape: tuple[int, ...]
    coords: Mapping[str, tuple[tuple[str, ...], np.ndarray]]
    variables: list
    run_chunk: Callable
    steps: int
    attrs: dict
    chunk_size: int

    @property
    def n_models(self) -> int:
        return int(np.prod(self.shape))


def model_sharding(n_devices: int):
    """``NamedSharding`` of a leading model axis over the first ``n_devices`` local devices."""
    from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

    mesh = Mesh(np.array(local_devices()[:n_devices]), ("models",))
    return NamedSharding(mesh, P("models"))


def _layout_for(job: ModelJob, n_devices: int) -> _layout.Layout:
    # one block per device (a chunk is one vmapped program), padding only to the device count
    return _layout.make_layout(job.shape, job.chunk_size, n_devices, 1 << 62, align=1)


def run_models(job: ModelJob, *, out=None, devices: int | None = None, chunks: slice | None = None,
               progress: bool = True, stop_after: int | None = None, resume_only: bool = False,
               source: Mapping | None = None, source_text: str | None = None):
    """Run (or resume) a training sweep; return its ``xarray.Dataset`` (``attrs["complete"]``).

    ``out`` is locked while written (:func:`dynsim.engine.store.writing`); errors as
    :func:`dynsim.engine.runner.run_plan`.
    """
    all_devs = local_devices()
    n_dev = len(all_devs) if devices is None else int(devices)
    if not 1 <= n_dev <= len(all_devs):
        raise ValueError(f"devices={devices} must be between 1 and {len(all_devs)}")
    layout = _layout_for(job, n_dev)
    layout_meta = {"axis": layout.axis, "block": layout.block, "n_chunks": layout.n_chunks}
    out = None if out is None else pathlib.Path(out)
    if out is None:
        return _run_models_locked(job, layout, layout_meta, n_dev, out=None, chunks=chunks, progress=progress,
                                  stop_after=stop_after, resume_only=resume_only, source=source,
                                  source_text=source_text)
    from dynsim.engine.runner import lock_key, writing_store

    if resume_only and not (out / _store.CONFIG).exists():
        _store.prepare(out, job.config, layout_meta, resume_only=True)  # raises, saying what is there
    with writing_store(out, lock_key(chunks, layout.n_chunks), layout.n_chunks):
        return _run_models_locked(job, layout, layout_meta, n_dev, out=out, chunks=chunks, progress=progress,
                                  stop_after=stop_after, resume_only=resume_only, source=source,
                                  source_text=source_text)


def _run_models_locked(job, layout, layout_meta, n_dev, *, out, chunks, progress, stop_after, resume_only, source,
                       source_text):
    import jax
    import xarray as xr

    from dynsim.engine.runner import create_or_check

    done: set[int] = set()
    if out is not None:
        if (out / _store.CONFIG).exists():
            stored = _store.read_config(out)
            kind = stored.get("sweep", {}).get("kind", "sweep")
            if kind != "train":
                raise ValueError(f"out={str(out)!r} holds a landscape sweep, not a training sweep; choose another "
                                 "directory. Nothing was changed.")

        def check():
            g = _store.open_group(out)
            for v in job.variables:
                if v.name not in g:
                    raise _store.CorruptStoreError(f"result store {out} is corrupt: variable {v.name!r} is missing")
            found = _store.read_done(out, layout.n_chunks)
            _store.check_chunks(out, g, [v.name for v in job.variables], len(found))
            return found

        def create():
            meta = {"sweep": job.config, "layout": layout_meta}
            if source is not None:
                meta["source"] = json.loads(json.dumps(source, default=str))
            _store.create(out, job.coords, job.grid_dims, job.variables, layout.zarr_chunks(), job.attrs, meta)

        done = create_or_check(out, layout.n_chunks, lambda: _store.prepare(
            out, job.config, layout_meta, resume_only=resume_only, source_text=source_text), check, create)
        write = _store.Writer(out, [v.name for v in job.variables],
                              jax.process_index() if jax.process_count() > 1 else None, layout.n_chunks)
    else:
        sizes = {k: len(v) for k, (d, v) in job.coords.items() if len(d) == 1 and d[0] == k}
        results = {v.name: np.full(tuple(sizes[d] for d in v.dims), v.fill, dtype=v.dtype) for v in job.variables}

        def write(i, region, values):
            rshape = tuple(s.stop - s.start for s in region)
            for k, val in values.items():
                val = np.asarray(val)
                results[k][region] = val.reshape(rshape + val.shape[1:])

    todo = [i for i in range(layout.n_chunks) if i not in done]
    if chunks is not None:
        keep = set(range(layout.n_chunks)[chunks])
        todo = [i for i in todo if i in keep]
    sharding = model_sharding(n_dev)
    bar = None
    if progress and todo:
        from tqdm.auto import tqdm

        bar = tqdm(total=job.n_models, initial=sum(layout.chunk(i)[1] for i in done), unit="model",
                   desc=f"train {job.config.get('optimizer', '')} x{job.n_models}", file=sys.stderr,
                   dynamic_ncols=True, bar_format="{l_bar}{bar}| {n:.1f}/{total} [{elapsed}<{remaining}{postfix}]")
    from dynsim.engine.execute import ProgressLog

    plog = None if bar is not None or not todo else ProgressLog(
        f"train {job.config.get('optimizer', '')}", job.n_models, sum(layout.chunk(i)[1] for i in done),
        layout.n_chunks, layout.n_chunks - len(todo), "models")
    t0, steps_done, n_run = time.perf_counter(), 0.0, 0
    try:
        for i in todo:
            start, n_valid, region = layout.chunk(i)

            def tick(fraction, n_valid=n_valid):
                nonlocal steps_done
                steps_done += fraction * n_valid * job.steps
                if bar is not None:
                    bar.update(fraction * n_valid)
                    bar.set_postfix_str(f"{steps_done / max(time.perf_counter() - t0, 1e-9):.3g} model-steps/s",
                                        refresh=False)

            values = job.run_chunk(start, n_valid, layout.padded, sharding, tick)
            write(i, region, values)
            n_run += 1
            if plog is not None:
                plog.update(n_valid)
            if stop_after is not None and n_run >= stop_after:
                break
    finally:
        if bar is not None:
            bar.close()
        if out is not None:
            write.close()
    if out is not None:
        done_now = _store.read_done(out, layout.n_chunks)
        _store.check_chunks(out, _store.open_group(out), [v.name for v in job.variables], len(done_now))
        return _store.open_result(out).load()
    ds = xr.Dataset({v.name: (v.dims, results[v.name], dict(v.attrs)) for v in job.variables},
                    coords={k: (d, np.asarray(val)) for k, (d, val) in job.coords.items()}, attrs=dict(job.attrs))
    ds.attrs["complete"] = True
    return ds
