r"""The computation every step loop shares: one optimizer step, the evaluation, the Hessian record.

The three step loops (:mod:`dynsim.training.device`, :mod:`~dynsim.training.host`,
:mod:`~dynsim.training.stream`) call these functions, so they run literally the same
computation per step and per record. Also here: the minibatch order (:func:`epoch_batches`),
the initial state, and a memory estimate.
See :func:`dynsim.train` for the coordinates, divergence handling and seeds.
"""
from __future__ import annotations

import functools
import math
from typing import Any, Sequence

import jax
import jax.extend.core as jax_core
import jax.numpy as jnp
import numpy as np
import optax

from dynsim import hessian as hessian_mod
from dynsim.checks import check_int
from dynsim.engine.execute import compiled
from dynsim.models import Model
from dynsim.run import preconditioner
from dynsim.training.spec import ProgramSpec

PyTree = Any

__all__ = ["CompiledCalls", "evaluate", "record_metrics", "nan_if_diverged", "epoch_indices", "epoch_batches",
           "seed_batches", "initial_params",
           "initial_carry", "train_step", "hessian_metrics", "hessian_nan", "has_convolution", "bytes_per_model"]


class CompiledCalls:
    """Calls a step loop's compiled pieces, each compiled once per shape by the engine's cache
    (:func:`dynsim.engine.execute.compiled`); ``seconds`` sums the compiling paid here, which
    the loop's wall times leave out."""

    def __init__(self):
        self.seconds = 0.0

    def __call__(self, kind: str, fn, *args):
        exe, dt = compiled(kind, fn, *args)
        self.seconds += dt
        return exe(*args)


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


def record_metrics(spec: ProgramSpec, rule, carry, data, run_loss, run_acc) -> dict:
    """One model's record: ``{train,test}_{loss,accuracy}`` at the paper's θ on the device data,
    ``grad_norm``, and the running loss/accuracy of the block."""
    theta = rule.to_paper(carry["params"], carry["opt_state"])  # report the paper's θ
    out = {}
    for name, (x, y), on in (("train", data[:2], spec.eval_train), ("test", data[2:], spec.eval_test)):
        if on:
            loss, acc = evaluate(spec.model, theta, x, y, spec.eval_batch)
            out.update(nan_if_diverged(carry, {f"{name}_loss": loss, f"{name}_accuracy": acc}))
    out["grad_norm"] = carry["grad_norm"]
    out.update(nan_if_diverged(carry, {"running_loss": run_loss, "running_accuracy": run_acc}))
    return out


def nan_if_diverged(carry, values: dict) -> dict:
    """``values`` with NaN for a diverged model (its metrics after divergence mean nothing)."""
    return {k: jnp.where(carry["diverged"], jnp.asarray(jnp.nan, v.dtype), v) for k, v in values.items()}


def epoch_indices(seed, epoch, n_train: int, steps_per_epoch: int, batch_size: int):
    """``(steps_per_epoch, batch_size)`` example indices of ``epoch`` for ``seed`` (traceable):
    ``permutation(fold_in(fold_in(PRNGKey(seed), 1), epoch), n_train)``, cut into batches."""
    shuffle_key = jax.random.fold_in(jax.random.PRNGKey(seed), 1)
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
    return np.asarray(epoch_indices(seed, epoch, n_train, n_train // batch_size, batch_size))


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


def train_step(spec: ProgramSpec, rule):
    """One optimizer step of one model on the batch ``(xb, yb)``: ``(carry, (loss, accuracy))``.

    Shared by the three step loops, so they run literally the same computation per step.
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


def hessian_metrics(spec: ProgramSpec, rule, c, x, y, seed, record, unroll: bool = False) -> dict:
    """One model's Hessian record: Lanczos on the full training loss at Θ (or θ); NaN once diverged.

    The start vector depends on ``(seed, record)`` only, so every step loop draws the same one.
    ``unroll=True`` unrolls the Lanczos and batch loops (:mod:`dynsim.training.host`).
    """
    dtype = jnp.dtype(spec.dtype)
    hess = spec.hessian
    assert hess is not None  # called only for programs that record the Hessian
    point = (c["params"] if hess.at == "lookahead"
             else rule.to_paper(c["params"], c["opt_state"]))
    key = jax.random.fold_in(jax.random.fold_in(jax.random.PRNGKey(seed), 2), record)
    mv = functools.partial(_train_hvp, spec, x, y, point, unroll=unroll)
    res = hessian_mod.lanczos_top_k(mv, point, hess.k, hess.iters, key, unroll=unroll or 1)
    out = {"sharpness": res.eigenvalues[0], "sharpness_residual": res.residuals[0],
           "hessian_eigenvalues": res.eigenvalues}
    if spec.preconditioned:
        pmv = hessian_mod.preconditioned_matvec(mv, preconditioner(rule, c["opt_state"]))
        out["preconditioned_sharpness"] = hessian_mod.lanczos_top_k(
            pmv, point, 1, hess.iters, jax.random.fold_in(key, 1), unroll=unroll or 1).eigenvalues[0]
    return nan_if_diverged(c, {k: v.astype(dtype) for k, v in out.items()})


def hessian_nan(spec: ProgramSpec) -> dict:
    """A Hessian record of NaN (records between two Hessian records, and the step-0 record's skip)."""
    dtype = jnp.dtype(spec.dtype)
    assert spec.hessian is not None  # called only for programs that record the Hessian
    out = {"sharpness": jnp.nan, "sharpness_residual": jnp.nan,
           "hessian_eigenvalues": jnp.full((spec.hessian.k,), jnp.nan)}
    if spec.preconditioned:
        out["preconditioned_sharpness"] = jnp.nan
    return {k: jnp.asarray(v, dtype) for k, v in out.items()}


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
    """``(len(seeds), steps_per_epoch, batch_size)``: :func:`epoch_indices` for each seed."""
    return jax.vmap(lambda s: epoch_indices(s, epoch, n_train, steps_per_epoch, batch_size))(seeds)


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
    if spec.hessian is not None:  # Lanczos basis + an HVP (forward-over-reverse) over one eval batch
        hess = (spec.hessian.iters + 6) * n_params + 4 * min(spec.eval_batch, n_train) * per_example
    return item * (3 * rows * per_example + spec.eval_batch * per_example + 8 * n_params + hess)
