r"""Streamed data placement: the host sends each call's minibatches and the evaluation batches.

With ``data_placement="stream"`` (:func:`dynsim.train`; ``"auto"`` picks it when the data
do not fit the memory budget) the dataset stays in host memory. A chunk's models train
in *segments* of at most ``steps_per_block`` steps: before each segment the host gathers,
for every distinct seed of the chunk (a *slot*; models index their seed's slot), the
segment's minibatches in the order :func:`dynsim.train_program.epoch_batches` gives --
the permutation the replicated program draws on the device -- and sends them to every
device of the chunk's mesh. After each block the training and test sets are streamed in
batches of ``eval_batch`` examples, the batches :func:`dynsim.train_program.evaluate` uses,
and their sums are combined in the same order (:func:`dynsim.train_program.stream_programs`),
so a streamed run gives the replicated run's numbers.

Device memory stays bounded: at most two transfers are alive at a time (the next one is
sent while the current one computes), each of ``slots × steps × batch_size`` or
``eval_batch`` examples, sized by :func:`segment_steps` to a share of the budget.
"""
from __future__ import annotations

import collections
import math
import time

import jax
import numpy as np

from dynsim.train_program import ProgramSpec, compiled, seed_batches, stream_programs

__all__ = ["example_bytes", "segment_steps", "run_chunk"]


def example_bytes(spec: ProgramSpec) -> int:
    """Bytes of one example on the device: the input in ``spec.dtype`` and an int32 label."""
    return math.prod(spec.input_shape) * np.dtype(spec.dtype).itemsize + 4


def segment_steps(spec: ProgramSpec, n_eval: int, n_slots: int, share: float) -> int:
    """Steps per minibatch transfer: as many as fit ``share`` bytes, at most a block.

    Two transfers are alive at a time (double buffering), of ``n_slots`` seeds' minibatches
    or of one evaluation batch (``min(eval_batch, n_eval)`` examples). A block of
    ``steps_per_block`` steps is cut into equal segments (the last one shorter when they do
    not divide it), so a run compiles at most two segment shapes.
    """
    ex = example_bytes(spec)
    eb = min(spec.eval_batch, n_eval)
    eval_bytes = 2 * eb * ex
    if eval_bytes > share:
        raise ValueError(f"data_placement='stream': two evaluation batches of {eb} examples (eval_batch="
                         f"{spec.eval_batch}; {eval_bytes / 2**20:.3g} MiB) do not fit the {share / 2**20:.3g} MiB "
                         "the streamed data may use (half of memory_fraction of the device); lower eval_batch or "
                         "raise memory_fraction")
    per_step = 2 * n_slots * spec.batch_size * ex
    fit = int((share - eval_bytes) // per_step)
    if fit < 1:
        raise ValueError(f"data_placement='stream': one step's minibatches for the chunk's {n_slots} seed(s) "
                         f"(batch_size={spec.batch_size}, {per_step / 2**20:.3g} MiB double-buffered) do not fit the "
                         f"{(share - eval_bytes) / 2**20:.3g} MiB left to the streamed data; lower batch_size or "
                         "chunk_size (fewer seeds per chunk), or raise memory_fraction")
    spb = spec.steps_per_block
    n_seg = -(-spb // min(fit, spb))
    return -(-spb // n_seg)


class _InFlight:
    """Keeps at most one dispatched call unfinished besides the newest: bounds the live transfers.

    JAX dispatches asynchronously, so without this the host would gather and send the whole
    epoch ahead of the device. Waiting for the previous call lets the next transfer overlap
    the current computation and no more.
    """

    def __init__(self):
        self.pending = collections.deque()

    def add(self, out):
        self.pending.append(out)
        while len(self.pending) > 1:
            jax.block_until_ready(self.pending.popleft())


def run_chunk(spec: ProgramSpec, seg: int, carry, hp, slot, slot_seeds: np.ndarray, n_slots: int, host_data,
              n_calls: int, replicated, tick):
    """Train one chunk with streamed data; returns ``(carry, records, wall, compile_seconds)``.

    ``carry``, ``hp`` and ``slot`` (each model's index into ``slot_seeds``) are on the
    device, sharded over the models; ``slot_seeds`` are the chunk's distinct seeds (the
    transfers are padded with zero-filled slots to ``n_slots``, so every chunk shares the
    compiled shapes); ``host_data`` = ``(x_train, y_train, x_test, y_test)`` in host memory;
    ``replicated`` the sharding that copies a transfer to every device of the chunk's mesh.
    ``records`` is a list of ``{curve: (models, records)}`` (the step-0 record, then one entry
    per call = epoch); ``wall`` the seconds since the step-0 record (compile excluded), once
    per record after it.
    """
    xtr, ytr, xte, yte = host_data
    n_train = len(xtr)
    progs = stream_programs(spec, (("train", n_train), ("test", len(xte))))
    spb, bpc, bs = spec.steps_per_block, spec.blocks_per_call, spec.batch_size
    put = lambda a: jax.device_put(a, replicated)  # noqa: E731
    flight = _InFlight()
    compile_s = [0.0]

    def call(kind, fn, *args):
        exe, dt = compiled(kind, fn, *args)
        compile_s[0] += dt
        return exe(*args)

    def evaluate(carry):
        evals = {}
        for name, x, y, on in (("train", xtr, ytr, spec.eval_train), ("test", xte, yte, spec.eval_test)):
            if not on:
                continue
            eb = min(spec.eval_batch, len(x))
            nb, rem = divmod(len(x), eb)
            sums = []
            for lo in range(0, nb * eb, eb):
                sums.append(call("stream_metrics", progs.metrics, carry, hp, put(x[lo:lo + eb]), put(y[lo:lo + eb])))
                flight.add(sums[-1])
            last = call("stream_metrics", progs.metrics, carry, hp, put(x[nb * eb:]), put(y[nb * eb:])) if rem else None
            evals[name] = (tuple(s[0] for s in sums), tuple(s[1] for s in sums), last)
        return evals

    def host(rec):
        return {k: np.asarray(v)[:, None] for k, v in rec.items()}

    records = [host(call("stream_record", progs.record, carry, None, None, evaluate(carry)))]
    # the block's minibatch losses/accuracies, (steps_per_block, models) like program's scan output
    n_models = len(slot)
    block_sharding = jax.sharding.NamedSharding(replicated.mesh, jax.sharding.PartitionSpec(None, *slot.sharding.spec))
    losses, accs = (jax.device_put(np.zeros((spb, n_models), spec.dtype), block_sharding) for _ in range(2))
    seeds = np.asarray(slot_seeds, np.int32)
    t0 = time.perf_counter() - compile_s[0]  # the pieces compile on first use: wall time excludes it
    wall = []
    for epoch in range(n_calls):
        # the replicated program's permutation for each slot's seed, drawn the same way
        idx = np.asarray(seed_batches(seeds, np.int32(epoch), n_train, spb * bpc, bs))
        block_recs = []
        for j in range(bpc):
            for k0 in range(j * spb, (j + 1) * spb, seg):
                rows = idx[:, k0:min(k0 + seg, (j + 1) * spb)]  # (seeds, steps, batch_size)
                xs, ys = xtr[rows], ytr[rows]
                if len(seeds) < n_slots:  # fixed slot count: one compiled shape for every chunk
                    xs = np.concatenate([xs, np.zeros((n_slots - len(seeds), *xs.shape[1:]), xs.dtype)])
                    ys = np.concatenate([ys, np.zeros((n_slots - len(seeds), *ys.shape[1:]), ys.dtype)])
                carry, losses, accs, done = call("stream_segment", progs.segment, carry, hp, slot, put(xs),
                                                 put(ys), losses, accs, np.int32(k0 - j * spb))
                flight.add(done)
            block_recs.append(call("stream_record", progs.record, carry, losses, accs, evaluate(carry)))
        recs = [host(r) for r in block_recs]  # host copy = synchronisation point, once per epoch
        records.append({k: np.concatenate([r[k] for r in recs], axis=1) for k in recs[0]})
        wall += [time.perf_counter() - t0 - compile_s[0]] * bpc
        tick(1.0 / n_calls)
    return carry, records, wall, compile_s[0]
