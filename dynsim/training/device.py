r"""The device step loop: each call's steps inside one compiled program (:func:`program`).

One ``jit`` of ``vmap`` over models; the rule is built inside the vmapped function from
array hyperparameters, so a whole grid shares one XLA program. The data live on the device
(replicated); the program draws its minibatches there (:func:`dynsim.training.kernel.epoch_indices`).
"""
from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np

from dynsim.engine.execute import cached, compiled, count_trace
from dynsim.training.kernel import epoch_indices, hessian_metrics, hessian_nan, record_metrics, train_step
from dynsim.training.spec import Chunk, ChunkResult, ProgramSpec, Tick

__all__ = ["program", "run_chunk"]


def program(spec: ProgramSpec):
    """The one jitted training program, vmapped over the model axis. Cached per spec.

    ``program(carry, hp, seed, data, call_index, do_steps)`` runs one call -- ``blocks_per_call``
    blocks of ``steps_per_block`` steps, metrics after each block -- and returns
    ``(carry, metrics[model, block])``. With ``do_steps=False`` it only evaluates (used for
    the step-0 record), so a whole training run needs this single compiled program.
    """
    return cached(("train-device", spec), lambda: _build_program(spec))


def _build_program(spec: ProgramSpec):
    dtype = jnp.dtype(spec.dtype)

    def one_model(carry, hp, seed, data, call_index, do_steps):
        count_trace("train-device")  # runs at trace time only
        rule = spec.build(hp)  # hp values are tracers: one program
        x, y = data[0], data[1]
        step_fn = train_step(spec, rule)

        def step(c, idx):
            return step_fn(c, *((x, y) if spec.full_batch else (x[idx], y[idx])))

        if spec.full_batch:
            idx = jnp.zeros((spec.blocks_per_call, spec.steps_per_block, 0), jnp.int32)
        else:  # one call = one epoch: a fresh permutation, cut into batches
            spe = spec.blocks_per_call * spec.steps_per_block
            idx = epoch_indices(seed, call_index, x.shape[0], spe, spec.batch_size)
            idx = idx.reshape(spec.blocks_per_call, spec.steps_per_block, spec.batch_size)

        def run(c, block_idx):
            c, (losses, accs) = jax.lax.scan(step, c, block_idx)
            return c, jnp.mean(losses), jnp.mean(accs)

        def skip(c, block_idx):
            del block_idx
            nan = jnp.asarray(jnp.nan, dtype)
            return c, nan, nan

        def hessian_record(c, record):
            return hessian_metrics(spec, rule, c, x, y, seed, record)

        def hessian_skip(c, record):
            del c, record
            return hessian_nan(spec)

        def block(c, xs):
            block_idx, j = xs
            # do_steps is not vmapped, so this stays a real branch under vmap
            c, run_loss, run_acc = jax.lax.cond(do_steps, run, skip, c, block_idx)
            m = record_metrics(spec, rule, c, data, run_loss, run_acc)
            if spec.hessian is not None:
                # record number from unbatched values only, so the cond stays a branch under vmap;
                # the evaluate-only call (step 0) keeps just its last block: measure only there
                record = jnp.where(do_steps, call_index * spec.blocks_per_call + j + 1, 0)
                due = ((record * spec.steps_per_block) % spec.hessian.every == 0) & (
                    do_steps | (j == spec.blocks_per_call - 1))
                m.update(jax.lax.cond(due, hessian_record, hessian_skip, c, record))
            return c, m

        return jax.lax.scan(block, carry, (idx, jnp.arange(spec.blocks_per_call)))

    return jax.jit(jax.vmap(one_model, in_axes=(0, 0, 0, None, None, None)), donate_argnums=0)


def run_chunk(spec: ProgramSpec, chunk: Chunk, tick: Tick) -> ChunkResult:
    """Train one chunk with :func:`program`: one dispatch per call, the records copied back per call."""
    prog = program(spec)
    carry, hp, seeds, data = chunk.carry, chunk.hp, chunk.seeds, chunk.data
    exe, compile_s = compiled("train-device", prog, carry, hp, seeds, data, np.int32(0), np.bool_(True))
    carry, m0 = exe(carry, hp, seeds, data, np.int32(0), np.bool_(False))
    records = [jax.tree.map(lambda a: np.asarray(a)[:, -1:], m0)]
    t0 = time.perf_counter()
    wall = [0.0]
    for i in range(chunk.n_calls):
        carry, m = exe(carry, hp, seeds, data, np.int32(i), np.bool_(True))
        records.append(jax.tree.map(np.asarray, m))  # host copy = synchronisation point
        wall += [time.perf_counter() - t0] * spec.blocks_per_call
        tick(spec.blocks_per_call * spec.steps_per_block)
    return ChunkResult(carry, records, wall, compile_s)
