r"""The compiled training program: one ``jit`` of ``vmap`` over models (:func:`program`).

Every (hyperparameter point × seed) is one *model*; the rule is built inside the vmapped
function from array hyperparameters, so a whole grid shares one XLA program. One call runs
``blocks_per_call`` blocks of ``steps_per_block`` steps and records the metrics after each
block (full-batch: a call is one record; minibatch: a call is one epoch). This module holds
the program and what it needs (evaluation, minibatch order, initial state, a memory
estimate), and its streamed counterpart (:func:`stream_programs`: the same steps, the data
sent by the host; :mod:`dynsim.train_stream` drives it); :mod:`dynsim.training` validates
arguments and drives both through the engine.
See :func:`dynsim.train` for the coordinates, divergence handling and seeds.
"""
from __future__ import annotations

import collections
import dataclasses
import functools
import math
import time
from typing import Any, NamedTuple, Sequence

import jax
import jax.extend.core as jax_core
import jax.numpy as jnp
import numpy as np
import optax

from dynsim import hessian as hessian_mod
from dynsim.checks import check_int
from dynsim.engine.platform import compiler_options
from dynsim.engine.problem import OptimizerSpec
from dynsim.models import Model
from dynsim.run import PRECONDITIONED_RULES, preconditioner

PyTree = Any

__all__ = ["ProgramSpec", "program", "stream_programs", "host_programs", "HostPrograms", "has_convolution",
           "seed_batches", "compiled", "compile_count", "clear_cache", "evaluate", "epoch_batches", "initial_params",
           "initial_carry", "bytes_per_model", "record_names"]

#: Training programs traced by this module (a trace happens exactly when jit compiles).
_COMPILES: collections.Counter = collections.Counter()


def compile_count() -> int:
    """How many training programs this process has traced (= compiled: jit caches traces).

    Counts :func:`program` and the pieces of :func:`stream_programs` and :func:`host_programs`
    (one per shape).
    """
    return sum(_COMPILES.values())


def record_names(spec: "ProgramSpec") -> dict[str, tuple[int, ...]]:
    """The curves :func:`program` records, with their trailing shapes (after model and record).

    Known without tracing (a trace is a compile); a test checks it against the program.
    """
    out = {}
    for part, on in (("train", spec.eval_train), ("test", spec.eval_test)):
        if on:
            out[f"{part}_loss"] = ()
            out[f"{part}_accuracy"] = ()
    out["grad_norm"] = ()
    out["running_loss"] = ()
    out["running_accuracy"] = ()
    if spec.hessian_every:
        out.update({"sharpness": (), "sharpness_residual": (), "hessian_eigenvalues": (spec.hessian_k,)})
        if spec.optimizer.builtin and spec.optimizer.name in PRECONDITIONED_RULES:
            out["preconditioned_sharpness"] = ()
    return out


@dataclasses.dataclass(frozen=True)
class ProgramSpec:
    """Everything that shapes the compiled program (hashable: it keys the program cache)."""

    model: Model
    optimizer: OptimizerSpec
    hp_names: tuple[str, ...]
    static: tuple[tuple[str, Any], ...]  # fixed non-numeric optimizer arguments
    full_batch: bool
    batch_size: int
    steps_per_block: int  # steps between two metric records
    blocks_per_call: int  # records per compiled call (minibatch: one call = one epoch)
    eval_train: bool
    eval_test: bool
    eval_batch: int
    input_shape: tuple[int, ...]
    dtype: str
    hessian_every: int = 0  # steps between Hessian records (a multiple of steps_per_block); 0: off
    hessian_k: int = 1
    hessian_iters: int = hessian_mod.DEFAULT_ITERS
    hessian_at: str = "lookahead"  # or "theta"


def evaluate(model: Model, theta, x, y, eval_batch: int):
    """Mean loss and accuracy of ``theta`` on (x, y), in batches of ``eval_batch`` (exact sums)."""
    n = x.shape[0]
    eb = min(eval_batch, n)
    nb, rem = divmod(n, eb)
    xs = x[: nb * eb].reshape(nb, eb, *x.shape[1:])
    ys = y[: nb * eb].reshape(nb, eb)
    loss_sums, correct = jax.lax.map(lambda b: model.metrics(theta, b[0], b[1]), (xs, ys))
    loss_sum, ncorrect = jnp.sum(loss_sums), jnp.sum(correct)
    if rem:
        ls, c = model.metrics(theta, x[nb * eb:], y[nb * eb:])
        loss_sum, ncorrect = loss_sum + ls, ncorrect + c
    return loss_sum / n, ncorrect.astype(loss_sum.dtype) / n


def _record(spec: ProgramSpec, rule, carry, data):
    theta = rule.to_paper(carry["params"], carry["opt_state"])  # report the paper's θ
    nan = jnp.asarray(jnp.nan, jnp.dtype(spec.dtype))
    out = {}
    for name, (x, y), on in (("train", data[:2], spec.eval_train), ("test", data[2:], spec.eval_test)):
        if on:
            loss, acc = evaluate(spec.model, theta, x, y, spec.eval_batch)
            out[f"{name}_loss"] = jnp.where(carry["diverged"], nan, loss)
            out[f"{name}_accuracy"] = jnp.where(carry["diverged"], nan, acc)
    out["grad_norm"] = carry["grad_norm"]
    return out


def _shuffle_key(seed):
    return jax.random.fold_in(jax.random.PRNGKey(seed), 1)


def _epoch_indices(shuffle_key, epoch, n_train: int, steps_per_epoch: int, batch_size: int):
    perm = jax.random.permutation(jax.random.fold_in(shuffle_key, epoch), n_train)
    return perm[: steps_per_epoch * batch_size].reshape(steps_per_epoch, batch_size)


def epoch_batches(seed: int, epoch: int, n_train: int, batch_size: int) -> np.ndarray:
    """Example indices of every minibatch of ``epoch`` for ``seed``: ``(steps_per_epoch, batch_size)``.

    Exactly what :func:`dynsim.train` feeds the model (step ``k`` of the epoch uses row ``k``).

    >>> b = epoch_batches(0, 0, 10, 5)
    >>> b.shape, sorted(b.ravel().tolist()) == list(range(10))
    ((2, 5), True)
    """
    n_train, batch_size = check_int("n_train", n_train, 1), check_int("batch_size", batch_size, 1)
    if batch_size > n_train:
        raise ValueError(f"batch_size={batch_size} exceeds n_train={n_train}")
    return np.asarray(_epoch_indices(_shuffle_key(seed), epoch, n_train, n_train // batch_size, batch_size))


def initial_params(model: Model, seeds: Sequence[int], input_shape, dtype) -> PyTree:
    """Initial parameters for each seed (host-side numpy draws), stacked on a leading axis."""
    per_seed = [model.init(s, input_shape, jnp.dtype(dtype)) for s in seeds]
    return jax.tree.map(lambda *a: np.stack([np.asarray(x) for x in a]), *per_seed)


def initial_carry(rule, params, dtype) -> dict:
    """Stacked per-model carry (built eagerly: rule.init only makes zeros)."""
    n = jax.tree.leaves(params)[0].shape[0]
    return {
        "params": params,
        "opt_state": jax.vmap(rule.init)(params),
        "diverged": np.zeros(n, bool),
        "diverged_at": np.full(n, -1, np.int32),
        "grad_norm": np.full(n, np.nan, dtype),
        "step": np.zeros(n, np.int32),
    }


def _train_step(spec: ProgramSpec, rule):
    """One optimizer step of one model on the batch ``(xb, yb)``: ``(carry, (loss, accuracy))``.

    Shared by the replicated :func:`program` and the streamed :func:`stream_programs`, so
    both run literally the same computation per step.
    """
    model = spec.model
    dtype = jnp.dtype(spec.dtype)

    def loss_and_correct(params, xb, yb):
        out = model.apply(params, xb)
        return model.loss_from_outputs(out, yb), jnp.mean(jnp.argmax(out, -1) == yb)

    def step(c, xb, yb):
        params, state = c["params"], c["opt_state"]
        (loss, acc), g = jax.value_and_grad(loss_and_correct, has_aux=True)(params, xb, yb)
        updates, new_state = rule.update(g, state, params)
        new_params = optax.apply_updates(params, updates)
        gnorm = optax.tree.norm(g)
        ok = jnp.isfinite(loss) & jnp.isfinite(gnorm) & jnp.isfinite(optax.tree.norm(new_params))
        div = c["diverged"] | ~ok
        keep = functools.partial(jax.tree.map, lambda new, old: jnp.where(div, old, new))
        step_no = c["step"] + 1
        new_c = {
            "params": keep(new_params, params),
            "opt_state": keep(new_state, state),
            "diverged": div,
            "diverged_at": jnp.where(div & ~c["diverged"], step_no, c["diverged_at"]),
            "grad_norm": jnp.where(div, jnp.nan, gnorm).astype(dtype),
            "step": step_no,
        }
        return new_c, (loss.astype(dtype), acc.astype(dtype))

    return step


def _train_hvp(spec: ProgramSpec, x, y, params, v, unroll: bool = False):
    """∇²(full training loss)(params)·v, summed over batches of ``eval_batch`` (exact).

    ``unroll=True`` sums the batches in a Python loop, in the scan's order: even a
    one-iteration ``scan`` keeps XLA:CPU's slow in-loop convolutions (an order of magnitude
    for the ``eos-sa`` CNN; ``results/bench/README.md``).
    """
    model, dtype = spec.model, jnp.dtype(spec.dtype)
    n = x.shape[0]
    eb = min(spec.eval_batch, n)
    nb, rem = divmod(n, eb)

    def part(xb, yb):
        w = jnp.asarray(xb.shape[0] / n, dtype)
        return hessian_mod.hvp(lambda p: w * model.loss_fn(p, xb, yb), params, v)

    def body(acc, b):
        return jax.tree.map(jnp.add, acc, part(*b)), None

    xs, ys = x[: nb * eb].reshape(nb, eb, *x.shape[1:]), y[: nb * eb].reshape(nb, eb)
    acc = jax.tree.map(jnp.zeros_like, v)
    if unroll:
        for b in range(nb):
            acc, _ = body(acc, (xs[b], ys[b]))
    else:
        acc, _ = jax.lax.scan(body, acc, (xs, ys))
    if rem:
        acc = jax.tree.map(jnp.add, acc, part(x[nb * eb:], y[nb * eb:]))
    return acc


def _hessian_metrics(spec: ProgramSpec, rule, c, x, y, seed, record, unroll: bool = False) -> dict:
    """One model's Hessian record: Lanczos on the full training loss at Θ (or θ); NaN once diverged.

    The start vector depends on ``(seed, record)`` only, so every step loop draws the same one.
    ``unroll=True`` unrolls the Lanczos and batch loops (:mod:`dynsim.train_host`).
    """
    dtype = jnp.dtype(spec.dtype)
    point = (c["params"] if spec.hessian_at == "lookahead"
             else rule.to_paper(c["params"], c["opt_state"]))
    key = jax.random.fold_in(jax.random.fold_in(jax.random.PRNGKey(seed), 2), record)
    mv = functools.partial(_train_hvp, spec, x, y, point, unroll=unroll)
    res = hessian_mod.lanczos_top_k(mv, point, spec.hessian_k, spec.hessian_iters, key, unroll=unroll or 1)
    out = {"sharpness": res.eigenvalues[0], "sharpness_residual": res.residuals[0],
           "hessian_eigenvalues": res.eigenvalues}
    if spec.optimizer.builtin and spec.optimizer.name in PRECONDITIONED_RULES:
        pmv = hessian_mod.preconditioned_matvec(mv, preconditioner(rule, c["opt_state"]))
        out["preconditioned_sharpness"] = hessian_mod.lanczos_top_k(
            pmv, point, 1, spec.hessian_iters, jax.random.fold_in(key, 1), unroll=unroll or 1).eigenvalues[0]
    nan = jnp.asarray(jnp.nan, dtype)
    return {k: jnp.where(c["diverged"], nan, v.astype(dtype)) for k, v in out.items()}


@functools.lru_cache(maxsize=32)
def program(spec: ProgramSpec):
    """The one jitted training program, vmapped over the model axis. Cached per spec.

    ``program(carry, hp, seed, data, call_index, do_steps)`` runs one call -- ``blocks_per_call``
    blocks of ``steps_per_block`` steps, metrics after each block -- and returns
    ``(carry, metrics[model, block])``. With ``do_steps=False`` it only evaluates (used for
    the step-0 record), so a whole training run needs this single compiled program.
    """
    dtype = jnp.dtype(spec.dtype)

    def one_model(carry, hp, seed, data, call_index, do_steps):
        _COMPILES["block"] += 1  # runs at trace time only
        rule = spec.optimizer.build(**hp, **dict(spec.static))  # hp values are tracers: one program
        x, y = data[0], data[1]
        train_step = _train_step(spec, rule)

        def step(c, idx):
            return train_step(c, *((x, y) if spec.full_batch else (x[idx], y[idx])))

        if spec.full_batch:
            idx = jnp.zeros((spec.blocks_per_call, spec.steps_per_block, 0), jnp.int32)
        else:  # one call = one epoch: a fresh permutation, cut into batches
            spe = spec.blocks_per_call * spec.steps_per_block
            idx = _epoch_indices(_shuffle_key(seed), call_index, x.shape[0], spe, spec.batch_size)
            idx = idx.reshape(spec.blocks_per_call, spec.steps_per_block, spec.batch_size)

        def run(c, block_idx):
            c, (losses, accs) = jax.lax.scan(step, c, block_idx)
            return c, jnp.mean(losses), jnp.mean(accs)

        def skip(c, block_idx):
            del block_idx
            nan = jnp.asarray(jnp.nan, dtype)
            return c, nan, nan

        def hessian_metrics(c, record):
            return _hessian_metrics(spec, rule, c, x, y, seed, record)

        def hessian_skip(c, record):
            del record
            out = {"sharpness": jnp.nan, "sharpness_residual": jnp.nan,
                   "hessian_eigenvalues": jnp.full((spec.hessian_k,), jnp.nan)}
            if spec.optimizer.builtin and spec.optimizer.name in PRECONDITIONED_RULES:
                out["preconditioned_sharpness"] = jnp.nan
            return {k: jnp.asarray(v, dtype) for k, v in out.items()}

        def block(c, xs):
            block_idx, j = xs
            # do_steps is not vmapped, so this stays a real branch under vmap
            c, run_loss, run_acc = jax.lax.cond(do_steps, run, skip, c, block_idx)
            m = _record(spec, rule, c, data)
            nan = jnp.asarray(jnp.nan, dtype)
            m["running_loss"] = jnp.where(c["diverged"], nan, run_loss)
            m["running_accuracy"] = jnp.where(c["diverged"], nan, run_acc)
            if spec.hessian_every:
                # record number from unbatched values only, so the cond stays a branch under vmap;
                # the evaluate-only call (step 0) keeps just its last block: measure only there
                record = jnp.where(do_steps, call_index * spec.blocks_per_call + j + 1, 0)
                due = ((record * spec.steps_per_block) % spec.hessian_every == 0) & (
                    do_steps | (j == spec.blocks_per_call - 1))
                m.update(jax.lax.cond(due, hessian_metrics, hessian_skip, c, record))
            return c, m

        return jax.lax.scan(block, carry, (idx, jnp.arange(spec.blocks_per_call)))

    return jax.jit(jax.vmap(one_model, in_axes=(0, 0, 0, None, None, None)), donate_argnums=0)


class StreamPrograms(NamedTuple):
    """The compiled pieces of a streamed run (:func:`stream_programs`)."""

    segment: Any
    metrics: Any
    record: Any


@functools.lru_cache(maxsize=32)
def stream_programs(spec: ProgramSpec, sizes: tuple[tuple[str, int], ...]) -> StreamPrograms:
    """The streamed counterpart of :func:`program`: the data come from the host, call by call.

    :func:`program` holds the whole dataset on the device and draws minibatches and eval
    batches from it; here the host sends only what the next call needs, so the device never
    holds more than a few batches. The three jitted functions, vmapped over models, run the
    same per-step computation (:func:`_train_step`) and combine the evaluation sums in the
    same order as :func:`program`, so a streamed run equals a replicated one:

    * ``segment(carry, hp, slot, xs, ys, losses, accs, offset) -> (carry, losses, accs, done)``:
      ``xs.shape[1]`` optimizer steps; model ``m``'s ``k``-th step uses the minibatch
      ``xs[slot[m], k]`` (``xs``: ``(slots, steps, batch_size, *input)``, one slot per
      distinct seed of the chunk, replicated on the mesh). The steps' minibatch losses and
      accuracies are written into the block's ``(steps_per_block, models)`` buffers
      ``losses``/``accs`` (donated) from row ``offset`` on: the layout :func:`program`'s
      scan gives them, so their block means reduce alike. ``done`` (the last step's
      losses, never donated) tells the host when the segment has finished.
    * ``metrics(carry, hp, xb, yb) -> (loss_sum, correct)``, each ``(models,)``: sums over one
      evaluation batch at the paper's θ (:meth:`dynsim.models.Model.metrics`).
    * ``record(carry, losses, accs, evals) -> {curve: (models,)}``: one record -- the
      block's running loss/accuracy from the filled buffers (``None`` for the step-0
      record: NaN), and ``{train,test}_{loss,accuracy}`` from
      ``evals[name] = (loss_sums, corrects, remainder)``: tuples with one ``(models,)`` array
      per full eval batch, and the remainder batch's pair (or ``None``), summed exactly as
      :func:`evaluate` sums them.

    ``sizes`` holds ``(("train", n_train), ("test", n_test))``: the means' denominators.
    """
    model = spec.model
    dtype = jnp.dtype(spec.dtype)
    n_of = dict(sizes)

    def build(hp):
        return spec.optimizer.build(**hp, **dict(spec.static))

    def segment_one(carry, hp, slot, xs, ys):
        _COMPILES["stream_segment"] += 1  # trace time only
        train_step = _train_step(spec, build(hp))
        # index inside the step (not xs[slot] up front): no per-model copy of the segment
        return jax.lax.scan(lambda c, k: train_step(c, xs[slot, k], ys[slot, k]), carry, jnp.arange(xs.shape[1]))

    def metrics_one(carry, hp, xb, yb):
        _COMPILES["stream_metrics"] += 1
        theta = build(hp).to_paper(carry["params"], carry["opt_state"])  # report the paper's θ
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
                out[f"{name}_loss"] = jnp.where(c["diverged"], nan, loss_sum / n)
                out[f"{name}_accuracy"] = jnp.where(c["diverged"], nan, ncorrect.astype(loss_sum.dtype) / n)
        out["grad_norm"] = c["grad_norm"]
        run_loss, run_acc = (nan, nan) if losses is None else (jnp.mean(losses), jnp.mean(accs))
        out["running_loss"] = jnp.where(c["diverged"], nan, run_loss)
        out["running_accuracy"] = jnp.where(c["diverged"], nan, run_acc)
        return out

    def record(carry, losses, accs, evals):
        _COMPILES["stream_record"] += 1
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


class HostPrograms(NamedTuple):
    """The compiled pieces of a host-stepped run (:func:`host_programs`)."""

    step: Any
    record: Any
    hessian: Any


@functools.lru_cache(maxsize=32)
def host_programs(spec: ProgramSpec) -> HostPrograms:
    """:func:`program`'s computation cut into pieces without loops or branches, for a host loop.

    XLA:CPU runs a convolution inside a ``while`` or ``conditional`` body an order of
    magnitude slower than at the top level of a program (jax-ml/jax#12868; measured in
    ``results/bench/README.md``), and :func:`program` steps inside both. Here the host calls
    (:mod:`dynsim.train_host`), each jitted and vmapped over models:

    * ``step(carry, hp, data, idx) -> (carry, loss, accuracy)``: one optimizer step
      (:func:`_train_step`); ``idx`` is each model's minibatch, ``(models, batch_size)``
      (``(models, 0)`` for full batch);
    * ``record(carry, hp, data, losses, accs) -> {curve: (models,)}``: the evaluation
      record, with the block's running loss/accuracy from its ``(steps_per_block, models)``
      step losses (NaN-filled for the step-0 record);
    * ``hessian(carry, hp, seed, data, record) -> {curve: ...}`` (``None`` without the Hessian
      metric): :func:`_hessian_metrics` with its loops unrolled.

    They compute what :func:`program` computes, in the same order, with the same Lanczos
    start vectors; results agree to float rounding (tested).
    """
    dtype = jnp.dtype(spec.dtype)

    def build(hp):
        return spec.optimizer.build(**hp, **dict(spec.static))

    def step_one(c, hp, data, idx):
        _COMPILES["host_step"] += 1  # trace time only
        x, y = data[0], data[1]
        return _train_step(spec, build(hp))(c, *((x, y) if spec.full_batch else (x[idx], y[idx])))

    def step(carry, hp, data, idx):
        carry, (loss, acc) = jax.vmap(step_one, in_axes=(0, 0, None, 0))(carry, hp, data, idx)
        return carry, loss, acc

    def record_one(c, hp, data, losses, accs):
        _COMPILES["host_record"] += 1
        m = _record(spec, build(hp), c, data)
        nan = jnp.asarray(jnp.nan, dtype)
        m["running_loss"] = jnp.where(c["diverged"], nan, jnp.mean(losses))
        m["running_accuracy"] = jnp.where(c["diverged"], nan, jnp.mean(accs))
        return m

    def hessian_one(c, hp, seed, data, record):
        _COMPILES["host_hessian"] += 1
        return _hessian_metrics(spec, build(hp), c, data[0], data[1], seed, record, unroll=True)

    return HostPrograms(
        step=jax.jit(step, donate_argnums=0),
        record=jax.jit(jax.vmap(record_one, in_axes=(0, 0, None, 1, 1))),
        hessian=(jax.jit(jax.vmap(hessian_one, in_axes=(0, 0, 0, None, None)))
                 if spec.hessian_every else None),
    )


def has_convolution(model: Model, input_shape, dtype) -> bool:
    """Whether ``model``'s forward pass contains a convolution (traced once, abstractly)."""
    x = jax.ShapeDtypeStruct((1, *input_shape), jnp.dtype(dtype))
    params = model.init(0, tuple(input_shape), jnp.dtype(dtype))
    jaxpr = jax.make_jaxpr(model.apply)(params, x)

    def walk(jp) -> bool:
        for eqn in jp.eqns:
            if eqn.primitive.name == "conv_general_dilated":
                return True
            for sub in jax_core.jaxprs_in_params(eqn.params):
                if walk(sub):
                    return True
        return False

    return walk(jaxpr.jaxpr)


@functools.partial(jax.jit, static_argnums=(2, 3, 4))
def seed_batches(seeds, epoch, n_train: int, steps_per_epoch: int, batch_size: int):
    """``(len(seeds), steps_per_epoch, batch_size)``: :func:`program`'s minibatch indices for each seed."""
    return jax.vmap(lambda s: _epoch_indices(_shuffle_key(s), epoch, n_train, steps_per_epoch, batch_size))(seeds)


def clear_cache() -> None:
    """Forget compiled programs (tests use it to count compilations from scratch)."""
    program.cache_clear()
    stream_programs.cache_clear()
    host_programs.cache_clear()
    _EXECUTABLES.clear()


_EXECUTABLES: dict = {}


def compiled(kind: str, fn, *args):
    """Ahead-of-time compile ``fn`` for these argument shapes and shardings, once per process.

    On CPU with :func:`dynsim.engine.platform.compiler_options` (a scheduler that avoids an
    XLA:CPU deadlock).
    """
    def aval(a):
        dt = np.dtype(a.dtype).str if hasattr(a, "dtype") else np.asarray(a).dtype.str
        return np.shape(a), dt, str(getattr(a, "sharding", None))

    avals = jax.tree.map(aval, args)
    is_aval = lambda x: isinstance(x, tuple) and len(x) == 3 and isinstance(x[2], str)  # noqa: E731
    key = (kind, fn, jax.tree.structure(args), tuple(jax.tree.leaves(avals, is_leaf=is_aval)))
    if key not in _EXECUTABLES:
        t0 = time.perf_counter()
        _EXECUTABLES[key] = (fn.lower(*args).compile(compiler_options()), time.perf_counter() - t0)
        return _EXECUTABLES[key][0], _EXECUTABLES[key][1]
    return _EXECUTABLES[key][0], 0.0


def bytes_per_model(spec: ProgramSpec, n_train: int) -> int:
    """Rough peak memory of one model: activations (forward + backward) plus parameters."""
    model = spec.model
    x = jax.ShapeDtypeStruct((1, *spec.input_shape), jnp.dtype(spec.dtype))

    def acts(p):
        _, st = model.module.apply({"params": p}, jnp.zeros(x.shape, x.dtype),
                                   capture_intermediates=True, mutable=["intermediates"])
        return st

    params = jax.eval_shape(lambda: model.module.init(jax.random.PRNGKey(0), jnp.zeros(x.shape, x.dtype)))["params"]
    inter = jax.eval_shape(acts, params)
    per_example = sum(math.prod(a.shape) for a in jax.tree.leaves(inter)) + math.prod(spec.input_shape)
    n_params = sum(math.prod(a.shape) for a in jax.tree.leaves(params))
    rows = n_train if spec.full_batch else spec.batch_size
    item = jnp.dtype(spec.dtype).itemsize
    hess = 0
    if spec.hessian_every:  # Lanczos basis + an HVP (forward-over-reverse) over one eval batch
        hess = (spec.hessian_iters + 6) * n_params + 4 * min(spec.eval_batch, n_train) * per_example
    return item * (3 * rows * per_example + spec.eval_batch * per_example + 8 * n_params + hess)
