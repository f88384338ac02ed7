r"""Training configs: a sweep config with a ``[problem]`` table (:func:`run_config`, :func:`estimate_config`).

``optimizer`` and ``[grid]`` are as in landscape configs (any optax factory by import path);
``[problem]`` holds :data:`PROBLEM_KEYS`: the model and dataset, the run length, what to
record, ``hessian = {every = N, k = 1, iters = 20, at = "lookahead"}`` (a
:class:`dynsim.hessian.Hessian`; configs written before it with ``hessian_every``,
``hessian_k``, ``hessian_iters``, ``hessian_at`` are read the same) and the placement keys
``memory_fraction``, ``data_placement``, ``eval_batch`` (a :class:`~dynsim.training.placement.Placement`).
"""
from __future__ import annotations

import json
import pathlib
import time
from typing import Mapping

import numpy as np

from dynsim.hessian import Hessian
from dynsim.training import job as _job
from dynsim.training import problem as _problem
from dynsim.training.placement import Placement

__all__ = ["PROBLEM_KEYS", "run_config", "estimate_config"]

#: Keys of a training config's ``[problem]`` table.
PROBLEM_KEYS = {"model", "dataset", "steps", "epochs", "batch_size", "seeds", "metrics_every", "eval_on",
                "train_subset", "test_subset", "eval_batch", "dtype", "memory_fraction", "data_placement",
                "hessian", "hessian_every", "hessian_k", "hessian_iters", "hessian_at", "thresholds"}
#: ``[problem]`` keys of the :class:`Placement` (config name -> field).
_PLACEMENT_KEYS = {"memory_fraction": "memory_fraction", "data_placement": "data", "eval_batch": "eval_batch"}
#: The flat Hessian keys of configs written before ``hessian = {...}`` (config name -> field).
_OLD_HESSIAN_KEYS = {"hessian_every": "every", "hessian_k": "k", "hessian_iters": "iters", "hessian_at": "at"}


def estimate_config(cfg: Mapping, *, chunk_size=None) -> dict:
    """``dynsim sweep --dry-run`` of a training config: the plan and a time from one calibration chunk.

    The first chunk runs, at full length, in a temporary directory that is then removed (nothing
    is written where the sweep would go); its ``wall_time`` (compile excluded) times a chunk, the
    rest of the call is data loading and compiling, paid once. Returns ``models``, ``chunks``,
    ``store_bytes``, ``seconds`` (estimated total) and ``lines`` (printable).
    """
    import shutil
    import tempfile

    from dynsim.engine.runner import human_bytes, human_seconds

    tmp = pathlib.Path(tempfile.mkdtemp(prefix="dynsim-dry-run-"))
    try:
        t0 = time.perf_counter()
        ds = run_config(cfg, tmp / "calibration", chunk_size=chunk_size, progress=False, stop_after=1)
        first = time.perf_counter() - t0
        meta = json.loads((tmp / "calibration" / "config.json").read_text())
        chunk_s = float(np.nanmax(ds.wall_time.values))
        size, steps = int(ds.nbytes), int(np.max(ds["step"].values))
        dims = {d: n for d, n in ds.sizes.items() if d in ds.diverged.dims}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    n_chunks, per_chunk = int(meta["layout"]["n_chunks"]), int(meta["sweep"]["chunk_size"])
    models = int(np.prod(list(dims.values())))
    seconds = (first - chunk_s) + n_chunks * chunk_s
    lines = [
        f"models: {models:,} ({' x '.join(f'{n:,}' for n in dims.values())}: {', '.join(dims)})",
        f"steps: {steps:,}",
        f"chunks: {n_chunks:,} of {per_chunk:,} models",
        f"store: {human_bytes(size)} uncompressed ({len(ds.data_vars)} variables)",
        f"calibration: one chunk in {chunk_s:.3g} s; data, set-up and compile {first - chunk_s:.3g} s",
        f"estimated time: {human_seconds(seconds)}",
    ]
    return {"models": models, "chunks": n_chunks, "store_bytes": size, "seconds": seconds, "lines": lines}


def run_config(cfg: Mapping, out=None, *, chunk_size=None, progress=True, source_text=None, resume_only=False,
               stop_after=None):
    """Run a training config (a sweep config with a ``[problem]`` table); returns the dataset.

    ``[problem]`` names the model (a :data:`dynsim.models.MODELS` name or an import path),
    the dataset (a :func:`dynsim.data.load` name or an import path), ``steps`` (full batch)
    or ``batch_size`` and ``epochs``, ``seeds`` and what to record (:data:`PROBLEM_KEYS`).
    ``stop_after``, ``resume_only`` and ``source_text`` are the CLI's options
    (:func:`dynsim.engine.runner.run_job`).
    """
    from dynsim.engine.config import expand_axis

    problem = dict(cfg["problem"])
    bad = set(problem) - PROBLEM_KEYS
    if bad:
        raise ValueError(f"[problem]: unknown key(s) {', '.join(sorted(bad))}; "
                         f"expected {', '.join(sorted(PROBLEM_KEYS))}")
    for need in ("model", "dataset"):
        if need not in problem:
            raise ValueError(f"[problem]: missing {need!r}")
    grid = {k: expand_axis(k, v) for k, v in cfg["grid"].items()}
    model, dataset = problem.pop("model"), problem.pop("dataset")
    if isinstance(model, str) and ":" not in model:
        from dynsim import models

        if model not in models.MODELS:
            raise ValueError(f"[problem] model={model!r} is unknown; choose one of {', '.join(models.MODELS)} "
                             "or give an import path 'package.module:function'")
    cs = chunk_size if chunk_size is not None else cfg.get("chunk_size")
    placement = Placement(chunk_size=cs, **{f: problem.pop(k) for k, f in _PLACEMENT_KEYS.items() if k in problem})
    resolved = _problem.resolve(cfg["optimizer"], model, dataset, grid, eval_batch=placement.eval_batch,
                                hessian=_hessian_of(problem), **problem)
    return _job.run(resolved, placement, out=out, progress=progress, stop_after=stop_after, source=cfg,
                    source_text=source_text, resume_only=resume_only)


def _hessian_of(problem: dict) -> Hessian | None:
    """Pops the Hessian keys of ``[problem]``: a ``hessian`` table, or the older flat keys."""
    old = {f: problem.pop(k) for k, f in _OLD_HESSIAN_KEYS.items() if k in problem}
    table = problem.pop("hessian", None)
    if table is not None and old:
        raise ValueError(f"[problem]: give hessian = {{every = ...}} or the older {sorted(old)} keys, not both")
    if table is None and not old.get("every"):  # hessian_every = 0 meant off
        return None
    if table is not None and not isinstance(table, Mapping):
        raise ValueError(f"[problem] hessian={table!r} must be a table {{every = N, k = 1, iters = 20, at = ...}}")
    return Hessian(**(table if table is not None else old))
