r"""The host step loop: the host loops over steps and calls loop-free compiled pieces.

:mod:`dynsim.training.device` runs a whole call (an epoch, or a block of full-batch steps)
in one compiled ``scan``. XLA:CPU runs a convolution inside a loop or branch body an order
of magnitude slower than at the top level (jax-ml/jax#12868; measured in
``results/bench/README.md``), so ``Placement(loop="host")`` (``"auto"`` picks it on CPU for
models with a convolution) calls :func:`host_programs`' pieces from here instead: one
optimizer step per call, vmapped over the chunk's models, then the record and (when due)
the Hessian record. The data stay on the device and the minibatches are drawn there as the
device program draws them, so the results equal the device loop's to float rounding
(tested). The price is one dispatch per step (tens of microseconds), which is why it is not
the default elsewhere.
"""
from __future__ import annotations

import time
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from dynsim.engine.execute import cached, count_trace
from dynsim.training.kernel import CompiledCalls, hessian_metrics, hessian_nan, record_metrics, seed_batches, train_step
from dynsim.training.spec import Chunk, ChunkResult, ProgramSpec, Tick

__all__ = ["HostPrograms", "host_programs", "run_chunk"]


class HostPrograms(NamedTuple):
    """The compiled pieces of a host-stepped run (:func:`host_programs`)."""

    step: Any
    record: Any
    hessian: Any


def host_programs(spec: ProgramSpec) -> HostPrograms:
    """The device program's computation cut into pieces without loops or branches, for a host loop.

    Each jitted and vmapped over models:

    * ``step(carry, hp, data, idx) -> (carry, loss, accuracy)``: one optimizer step
      (:func:`dynsim.training.kernel.train_step`); ``idx`` is each model's minibatch,
      ``(models, batch_size)`` (``(models, 0)`` for full batch);
    * ``record(carry, hp, data, losses, accs) -> {curve: (models,)}``: the evaluation
      record, with the block's running loss/accuracy from its ``(steps_per_block, models)``
      step losses (NaN-filled for the step-0 record);
    * ``hessian(carry, hp, seed, data, record) -> {curve: ...}`` (``None`` without the Hessian
      metric): :func:`dynsim.training.kernel.hessian_metrics` with its loops unrolled.

    They compute what the device program computes, in the same order, with the same Lanczos
    start vectors; results agree to float rounding (tested). Cached per spec.
    """
    return cached(("train-host", spec), lambda: _build_host_programs(spec))


def _build_host_programs(spec: ProgramSpec) -> HostPrograms:
    def step_one(c, hp, data, idx):
        count_trace("train-host-step")  # trace time only
        x, y = data[0], data[1]
        return train_step(spec, spec.build(hp))(c, *((x, y) if spec.full_batch else (x[idx], y[idx])))

    def step(carry, hp, data, idx):
        carry, (loss, acc) = jax.vmap(step_one, in_axes=(0, 0, None, 0))(carry, hp, data, idx)
        return carry, loss, acc

    def record_one(c, hp, data, losses, accs):
        count_trace("train-host-record")
        return record_metrics(spec, spec.build(hp), c, data, jnp.mean(losses), jnp.mean(accs))

    def hessian_one(c, hp, seed, data, record):
        count_trace("train-host-hessian")
        return hessian_metrics(spec, spec.build(hp), c, data[0], data[1], seed, record, unroll=True)

    return HostPrograms(
        step=jax.jit(step, donate_argnums=0),
        record=jax.jit(jax.vmap(record_one, in_axes=(0, 0, None, 1, 1))),
        hessian=(jax.jit(jax.vmap(hessian_one, in_axes=(0, 0, 0, None, None)))
                 if spec.hessian is not None else None),
    )


def run_chunk(spec: ProgramSpec, chunk: Chunk, tick: Tick) -> ChunkResult:
    """Train one chunk step by step from the host (records as the device loop returns them)."""
    progs = host_programs(spec)
    carry, hp, seeds, data = chunk.carry, chunk.hp, chunk.seeds, chunk.data
    n_train = len(chunk.host_data[0])
    spb, bpc = spec.steps_per_block, spec.blocks_per_call
    n_models = len(seeds)
    by_model = seeds.sharding  # 1-D over the models
    by_model_2d = jax.sharding.NamedSharding(by_model.mesh, jax.sharding.PartitionSpec(None, *by_model.spec))
    call = CompiledCalls()
    nan_hessian = {k: np.broadcast_to(np.asarray(v), (n_models, *v.shape))
                   for k, v in (hessian_nan(spec).items() if spec.hessian is not None else ())}

    def record(carry, losses, accs, number):
        out = dict(call("train-host-record", progs.record, carry, hp, data, losses, accs))
        if spec.hessian is not None:  # NaN between Hessian records
            due = (number * spb) % spec.hessian.every == 0
            out.update(call("train-host-hessian", progs.hessian, carry, hp, seeds, data, np.int32(number))
                       if due else nan_hessian)
        return out

    def host(recs):
        return {k: np.stack([np.asarray(r[k]) for r in recs], axis=1) for k in recs[0]}

    def stack(xs):  # the block's per-step values as (steps_per_block, models), like the device scan
        return jax.device_put(jnp.stack(xs), by_model_2d)

    nan_block = jax.device_put(np.full((spb, n_models), np.nan, spec.dtype), by_model_2d)
    records = [host([record(carry, nan_block, nan_block, 0)])]
    no_idx = jax.device_put(np.zeros((n_models, 0), np.int32), by_model)  # full batch: no minibatch
    t0 = time.perf_counter() - call.seconds
    wall = [0.0]
    for call_index in range(chunk.n_calls):
        if not spec.full_batch:  # this epoch's minibatches, as the device program draws them
            idx = seed_batches(seeds, np.int32(call_index), n_train, spb * bpc, spec.batch_size)
        block_recs = []
        for j in range(bpc):
            losses, accs = [], []
            for k in range(j * spb, (j + 1) * spb):
                carry, loss, acc = call("train-host-step", progs.step, carry, hp, data,
                                        no_idx if spec.full_batch else idx[:, k])
                losses.append(loss)
                accs.append(acc)
            block_recs.append(record(carry, stack(losses), stack(accs), call_index * bpc + j + 1))
        records.append(host(block_recs))  # host copy = synchronisation point, once per call
        wall += [time.perf_counter() - t0 - call.seconds] * bpc
        tick(spb * bpc)
    return ChunkResult(carry, records, wall, call.seconds)
