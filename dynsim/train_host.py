r"""Host-stepped training: the host loops over steps and calls loop-free compiled pieces.

:func:`dynsim.train_program.program` runs a whole call (an epoch, or a block of full-batch
steps) in one compiled ``scan``. XLA:CPU runs a convolution inside a loop or branch body an
order of magnitude slower than at the top level (jax-ml/jax#12868; measured in
``results/bench/README.md``), so :func:`dynsim.train` with
``step_loop="host"`` (``"auto"`` picks it on CPU for models with a convolution) calls
:func:`dynsim.train_program.host_programs`' pieces from here instead: one optimizer step per
call, vmapped over the chunk's models, then the record and (when due) the Hessian record.
The data stay on the device and the minibatches are drawn there as the program draws them,
so the results equal the device loop's to float rounding (tested). The price is one
dispatch per step (tens of microseconds), which is why it is not the default elsewhere.
"""
from __future__ import annotations

import dataclasses
import time

import jax
import jax.numpy as jnp
import numpy as np

from dynsim.train_program import ProgramSpec, compiled, host_programs, record_names, seed_batches

__all__ = ["run_chunk"]


def run_chunk(spec: ProgramSpec, carry, hp, seeds, data, n_train: int, n_calls: int, tick):
    """Train one chunk step by step from the host; returns ``(carry, records, wall, compile_seconds)``.

    ``carry``, ``hp`` and ``seeds`` (one per model) are on the device, sharded over the
    models; ``data`` = ``(x_train, y_train, x_test, y_test)`` is on every device of the mesh.
    ``records`` is a list of ``{curve: (models, records, ...)}`` (the step-0 record, then one
    entry per call), as :func:`dynsim.train_program.program` returns them; ``wall`` the
    seconds since the step-0 record (compile excluded), once per record after it.
    """
    progs = host_programs(spec)
    spb, bpc = spec.steps_per_block, spec.blocks_per_call
    n_models = len(seeds)
    by_model = seeds.sharding  # 1-D over the models
    by_model_2d = jax.sharding.NamedSharding(by_model.mesh, jax.sharding.PartitionSpec(None, *by_model.spec))
    compile_s = [0.0]
    without = record_names(dataclasses.replace(spec, hessian_every=0))
    hess_shapes = {k: s for k, s in record_names(spec).items() if k not in without}  # NaN between Hessian records

    def call(kind, fn, *args):
        exe, dt = compiled(kind, fn, *args)
        compile_s[0] += dt
        return exe(*args)

    def record(carry, losses, accs, number):
        out = dict(call("host_record", progs.record, carry, hp, data, losses, accs))
        if spec.hessian_every:
            if (number * spb) % spec.hessian_every == 0:
                out.update(call("host_hessian", progs.hessian, carry, hp, seeds, data, np.int32(number)))
            else:
                out.update({k: np.full((n_models, *s), np.nan, spec.dtype) for k, s in hess_shapes.items()})
        return out

    def host(recs):
        return {k: np.stack([np.asarray(r[k]) for r in recs], axis=1) for k in recs[0]}

    def stack(xs):  # the block's per-step values as (steps_per_block, models), like program's scan
        return jax.device_put(jnp.stack(xs), by_model_2d)

    nan_block = jax.device_put(np.full((spb, n_models), np.nan, spec.dtype), by_model_2d)
    records = [host([record(carry, nan_block, nan_block, 0)])]
    no_idx = jax.device_put(np.zeros((n_models, 0), np.int32), by_model)  # full batch: no minibatch
    t0 = time.perf_counter() - compile_s[0]
    wall = []
    for call_index in range(n_calls):
        if not spec.full_batch:  # this epoch's minibatches, as the device program draws them
            idx = seed_batches(seeds, np.int32(call_index), n_train, spb * bpc, spec.batch_size)
        block_recs = []
        for j in range(bpc):
            losses, accs = [], []
            for k in range(j * spb, (j + 1) * spb):
                carry, loss, acc = call("host_step", progs.step, carry, hp, data,
                                        no_idx if spec.full_batch else idx[:, k])
                losses.append(loss)
                accs.append(acc)
            block_recs.append(record(carry, stack(losses), stack(accs), call_index * bpc + j + 1))
        records.append(host(block_recs))  # host copy = synchronisation point, once per call
        wall += [time.perf_counter() - t0 - compile_s[0]] * bpc
        tick(1.0 / n_calls)
    return carry, records, wall, compile_s[0]
