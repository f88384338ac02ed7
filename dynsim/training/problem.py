r"""What a training run trains on: the model, the data, the seeds, and their fingerprints.

:func:`resolve_model` and :func:`prepare_data` accept the forms :func:`dynsim.train` documents
(objects, names, import paths); :func:`check_user_optimizer` builds a user's optax factory
once, concretely and traced, so its errors are named early; the digests identify the model,
data and optimizer code in a stored config, so a resume sees the same problem.
"""
from __future__ import annotations

import hashlib
from typing import NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from dynsim.checks import check_int
from dynsim.engine.grid import Grid, parse_grid
from dynsim.engine.plan import traced_control_flow
from dynsim.engine.problem import jaxpr_digest
from dynsim.hessian import Hessian
from dynsim.imports import import_object
from dynsim.models import Model
from dynsim.models import get as get_model
from dynsim.numerics import x64_enabled
from dynsim.optim.spec import OptimizerSpec, resolve_optimizer
from dynsim.training.spec import EVAL_SETS, ProgramSpec

__all__ = ["Problem", "resolve", "Schedule", "schedule", "optimizer_grid", "resolve_model", "prepare_data",
           "parse_seeds", "check_user_optimizer", "check_model_traceable",
           "data_digest", "model_digest", "optimizer_digest"]


class Problem(NamedTuple):
    """A training run, resolved and checked (:func:`resolve`).

    ``host_data`` = ``(x_train, y_train, x_test, y_test)`` in ``spec.dtype`` (labels int32);
    ``n_calls`` compiled calls of ``spec.blocks_per_call`` records each; ``steps_per_epoch``
    is 1 for full batch; ``thresholds`` maps a curve to the values whose first reach is stored.
    """

    spec: ProgramSpec
    grid: Grid
    seeds: list[int]
    host_data: tuple
    dataset_name: str
    data_bytes: float
    n_calls: int
    steps_per_epoch: int
    thresholds: dict[str, list[float]]
    eval_on: tuple[str, ...]

    @property
    def n_models(self) -> int:
        return len(self.grid.points) * len(self.seeds)

    @property
    def steps(self) -> int:
        return self.n_calls * self.spec.blocks_per_call * self.spec.steps_per_block

    @property
    def n_records(self) -> int:
        return 1 + self.n_calls * self.spec.blocks_per_call


def resolve(optimizer, model, dataset, grid, *, steps=None, epochs=None, batch_size=None, seeds=1,
            metrics_every=None, eval_on: Sequence[str] = EVAL_SETS, train_subset=None, test_subset=None,
            eval_batch: int = 10_000, dtype: str = "float32", hessian: Hessian | None = None,
            thresholds=None) -> Problem:
    """Resolve and check every argument of :func:`dynsim.train` that says *what* is trained."""
    model = resolve_model(model)
    opt = resolve_optimizer(optimizer)
    g = optimizer_grid(grid, opt)
    seed_list = parse_seeds(seeds)
    if dtype not in ("float32", "float64"):
        raise ValueError(f"dtype={dtype!r} must be 'float32' or 'float64'")
    if dtype == "float64" and not x64_enabled():
        raise ValueError("dtype='float64' needs jax_enable_x64 (dynsim --x64)")
    eval_on = tuple(eval_on)
    bad = [e for e in eval_on if e not in EVAL_SETS]
    if bad:
        raise ValueError(f"eval_on={eval_on!r}: unknown sets {bad}; choose from {EVAL_SETS}")
    if hessian is not None and not isinstance(hessian, Hessian):
        raise ValueError(f"hessian={hessian!r} must be a dynsim.hessian.Hessian(every, k, iters, at) or None")
    name, xtr, ytr, xte, yte = prepare_data(model, dataset, train_subset, test_subset)
    sched = schedule(len(xtr), steps, epochs, batch_size, metrics_every)
    if hessian is not None and hessian.every % sched.steps_per_block:
        raise ValueError(f"hessian=Hessian(every={hessian.every}) must be a multiple of metrics_every="
                         f"{sched.steps_per_block} (Hessian metrics are recorded with the others)")
    spec = ProgramSpec(
        model=model, optimizer=opt, hp_names=tuple(g.points[0]), static=tuple(sorted(g.static.items())),
        full_batch=batch_size is None, batch_size=sched.batch_size, steps_per_block=sched.steps_per_block,
        blocks_per_call=sched.blocks_per_call, eval_train="train" in eval_on, eval_test="test" in eval_on,
        eval_batch=check_int("eval_batch", eval_batch), input_shape=tuple(xtr.shape[1:]), dtype=dtype,
        hessian=hessian)
    check_model_traceable(model, spec.input_shape, dtype)
    np_dtype = np.dtype(dtype)
    data_bytes = sum(np.asarray(a).nbytes for a in (xtr, ytr, xte, yte)) * (np_dtype.itemsize / 4)
    host_data = tuple(np.asarray(a) for a in (xtr.astype(np_dtype), ytr, xte.astype(np_dtype), yte))
    thresholds = {k: [float(t) for t in np.atleast_1d(v)] for k, v in (thresholds or {}).items()}
    return Problem(spec, g, seed_list, host_data, name, data_bytes, sched.n_calls, sched.steps_per_epoch,
                   thresholds, eval_on)


class Schedule(NamedTuple):
    """Steps in compiled calls: ``n_calls`` calls of ``blocks_per_call`` records, ``steps_per_block``
    steps each (full batch: one record per call; minibatch: a call is an epoch)."""

    n_calls: int
    steps_per_block: int
    blocks_per_call: int
    steps_per_epoch: int
    batch_size: int


def schedule(n_train: int, steps, epochs, batch_size, metrics_every) -> Schedule:
    """Check the run length and record spacing; full batch takes ``steps``, minibatch ``epochs``."""
    if batch_size is None:
        if epochs is not None and steps is not None and epochs != steps:
            raise ValueError(f"full batch: steps={steps} and epochs={epochs} disagree (each step is an epoch)")
        steps = steps if steps is not None else epochs
        if steps is None:
            raise ValueError("steps=None: full-batch training needs steps (or epochs)")
        steps = check_int("steps", steps)
        me = check_int("metrics_every", 1 if metrics_every is None else metrics_every)
        if steps % me:
            raise ValueError(f"metrics_every={me} must divide steps={steps}")
        return Schedule(steps // me, me, 1, 1, n_train)
    bs = check_int("batch_size", batch_size)
    if bs > n_train:
        raise ValueError(f"batch_size={bs} exceeds the {n_train} training examples")
    if steps is not None:
        raise ValueError("steps is for full batch; with batch_size give epochs")
    if epochs is None:
        raise ValueError("epochs=None: minibatch training needs epochs")
    n_calls = check_int("epochs", epochs)
    spe = n_train // bs
    me = check_int("metrics_every", spe if metrics_every is None else metrics_every)
    if spe % me:
        raise ValueError(f"metrics_every={me} must divide the {spe} steps per epoch")
    return Schedule(n_calls, me, spe // me, spe, bs)


def optimizer_grid(grid, opt: OptimizerSpec) -> Grid:
    """:func:`dynsim.engine.grid.parse_grid`, checked against ``opt``: every name is one of its
    hyperparameters; for dynsim's rules the defaults are filled in and every point is checked by
    the rule itself (its message); a user's factory is built once (:func:`check_user_optimizer`)."""
    g = parse_grid(grid)
    g = g._replace(listed=g.points)  # built once: a training grid is as many models as points
    names = tuple(n for n in opt.params if not (opt.builtin and n == "lookahead")) if not opt.var_kwargs else None
    if names is not None:
        bad = [k for k in [*g.points[0], *g.static] if k not in opt.params]
        if bad:
            raise ValueError(f"grid: {bad} are not hyperparameters of {opt.name} (it takes {list(opt.params)})")
    if not opt.builtin:
        check_user_optimizer(opt, g.points[0], g.static)
        return g
    assert names is not None  # a builtin rule names its hyperparameters (no **kwargs)
    need = [n for n in names if n not in g.static]
    missing = [n for n in need if n not in g.points[0] and n not in opt.defaults]
    if missing:
        raise ValueError(f"grid: {opt.name} needs {missing} (given {sorted(g.points[0])})")
    full = []
    for p in g.points:
        q = {n: p[n] if n in p else opt.defaults[n] for n in need}  # each is in one (checked above)
        try:
            opt.factory(**q, **g.static)  # concrete values: the rule's own checks, with its message
        except ValueError as e:
            raise ValueError(f"grid point {p}: {e}") from None
        full.append({n: float(q[n]) for n in need})
    return g._replace(listed=full)


def check_user_optimizer(opt: OptimizerSpec, point, static) -> None:
    """Build the user's transformation at one point, concretely and traced: clear errors early."""
    try:
        opt.build(**point, **static)
    except (TypeError, ValueError) as e:
        raise ValueError(f"optimizer={opt.name!r}: calling it with {sorted({**point, **static})} failed "
                         f"({type(e).__name__}: {e})") from None
    p = jnp.zeros(3)
    try:
        jax.eval_shape(lambda hp: opt.build(**hp, **static).update(p, opt.build(**hp, **static).init(p), p),
                       {k: jnp.float32(v) for k, v in point.items()})
    except jax.errors.ConcretizationTypeError as e:
        raise ValueError(f"optimizer={opt.name!r}: hyperparameters {sorted(point)} cannot be runtime arrays: the "
                         f"factory uses them as Python values ({str(e).splitlines()[0]})") from None


def parse_seeds(seeds) -> list[int]:
    if isinstance(seeds, (int, np.integer)) and not isinstance(seeds, bool):
        return list(range(check_int("seeds", seeds)))
    try:
        out = [int(s) for s in seeds]
    except (TypeError, ValueError):
        raise ValueError(f"seeds={seeds!r} must be a count or a list of non-negative integers") from None
    if not out or any(s < 0 for s in out) or len(set(out)) != len(out):
        raise ValueError(f"seeds={seeds!r} must be a non-empty list of distinct non-negative integers")
    return out


def resolve_model(model) -> Model:
    if isinstance(model, str) and ":" in model:
        obj = import_object(model, "model")
        model = obj() if callable(obj) and not isinstance(obj, Model) else obj
        if not isinstance(model, Model):
            raise ValueError(f"model={model!r}: the import path must name a dynsim.models.Model or a function "
                             "returning one")
    return get_model(model)


def prepare_data(model: Model, dataset, train_subset, test_subset):
    from dynsim import data as data_mod

    if isinstance(dataset, str) and ":" in dataset:
        obj = import_object(dataset, "dataset")
        dataset = obj() if callable(obj) and not hasattr(obj, "x_train") else obj
    if isinstance(dataset, str):
        dataset = data_mod.load(dataset)
    if not hasattr(dataset, "x_train"):
        raise ValueError(f"dataset={dataset!r} must be a dynsim.data.Dataset or a dataset name")
    if model.flat_input:
        dataset = dataset.flatten()
    if dataset.num_classes != model.num_classes:
        raise ValueError(f"dataset has {dataset.num_classes} classes but model={model.name!r} "
                         f"has {model.num_classes} outputs")
    xtr, ytr, xte, yte = dataset.x_train, dataset.y_train, dataset.x_test, dataset.y_test
    for part, y in (("y_train", ytr), ("y_test", yte)):
        y = np.asarray(y)
        if y.size and (y.min() < 0 or y.max() >= model.num_classes or not np.issubdtype(y.dtype, np.integer)):
            raise ValueError(f"dataset {dataset.name!r}: {part} holds labels in [{y.min()}, {y.max()}], which do not "
                             f"fit model {model.name!r}'s {model.num_classes} classes "
                             f"(integers 0..{model.num_classes - 1})")
    if train_subset is not None:
        n = check_int("train_subset", train_subset)
        if n > len(xtr):
            raise ValueError(f"train_subset={n} exceeds the {len(xtr)} training examples")
        xtr, ytr = xtr[:n], ytr[:n]
    if test_subset is not None:
        n = check_int("test_subset", test_subset)
        if n > len(xte):
            raise ValueError(f"test_subset={n} exceeds the {len(xte)} test examples")
        xte, yte = xte[:n], yte[:n]
    return dataset.name, xtr, np.asarray(ytr, np.int32), xte, np.asarray(yte, np.int32)


def data_digest(*arrays) -> str:
    """sha256 of the training and test arrays: a resume must see the same data."""
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(str((a.dtype.str, a.shape)).encode())
        h.update(a.tobytes())
    return h.hexdigest()


def check_model_traceable(model: Model, input_shape, dtype) -> None:
    """Trace the model's init and loss as the compiled program will: Python control flow on the
    inputs or parameters (``if x[0] > 0:``) is named as such, not as a JAX internal error."""
    x = jnp.zeros((2, *input_shape), dtype)
    try:
        params = jax.eval_shape(lambda: model.module.init(jax.random.PRNGKey(0), x))["params"]
        jax.eval_shape(lambda p: model.loss_fn(p, x, jnp.zeros(2, jnp.int32)), params)
    except jax.errors.ConcretizationTypeError as e:
        raise ValueError(traced_control_flow(f"model={model.name!r}: its forward pass", e, "x")) from None


def model_digest(model: Model, input_shape, dtype) -> str:
    x = jnp.zeros((2, *input_shape), dtype)
    params = jax.eval_shape(lambda: model.module.init(jax.random.PRNGKey(0), x))["params"]
    p = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), params)
    return jaxpr_digest(lambda p, x: model.loss_fn(p, x, jnp.zeros(2, jnp.int32)), p, x) + ":" + model.init_scheme


def optimizer_digest(opt: OptimizerSpec, point, static) -> str | None:
    if opt.builtin:
        return None
    p = jnp.zeros(3, jnp.float32)

    def step(hp, g):
        tx = opt.build(**hp, **static)
        return tx.update(g, tx.init(p), p)

    return jaxpr_digest(step, {k: jnp.float32(v) for k, v in point.items()}, p)
