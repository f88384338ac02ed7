r"""``dynsim bench --train``: N vmapped models against the same models one at a time (:func:`benchmark`).

Both sides run :func:`dynsim.train` in this process, compile excluded; beside them the
whole-call cost of the store and of sharding over the devices, the FLOPs of one model
step and the machine's matmul rate (:mod:`dynsim.bench.machine`). :func:`lines` is the
printed summary.
"""
from __future__ import annotations

import os
import pathlib
import time
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from dynsim.bench.machine import load_average, matmul_rate
from dynsim.checks import check_int
from dynsim.models import Model
from dynsim.training import Placement, train

__all__ = ["benchmark", "lines"]


def benchmark(n_models: int = 128, steps: int | None = None, repeats: int = 3, n_train: int | None = None,
              sequential_models: int = 4, hidden: Sequence[int] = (30,), dataset=None,
              progress: bool = False) -> dict:
    """Throughput of N vmapped 784-30-10 full-batch models vs the same models one at a time.

    Both sides use the same engine (:func:`dynsim.train`, ``super_accelerated`` with one σ per
    model, no metrics but a final evaluation on ≤1000 test images), in this process,
    compile excluded. The one-at-a-time reference times ``sequential_models`` models
    (a rate, so a subset is enough) and reports model-steps/s; medians over ``repeats``.

    Defaults: on an accelerator ``steps=20`` on all 60k MNIST images (the issue's target:
    128 models ≥ 15k model-steps/s on one H100); on a CPU ``steps=10`` on the first 6k
    images, so a run takes minutes, not hours (reported in the result).
    Data: MNIST if present, else random images of the same shape (throughput does not
    depend on pixel values).
    """
    from dynsim import data as data_mod
    from dynsim.models import nielsen_mlp

    cpu = jax.devices()[0].platform == "cpu"
    n_models = check_int("n_models", n_models)
    steps = check_int("steps", (10 if cpu else 20) if steps is None else steps)
    n_train = check_int("n_train", (6_000 if cpu else 60_000) if n_train is None else n_train)
    repeats = check_int("repeats", repeats)
    sequential_models = min(check_int("sequential_models", sequential_models), n_models)
    source = "mnist"
    if dataset is None:
        try:
            dataset = data_mod.load("mnist")
        except (data_mod.DataError, OSError):
            rng = np.random.default_rng(0)
            dataset = data_mod.Dataset(
                rng.random((n_train, 28, 28, 1), np.float32), rng.integers(0, 10, n_train).astype(np.int32),
                rng.random((1000, 28, 28, 1), np.float32), rng.integers(0, 10, 1000).astype(np.int32),
                "random", 10)
            source = "random (MNIST-shaped)"
    else:
        source = getattr(dataset, "name", "given")
    n_train = min(n_train, len(dataset.x_train))
    n_test = min(1000, len(dataset.x_test))
    model = nielsen_mlp(tuple(hidden))
    sigmas = np.linspace(0.0, 4.0, n_models)

    def run(sig, chunk):
        """Seconds of training (compile and initialisation excluded), summed over chunks."""
        ds = train("super_accelerated", model, dataset, {"learning_rate": 0.5, "momentum": 0.9, "sigma": sig},
                   steps=steps, metrics_every=steps, eval_on=("test",), train_subset=n_train,
                   test_subset=n_test, placement=Placement(chunk_size=chunk), progress=progress)
        per_chunk = ds.wall_time.isel(step=-1).values.ravel()[::chunk]
        return float(per_chunk.sum())

    load0 = load_average()
    run(sigmas, n_models)  # compile and warm up both programs
    run(sigmas[:sequential_models], 1)
    vm, seq = [], []
    for _ in range(repeats):
        vm.append(n_models * steps / run(sigmas, n_models))
        seq.append(sequential_models * steps / run(sigmas[:sequential_models], 1))
    vmed, smed = float(np.median(vm)), float(np.median(seq))
    overhead = _store_and_shard_overhead(model, dataset, sigmas, steps, n_train, n_test, repeats)
    mm = matmul_rate()
    flop = _step_flops(model, dataset.x_train[:n_train])
    load1 = load_average()
    note = (f"{jax.devices()[0].platform.upper()} run, {os.cpu_count()} CPU cores visible"
            + (f", 1-min load average {load0:.1f} at start and {load1:.1f} at end" if load0 is not None else "")
            + ". Model-steps/s = models x steps / seconds of the training loop (compile and "
              "initialisation excluded, one small test evaluation included).")
    if cpu:
        note += (" On a shared CPU these numbers are noisy: other jobs compete for the same cores. "
                 f"Reduced size for CPU (n_train={n_train}, steps={steps}); the issue's GPU target, "
                 "128 models >= 15k model-steps/s on one H100 with all 60k images, is not measured here.")
    return {
        "benchmark": "train",
        "model": model.name,
        "n_models": n_models,
        "steps": steps,
        "n_train": n_train,
        "data": source,
        "repeats": repeats,
        "sequential_models_timed": sequential_models,
        "vmapped_model_steps_per_s": vmed,
        "sequential_model_steps_per_s": smed,
        "speedup": vmed / smed,
        "vmapped_all": vm,
        "sequential_all": seq,
        "flop_per_model_step": flop,
        "matmul_flops_per_s": mm,
        "fraction_of_matmul_rate": vmed * flop / mm,
        "store_and_shard": overhead,
        "device": str(jax.devices()[0]),
        "device_kind": jax.devices()[0].device_kind,
        "platform": jax.devices()[0].platform,
        "cpu_count": os.cpu_count(),
        "load_average_1min_start": load0,
        "load_average_1min_end": load1,
        "note": note,
        "jax_version": jax.__version__,
        "dtype": "float32",
    }


def _step_flops(model: Model, x) -> float:
    """FLOPs of one full-batch gradient step of one model (XLA's cost analysis of loss and gradient)."""
    x = jnp.asarray(np.asarray(x, np.float32).reshape(len(x), -1) if model.flat_input else x, jnp.float32)
    y = jnp.zeros(len(x), jnp.int32)
    params = jax.tree.map(jnp.asarray, model.init(0, x.shape[1:], jnp.float32))
    cost = jax.jit(jax.value_and_grad(model.loss_fn)).lower(params, x, y).compile().cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    assert cost is not None  # XLA's compilers report a cost analysis
    return float(cost["flops"])


def _store_and_shard_overhead(model, dataset, sigmas, steps, n_train, n_test, repeats) -> dict:
    """Whole-call throughput at the default chunk size: in memory on one device, with the store, on all devices.

    Timed around :func:`dynsim.train` (compile excluded by a warm-up), so host work (writing the
    zarr chunks, fsync'ing the log, moving results to the host) counts.
    """
    import shutil
    import tempfile

    kw = dict(steps=steps, metrics_every=steps, eval_on=("test",), train_subset=n_train, test_subset=n_test,
              progress=False)
    grid = {"learning_rate": 0.5, "momentum": 0.9, "sigma": sigmas}
    n_all = len(jax.local_devices())

    def once(devices, store):
        tmp = tempfile.mkdtemp(prefix="dynsim-bench-")
        try:
            t0 = time.perf_counter()
            ds = train("super_accelerated", model, dataset, grid, placement=Placement(devices=devices),
                       out=pathlib.Path(tmp) / "o" if store else None, **kw)
            return time.perf_counter() - t0, int(ds.attrs["chunk_size"])
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    res: dict[str, Any] = {}
    for label, devices, store in (("memory_1_device", 1, False), ("store_1_device", 1, True),
                                  (f"memory_{n_all}_devices", n_all, False), (f"store_{n_all}_devices", n_all, True)):
        once(devices, store)  # compile
        runs = [once(devices, store) for _ in range(repeats)]
        t = float(np.median([r[0] for r in runs]))
        res[label] = {"median_s": t, "model_steps_per_s": len(sigmas) * steps / t, "chunk_size": runs[0][1]}
    base = res["memory_1_device"]["median_s"]
    res["store_cost"] = res["store_1_device"]["median_s"] / base - 1.0
    res["store_and_shard_cost"] = res[f"store_{n_all}_devices"]["median_s"] / base - 1.0
    res["note"] = ("costs relative to training in memory on one device at the default chunk size; negative = faster "
                   "(sharding over more devices speeds training up)")
    return res


def lines(result: dict) -> list[str]:
    """The printed summary of a :func:`benchmark` result (the JSON holds every number)."""
    r = result
    out = [f"dynsim bench --train: {r['n_models']} x {r['model']} models, {r['steps']} full-batch steps on "
           f"{r['n_train']:,} {r['data']} images, {r['device_kind']} ({r['platform']}), {r['repeats']} repeats "
           f"(load average {r['load_average_1min_start']})",
           f"  vmapped: {r['vmapped_model_steps_per_s']:.3g} model-steps/s (median)",
           f"  one at a time: {r['sequential_model_steps_per_s']:.3g} model-steps/s "
           f"({r['sequential_models_timed']} models timed)",
           f"  speed-up: {r['speedup']:.1f}x",
           f"  {r['flop_per_model_step']:.3g} FLOP per model-step; {r['fraction_of_matmul_rate']:.1%} of the "
           f"matmul rate ({r['matmul_flops_per_s']:.3g} FLOP/s)"]
    sas = r.get("store_and_shard") or {}
    if sas:
        out.append(f"  store cost {sas['store_cost']:+.1%}, store and shard cost {sas['store_and_shard_cost']:+.1%} "
                   "(relative to one device in memory)")
    return out
