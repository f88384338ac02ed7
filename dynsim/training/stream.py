r"""The stream step loop: the host sends each call's minibatches and the evaluation batches.

With ``Placement(data="stream")`` (:func:`dynsim.train`; ``"auto"`` picks it when the data
do not fit the memory budget) the dataset stays in host memory. A chunk's models train
in *segments* of at most ``steps_per_block`` steps: before each segment the host gathers,
for every distinct seed of the chunk (a *slot*; models index their seed's slot), the
segment's minibatches in the order :func:`dynsim.training.kernel.epoch_batches` gives --
the permutation the device program draws on the device -- and sends them to every
device of the chunk's mesh. After each block the training and test sets are streamed in
batches of ``eval_batch`` examples, the batches :func:`dynsim.training.kernel.evaluate` uses,
and their sums are combined in the same order (:func:`stream_programs`), so a streamed run
gives the replicated run's numbers.

Device memory stays bounded: at most two transfers are alive at a time (the next one is
sent while the current one computes), each of ``slots × steps × batch_size`` or
``eval_batch`` examples, sized by :func:`segment_steps` to a share of the budget.
"""
from __future__ import annotations

import collections
import math
import time
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from dynsim.engine.execute import cached, count_trace
from dynsim.training.kernel import CompiledCalls, nan_if_diverged, seed_batches, train_step
from dynsim.training.spec import Chunk, ChunkResult, ProgramSpec, Tick

__all__ = ["StreamPrograms", "stream_programs", "example_bytes", "segment_steps", "run_chunk"]


class StreamPrograms(NamedTuple):
    """The compiled pieces of a streamed run (:func:`stream_programs`)."""

    segment: Any
    metrics: Any
    record: Any


def stream_programs(spec: ProgramSpec, sizes: tuple[tuple[str, int], ...]) -> StreamPrograms:
    """The streamed counterpart of :func:`dynsim.training.device.program`: the data come from the host.

    The device program holds the whole dataset on the device and draws minibatches and eval
    batches from it; here the host sends only what the next call needs, so the device never
    holds more than a few batches. The three jitted functions, vmapped over models, run the
    same per-step computation (:func:`dynsim.training.kernel.train_step`) and combine the
    evaluation sums in the same order as the device program, so a streamed run equals a replicated one:

    * ``segment(carry, hp, slot, xs, ys, losses, accs, offset) -> (carry, losses, accs, done)``:
      ``xs.shape[1]`` optimizer steps; model ``m``'s ``k``-th step uses the minibatch
      ``xs[slot[m], k]`` (``xs``: ``(slots, steps, batch_size, *input)``, one slot per
      distinct seed of the chunk, replicated on the mesh). The steps' minibatch losses and
      accuracies are written into the block's ``(steps_per_block, models)`` buffers
      ``losses``/``accs`` (donated) from row ``offset`` on: the layout the device program's
      scan gives them, so their block means reduce alike. ``done`` (the last step's
      losses, never donated) tells the host when the segment has finished.
    * ``metrics(carry, hp, xb, yb) -> (loss_sum, correct)``, each ``(models,)``: sums over one
      evaluation batch at the paper's θ (:meth:`dynsim.models.Model.metrics`).
    * ``record(carry, losses, accs, evals) -> {curve: (models,)}``: one record -- the
      block's running loss/accuracy from the filled buffers (``None`` for the step-0
      record: NaN), and ``{train,test}_{loss,accuracy}`` from
      ``evals[name] = (loss_sums, corrects, remainder)``: tuples with one ``(models,)`` array
      per full eval batch, and the remainder batch's pair (or ``None``), summed exactly as
      :func:`dynsim.training.kernel.evaluate` sums them.

    ``sizes`` holds ``(("train", n_train), ("test", n_test))``: the means' denominators.
    Cached per spec and sizes.
    """
    return cached(("train-stream", spec, sizes), lambda: _build_stream_programs(spec, sizes))


def _build_stream_programs(spec: ProgramSpec, sizes: tuple[tuple[str, int], ...]) -> StreamPrograms:
    model = spec.model
    dtype = jnp.dtype(spec.dtype)
    n_of = dict(sizes)

    def segment_one(carry, hp, slot, xs, ys):
        count_trace("train-stream-segment")  # trace time only
        step = train_step(spec, spec.build(hp))
        # index inside the step (not xs[slot] up front): no per-model copy of the segment
        return jax.lax.scan(lambda c, k: step(c, xs[slot, k], ys[slot, k]), carry, jnp.arange(xs.shape[1]))

    def metrics_one(carry, hp, xb, yb):
        count_trace("train-stream-metrics")
        theta = spec.build(hp).to_paper(carry["params"], carry["opt_state"])  # report the paper's θ
        return model.metrics(theta, xb, yb)

    def record_one(c, losses, accs, evals):
        nan = jnp.asarray(jnp.nan, dtype)
        out = {}
        for name, on in (("train", spec.eval_train), ("test", spec.eval_test)):
            if on:  # as evaluate(): sum over the full batches, then the remainder, then / n
                loss_sums, correct, rem = evals[name]
                loss_sum, ncorrect = jnp.sum(loss_sums), jnp.sum(correct)
                if rem is not None:
                    loss_sum, ncorrect = loss_sum + rem[0], ncorrect + rem[1]
                n = n_of[name]
                out.update(nan_if_diverged(c, {f"{name}_loss": loss_sum / n,
                                               f"{name}_accuracy": ncorrect.astype(loss_sum.dtype) / n}))
        out["grad_norm"] = c["grad_norm"]
        run_loss, run_acc = (nan, nan) if losses is None else (jnp.mean(losses), jnp.mean(accs))
        out.update(nan_if_diverged(c, {"running_loss": run_loss, "running_accuracy": run_acc}))
        return out

    def record(carry, losses, accs, evals):
        count_trace("train-stream-record")
        # stack to (batches, models) and map the models along axis 1: the per-model sums then
        # reduce the same (n, models) layout that program's scans and lax.map produce
        ev = {k: (jnp.stack(ls), jnp.stack(cs), rem) for k, (ls, cs, rem) in evals.items()}
        ev_axes = {k: (1, 1, None if rem is None else 0) for k, (ls, cs, rem) in evals.items()}
        run_axis = None if losses is None else 1
        return jax.vmap(record_one, in_axes=(0, run_axis, run_axis, ev_axes))(carry, losses, accs, ev)

    segment_all = jax.vmap(segment_one, in_axes=(0, 0, 0, None, None), out_axes=(0, 1))

    def segment(carry, hp, slot, xs, ys, losses, accs, offset):
        # written into whole-block buffers, not concatenated at the record: XLA rewrites a
        # reduction of a concatenation as a sum of reductions, which rounds differently
        carry, (seg_losses, seg_accs) = segment_all(carry, hp, slot, xs, ys)
        put = lambda buf, v: jax.lax.dynamic_update_slice(buf, v, (offset, jnp.zeros_like(offset)))  # noqa: E731
        return carry, put(losses, seg_losses), put(accs, seg_accs), seg_losses[-1]

    return StreamPrograms(
        segment=jax.jit(segment, donate_argnums=(0, 5, 6)),
        metrics=jax.jit(jax.vmap(metrics_one, in_axes=(0, 0, None, None))),
        record=jax.jit(record),
    )


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
        raise ValueError(f"data placement 'stream': two evaluation batches of {eb} examples (eval_batch="
                         f"{spec.eval_batch}; {eval_bytes / 2**20:.3g} MiB) do not fit the {share / 2**20:.3g} MiB "
                         "the streamed data may use (half of memory_fraction of the device); lower eval_batch or "
                         "raise memory_fraction")
    per_step = 2 * n_slots * spec.batch_size * ex
    fit = int((share - eval_bytes) // per_step)
    if fit < 1:
        raise ValueError(f"data placement 'stream': one step's minibatches for the chunk's {n_slots} seed(s) "
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


def run_chunk(spec: ProgramSpec, chunk: Chunk, tick: Tick) -> ChunkResult:
    """Train one chunk with streamed data (``chunk.data`` is unused: the data stay on the host).

    ``chunk.slot``, ``slot_seeds``, ``n_slots`` and ``segment`` say which minibatches each
    model takes and how many steps go per transfer (:class:`dynsim.training.spec.Chunk`).
    """
    carry, hp, slot, seg, n_slots, replicated = (chunk.carry, chunk.hp, chunk.slot, chunk.segment, chunk.n_slots,
                                                 chunk.replicated)
    xtr, ytr, xte, yte = chunk.host_data
    n_train = len(xtr)
    progs = stream_programs(spec, (("train", n_train), ("test", len(xte))))
    spb, bpc, bs = spec.steps_per_block, spec.blocks_per_call, spec.batch_size
    put = lambda a: jax.device_put(a, replicated)  # noqa: E731
    flight = _InFlight()
    call = CompiledCalls()

    def metrics(carry, xb, yb):
        return call("train-stream-metrics", progs.metrics, carry, hp, put(xb), put(yb))

    def evaluate(carry):
        evals = {}
        for name, x, y, on in (("train", xtr, ytr, spec.eval_train), ("test", xte, yte, spec.eval_test)):
            if not on:
                continue
            eb = min(spec.eval_batch, len(x))
            nb, rem = divmod(len(x), eb)
            sums = []
            for lo in range(0, nb * eb, eb):
                sums.append(metrics(carry, x[lo:lo + eb], y[lo:lo + eb]))
                flight.add(sums[-1])
            last = metrics(carry, x[nb * eb:], y[nb * eb:]) if rem else None
            evals[name] = (tuple(s[0] for s in sums), tuple(s[1] for s in sums), last)
        return evals

    def host(rec):
        return {k: np.asarray(v)[:, None] for k, v in rec.items()}

    records = [host(call("train-stream-record", progs.record, carry, None, None, evaluate(carry)))]
    # the block's minibatch losses/accuracies, (steps_per_block, models) like the device program's scan output
    n_models = len(slot)
    block_sharding = jax.sharding.NamedSharding(replicated.mesh, jax.sharding.PartitionSpec(None, *slot.sharding.spec))
    losses, accs = (jax.device_put(np.zeros((spb, n_models), spec.dtype), block_sharding) for _ in range(2))
    seeds = np.asarray(chunk.slot_seeds, np.int32)
    t0 = time.perf_counter() - call.seconds  # the pieces compile on first use: wall time excludes it
    wall = [0.0]
    for epoch in range(chunk.n_calls):
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
                carry, losses, accs, done = call("train-stream-segment", progs.segment, carry, hp, slot, put(xs),
                                                 put(ys), losses, accs, np.int32(k0 - j * spb))
                flight.add(done)
            block_recs.append(call("train-stream-record", progs.record, carry, losses, accs, evaluate(carry)))
        recs = [host(r) for r in block_recs]  # host copy = synchronisation point, once per epoch
        records.append({k: np.concatenate([r[k] for r in recs], axis=1) for k in recs[0]})
        wall += [time.perf_counter() - t0 - call.seconds] * bpc
        tick(spb * bpc)
    return ChunkResult(carry, records, wall, call.seconds)
