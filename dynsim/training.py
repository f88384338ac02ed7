r"""Train many networks at once: one compiled program, ``vmap`` over hyperparameters × seeds.

:func:`train` runs full-batch gradient descent (each step is an epoch, Nakerst §4
Fig. 5) or minibatch SGD (reshuffled every epoch, Fig. 6 and Wu et al.) with any
:mod:`dynsim.optim` rule, used *unchanged* as an optax ``GradientTransformation``, or any
optax factory (``optax.adam``; its θ is its parameters). The rule is built inside the
vmapped function from array hyperparameters, so a whole grid of (η, μ, σ, ...) × seeds
shares one XLA program (:mod:`dynsim.train_program`). The models run through the sweep
engine (:mod:`dynsim.train_engine`): chunks sized to device memory, each sharded over
the local devices, written to a zarr store as it finishes (``out=``), resumable after any
kill, and split over ``jax.distributed`` processes like landscape sweeps.

**Data placement.** ``data_placement="replicate"`` copies the whole dataset (train and test)
to every device once; the program draws its minibatches and evaluation batches there. It
needs the data to fit ``memory_fraction`` of a device's memory. ``"stream"``
(:mod:`dynsim.train_stream`, minibatch training only) keeps the data on the host: each call
(epoch) is cut into segments of at most ``metrics_every`` steps, and before each segment the
host gathers the segment's minibatches for every distinct seed of the chunk (models share
their seed's minibatches) and transfers them -- ``slots × steps × batch_size`` examples, sized
to half the budget, the next one in flight while the current one computes; at each record
the evaluated sets are transferred in batches of ``eval_batch``. That is the cost: per epoch
and chunk, ``n_seeds_in_chunk × n_train`` examples, plus one pass over the evaluated sets per
record (``eval_on=("test",)`` avoids re-sending the training set). Every model still sees
exactly its :func:`epoch_batches`, and the steps are the replicated program's own
(:func:`dynsim.train_program.stream_programs`): trajectories, gradient norms, running losses
and accuracies are bit for bit those of ``"replicate"``; the train/test *losses* are too when
each set is one evaluation batch, else equal to float rounding (XLA rounds the per-batch sums
of the replicated program's evaluation loop differently). ``"auto"`` (the default)
replicates when the data fit the budget -- unchanged from before the option existed -- and
streams otherwise. Full-batch training (``batch_size=None``) and Hessian metrics
(``hessian_every > 0``, whose Lanczos HVPs run over the whole training loss inside the
program) need the data on the device: with data that do not fit they are refused with a
ValueError naming the way out (``batch_size``, ``train_subset``, ``memory_fraction``).

**Step loop.** ``step_loop="device"`` runs each call's steps inside the compiled program
(a ``scan``: one dispatch per call). ``"host"`` (:mod:`dynsim.train_host`) calls one compiled
step per optimizer step, then the record: XLA:CPU runs convolutions inside a loop body an
order of magnitude slower than outside one (jax-ml/jax#12868), so ``"auto"`` (the default)
picks ``"host"`` on CPU for models with a convolution and ``"device"`` otherwise; on CPU such
models also default to ``chunk_size=1``, since XLA:CPU runs a vmapped (grouped) convolution
several times slower per model than one model's. Both loops give the same numbers to float rounding
(bit for bit in the tests, Lanczos aside); ``attrs["step_loop"]`` says which ran. Measurements:
``results/bench/README.md``.

**Coordinates.** The optax parameters are the rule's reparametrised
:math:`\Theta_i = \theta_i + \sigma u_{i-1}` (the gradient at Θ is the look-ahead
gradient; see :mod:`dynsim.optim`). Every reported metric -- train/test loss and
accuracy -- is evaluated at the *paper's* parameters :math:`\theta_i =`
``rule.to_paper(Θ_i, state)``, the iterate of Nakerst eq. (4), so curves are comparable
with the paper and with :func:`dynsim.simulate`. For σ = 0 (GD, heavy ball) Θ = θ.
The gradient norm is that of the last gradient the rule used (at Θ, on the last
minibatch).

**Divergence.** After every step each model checks that its loss, gradient norm and
new parameter norm are finite; the first failure sets ``diverged``, records
``diverged_at`` (the step) and freezes that model's parameters and optimizer state.
Its later metrics are NaN. Models are independent under ``vmap``, so a divergent
model never touches its neighbours.

**Seeds.** Seed ``s`` draws the initial parameters with ``model.init(s, ...)`` (numpy,
on the host; the same for every hyperparameter point, as Nakerst start every
algorithm from the same parameters) and the minibatch order of epoch ``e`` from
``permutation(fold_in(fold_in(PRNGKey(s), 1), e), n_train)`` (:func:`epoch_batches`); each epoch visits
``steps_per_epoch·batch_size`` distinct examples (all of them when ``batch_size``
divides ``n_train``; otherwise a different remainder is dropped each epoch).

**Hessian spectrum (edge of stability).** With ``hessian_every=N`` every record at a
multiple of ``N`` steps also holds the top ``hessian_k`` eigenvalues of the Hessian of the
*full training loss* (the loss ``train_loss`` reports, over all ``n_train`` examples, in
batches of ``eval_batch``; for minibatch runs too), by Lanczos on forward-over-reverse
Hessian-vector products (:mod:`dynsim.hessian`), inside the compiled program and vmapped
over the models like every other metric. The Hessian is taken at the **look-ahead point**
Θ -- the optax parameters, where the rule evaluates its gradient -- not at the paper's θ:
linearising the map around the run, a perturbation evolves by
``δu_i = μδu_{i−1} − η∇²L(Θ_i)(δθ_i + σδu_{i−1})``, so ``∇²L(Θ)`` is the curvature that
:func:`dynsim.analysis.stability_threshold` ``2(1+μ)/(η(1+2σ))`` bounds (Θ = θ for
σ = 0; ``hessian_at="theta"`` takes it at θ instead, for comparison). For
``rmsprop_sa``/``adam_sa`` the preconditioned sharpness ``λ_max(P^{-1}∇²L)`` with the
rule's current preconditioner (:func:`dynsim.run.preconditioner`) is recorded as well; its
threshold is :func:`dynsim.analysis.preconditioned_stability_threshold`. Off-records
cost nothing (a ``lax.cond`` on the record number, which ``vmap`` does not batch); a
record costs ``hessian_iters`` HVPs (``2×`` that for the adaptive rules).

Results come back as an ``xarray.Dataset`` with dims ``(*hyperparameter axes, seed,
step|epoch)``.
"""
from __future__ import annotations

import hashlib
import json
import os
import pathlib
import time
from typing import Any, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from dynsim import hessian as hessian_mod
from dynsim import train_host, train_stream
from dynsim.checks import check_int
from dynsim.engine import platform as _platform
from dynsim.engine.plan import as_axis, jsonable
from dynsim.engine.problem import OptimizerSpec, import_object, jaxpr_digest, resolve_optimizer
from dynsim.engine.store import Variable
from dynsim.models import Model
from dynsim.models import get as get_model
from dynsim.train_engine import ModelJob, run_models
from dynsim.train_program import (ProgramSpec, bytes_per_model, clear_cache, compile_count, compiled,
                                  epoch_batches, has_convolution, initial_carry, initial_params, program,
                                  record_names)

PyTree = Any

__all__ = [
    "train",
    "run_config",
    "steps_to_threshold",
    "at_threshold",
    "benchmark",
    "compile_count",
    "clear_cache",
    "epoch_batches",
    "EVAL_SETS",
    "DATA_PLACEMENTS",
    "STEP_LOOPS",
    "PROBLEM_KEYS",
]

EVAL_SETS = ("train", "test")
#: Values of ``data_placement`` (:func:`train`).
DATA_PLACEMENTS = ("auto", "replicate", "stream")
#: Values of ``step_loop`` (:func:`train`).
STEP_LOOPS = ("auto", "device", "host")


# --------------------------------------------------------------------------- argument checks


def _parse_grid(grid, opt: OptimizerSpec):
    """Returns ``(dims, coords, points, fixed, static)``.

    ``points`` is the flat list of hyperparameter dicts (C order over ``dims``); ``coords``
    maps each dim (and, for point lists, each hyperparameter) to values; booleans are
    ``static`` (fixed non-numeric arguments, not per point).
    """
    names = tuple(n for n in opt.params if not (opt.builtin and n == "lookahead")) if not opt.var_kwargs else None

    def check_names(keys):
        if names is None:
            return
        bad = [k for k in keys if k not in opt.params]
        if bad:
            raise ValueError(f"grid: {bad} are not hyperparameters of {opt.name} (it takes {list(opt.params)})")

    static: dict[str, Any] = {}
    if isinstance(grid, Mapping):
        if not grid:
            raise ValueError(f"grid={{}} is empty: give values for {opt.name}'s {list(opt.params)}")
        check_names(list(grid))
        dims, axes, fixed = [], [], {}
        for k, v in grid.items():
            a = as_axis(k, v)
            if isinstance(a, bool):
                static[k] = a
            elif isinstance(a, float):
                fixed[k] = a
            else:
                dims.append(k)
                axes.append(a)
        points = []
        for combo in (np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, len(axes))
                      if axes else np.zeros((1, 0))):
            p = dict(fixed)
            p.update({d: float(x) for d, x in zip(dims, combo)})
            points.append(p)
        coords = {d: ((d,), a) for d, a in zip(dims, axes)}
    elif isinstance(grid, Sequence) and not isinstance(grid, str):
        if len(grid) == 0:
            raise ValueError("grid=[] is empty: give at least one hyperparameter point")
        if not all(isinstance(p, Mapping) for p in grid):
            raise ValueError("grid must be a mapping name -> values or a list of mappings (points)")
        keys = set(grid[0])
        for p in grid:
            if set(p) != keys:
                raise ValueError(f"grid points must all name the same hyperparameters; "
                                 f"got {sorted(keys)} and {sorted(p)}")
            check_names(list(p))
            for k, v in p.items():
                if not isinstance(as_axis(k, v), float):
                    raise ValueError(f"grid point {dict(p)}: {k} must be a number")
        points = [{k: float(v) for k, v in p.items()} for p in grid]
        dims = ["config"]
        coords = {"config": (("config",), np.arange(len(points)))}
        coords.update({k: (("config",), np.array([p[k] for p in points])) for k in sorted(keys)})
        fixed = {}
    else:
        raise ValueError(f"grid={grid!r} must be a mapping name -> values or a list of mappings")

    if opt.builtin:  # dynsim's rules: defaults filled in, every point checked by the rule itself
        need = [n for n in names if n not in static]
        missing = [n for n in need if n not in points[0] and n not in opt.defaults]
        if missing:
            raise ValueError(f"grid: {opt.name} needs {missing} (given {sorted(points[0])})")
        full = []
        for p in points:
            q = {n: p.get(n, opt.defaults.get(n)) for n in need}
            try:
                opt.factory(**q, **static)  # concrete values: the rule's own checks, with its message
            except ValueError as e:
                raise ValueError(f"grid point {p}: {e}") from None
            full.append({n: float(q[n]) for n in need})
        points = full
    else:
        _check_user_optimizer(opt, points[0], static)
    return dims, coords, points, fixed, static


def _check_user_optimizer(opt: OptimizerSpec, point, static) -> None:
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


def _parse_seeds(seeds) -> list[int]:
    if isinstance(seeds, (int, np.integer)) and not isinstance(seeds, bool):
        return list(range(check_int("seeds", seeds)))
    try:
        out = [int(s) for s in seeds]
    except (TypeError, ValueError):
        raise ValueError(f"seeds={seeds!r} must be a count or a list of non-negative integers") from None
    if not out or any(s < 0 for s in out) or len(set(out)) != len(out):
        raise ValueError(f"seeds={seeds!r} must be a non-empty list of distinct non-negative integers")
    return out


def _resolve_model(model) -> Model:
    if isinstance(model, str) and ":" in model:
        obj = import_object(model, "model")
        model = obj() if callable(obj) and not isinstance(obj, Model) else obj
        if not isinstance(model, Model):
            raise ValueError(f"model={model!r}: the import path must name a dynsim.models.Model or a function "
                             "returning one")
    return get_model(model)


def _prepare_data(model: Model, dataset, train_subset, test_subset):
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
                             f"fit model {model.name!r}'s {model.num_classes} classes (integers 0..{model.num_classes - 1})")
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


def _placement(data_placement, data_bytes, budget, name, memory_fraction, batch_size, hessian_every) -> str:
    """``"replicate"`` or ``"stream"``; a clear ValueError for what cannot be streamed."""
    fits = data_bytes <= budget
    size = (f"dataset {name!r} ({data_bytes / 2**20:.3g} MiB) does not fit memory_fraction={memory_fraction} "
            f"of the device ({budget / 2**20:.3g} MiB)")
    if data_placement == "replicate" and not fits:
        raise ValueError(f"{size}: with data_placement='replicate' the data are replicated on every device; use "
                         "train_subset/test_subset, raise memory_fraction, or stream minibatches "
                         "(data_placement='stream' or 'auto', with batch_size)")
    if data_placement == "replicate" or (data_placement == "auto" and fits):
        return "replicate"
    why = "was asked for" if data_placement == "stream" else f"is needed: the {size}"
    if batch_size is None:
        raise ValueError(f"data_placement='stream' {why}, but full-batch training (batch_size=None) needs the whole "
                         "training set on every device at every step, so only minibatches are streamed; give "
                         "batch_size, or use train_subset/test_subset or a larger memory_fraction to replicate")
    if hessian_every:
        raise ValueError(f"data_placement='stream' {why}, but hessian_every={hessian_every} needs the training set "
                         "on every device (each Hessian record runs hessian_iters Hessian-vector products over the "
                         "full training loss inside the program); set hessian_every=0, or use train_subset or a "
                         "larger memory_fraction to replicate")
    return "stream"


def _data_digest(*arrays) -> str:
    """sha256 of the training and test arrays: a resume must see the same data."""
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(str((a.dtype.str, a.shape)).encode())
        h.update(a.tobytes())
    return h.hexdigest()


def _check_model_traceable(model: Model, input_shape, dtype) -> None:
    """Trace the model's init and loss as the compiled program will: Python control flow on the
    inputs or parameters (``if x[0] > 0:``) is named as such, not as a JAX internal error."""
    from dynsim.engine.plan import traced_control_flow

    x = jnp.zeros((2, *input_shape), dtype)
    try:
        params = jax.eval_shape(lambda: model.module.init(jax.random.PRNGKey(0), x))["params"]
        jax.eval_shape(lambda p: model.loss_fn(p, x, jnp.zeros(2, jnp.int32)), params)
    except jax.errors.ConcretizationTypeError as e:
        raise ValueError(traced_control_flow(f"model={model.name!r}: its forward pass", e, "x")) from None


def _model_digest(model: Model, input_shape, dtype) -> str:
    x = jnp.zeros((2, *input_shape), dtype)
    params = jax.eval_shape(lambda: model.module.init(jax.random.PRNGKey(0), x))["params"]
    p = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), params)
    return jaxpr_digest(lambda p, x: model.loss_fn(p, x, jnp.zeros(2, jnp.int32)), p, x) + ":" + model.init_scheme


def _optimizer_digest(opt: OptimizerSpec, point, static) -> str | None:
    if opt.builtin:
        return None
    p = jnp.zeros(3, jnp.float32)

    def step(hp, g):
        tx = opt.build(**hp, **static)
        return tx.update(g, tx.init(p), p)

    return jaxpr_digest(step, {k: jnp.float32(v) for k, v in point.items()}, p)


def _first_reach(values: np.ndarray, times: np.ndarray, thresholds) -> np.ndarray:
    """``(models, len(thresholds))``: first time at which ``values[m] >= t`` (NaN if never)."""
    out = np.full((values.shape[0], len(thresholds)), np.nan)
    for j, t in enumerate(thresholds):
        hit = np.nan_to_num(values, nan=-np.inf) >= t
        first = np.argmax(hit, axis=1)
        out[:, j] = np.where(hit.any(axis=1), times[first], np.nan)
    return out


# --------------------------------------------------------------------------- the front


def train(
    model: Model | str,
    dataset,
    optimizer,
    grid,
    *,
    steps: int | None = None,
    epochs: int | None = None,
    batch_size: int | None = None,
    seeds: int | Sequence[int] = 1,
    metrics_every: int | None = None,
    eval_on: Sequence[str] = EVAL_SETS,
    train_subset: int | None = None,
    test_subset: int | None = None,
    chunk_size: int | None = None,
    memory_fraction: float = 0.25,
    data_placement: str = "auto",
    step_loop: str = "auto",
    eval_batch: int = 10_000,
    dtype: str = "float32",
    progress: bool = True,
    hessian_every: int = 0,
    hessian_k: int = 1,
    hessian_iters: int = hessian_mod.DEFAULT_ITERS,
    hessian_at: str = "lookahead",
    thresholds: Mapping[str, Sequence[float]] | None = None,
    out: str | pathlib.Path | None = None,
    devices: int | None = None,
    chunks: slice | None = None,
    _stop_after: int | None = None,
    _source: Mapping | None = None,
    _source_text: str | None = None,
    _resume_only: bool = False,
):
    r"""Train every (hyperparameter point × seed) of ``grid`` with one compiled program.

    Args:
      model: a :class:`dynsim.models.Model` (any flax module: :func:`dynsim.models.from_module`),
        a name in :data:`dynsim.models.MODELS`, or an import path to a function returning one.
      dataset: a :class:`dynsim.data.Dataset` (any data in memory), a name for
        :func:`dynsim.data.load`, or an import path to a function returning one.
      optimizer: a :mod:`dynsim.optim` rule name (``"super_accelerated"``, ``"nag"``, ...)
        or factory, any factory of an optax transformation (``optax.adam``), or an import
        path (``"optax:adam"``).
      grid: either ``{name: value or 1-D values}`` -- the outer product of the lists, one
        dim per list, scalars held fixed -- or a list of ``{name: value}`` points along a
        ``config`` dim. Unnamed hyperparameters take the factory's defaults.
      steps: full-batch GD (``batch_size=None``): number of steps (= epochs).
      epochs: minibatch SGD: number of epochs of ``n_train // batch_size`` steps.
      batch_size: ``None`` for full batch, else the minibatch size (reshuffled every epoch).
      seeds: a list of seeds, or a count ``n`` meaning seeds ``0..n-1``.
      metrics_every: steps between metric records (default 1 for full batch, one epoch
        for minibatch, where it must divide the steps per epoch). Step 0 is always recorded.
      eval_on: which of ``"train"``, ``"test"`` to evaluate (at the paper's θ).
      train_subset, test_subset: use only the first ``n`` examples.
      chunk_size: models per chunk, one compiled call sharded over the devices (default: as
        many as fit in ``memory_fraction`` of device memory, by a rough activation estimate;
        1 on CPU for models with a convolution, see "Step loop").
      memory_fraction: share of one device's memory (host RAM on CPU) the data and a chunk's
        models may use.
      data_placement: ``"replicate"`` (the whole dataset on every device, once),
        ``"stream"`` (minibatch training only: the host sends each segment of minibatches for
        the chunk's seeds, at most ``metrics_every`` steps of them, and the evaluated sets in
        batches of ``eval_batch`` at each record -- a host→device transfer of about
        ``seeds_in_chunk × n_train`` examples per epoch and chunk, plus one pass over the
        evaluated sets per record; no Hessian metrics) or ``"auto"`` (default: replicate when
        the data fit ``memory_fraction`` of a device, else stream). Full-batch runs whose data
        do not fit are refused (use ``batch_size`` or ``train_subset``). Streaming gives the
        replicated numbers: see the module docstring. The choice is in
        ``attrs["data_placement"]`` (and, when streaming, in the stored config).
      step_loop: ``"device"`` (each call's steps in one compiled loop), ``"host"`` (one
        compiled call per step: for convolutions on XLA:CPU) or ``"auto"`` (default: host on
        CPU for models with a convolution). See "Step loop" in the module docstring.
      dtype: ``"float32"`` or ``"float64"`` (needs ``jax_enable_x64``).
      hessian_every: record Hessian-spectrum metrics every this many steps (a multiple of
        ``metrics_every``; 0 = off, the default). See the module docstring: full training
        loss, at the look-ahead point Θ, Lanczos on HVPs.
      hessian_k: number of top Hessian eigenvalues to record (``hessian_eigenvalues``).
      hessian_iters: Lanczos steps (= HVPs) per record (``≥ hessian_k``).
      hessian_at: ``"lookahead"`` (Θ, default: the point the stability bound is about) or
        ``"theta"`` (the paper's θ).
      thresholds: ``{metric: [values]}``: per model, the first time (``step`` or ``epoch``)
        at which the metric reaches each value, stored as ``steps_to_<metric>`` with a dim
        ``<metric>_threshold`` (NaN: never).
      out: result directory (zarr store, config, progress log) written chunk by chunk; an
        existing ``out`` holding the same training sweep is resumed, any other is refused.
      devices: number of local devices to shard each chunk's models over (default all).
      chunks: run only these chunk indices (``jax.distributed``; see :mod:`dynsim.engine.runner`).

    Returns:
      ``xarray.Dataset`` with dims ``(*grid dims, seed, step)`` (full batch) or
      ``(*grid dims, seed, epoch)`` (minibatch; ``step`` is then a coordinate; fractional
      epochs when ``metrics_every`` is less than an epoch). Variables per record:
      ``{train,test}_{loss,accuracy}`` (full passes at θ), ``running_{loss,accuracy}``
      (mean over the steps since the previous record of the minibatch loss/accuracy at
      the gradient point Θ -- what Keras prints), ``grad_norm``, ``wall_time`` (seconds
      since the model's chunk started, compile excluded; shared by the chunk); per model
      ``diverged``, ``diverged_at`` (step, −1 if never). Attributes record the setup
      (``data_placement``; when streaming ``stream_steps_per_transfer``, ``stream_slots``);
      ``attrs["complete"]`` tells whether every chunk ran.
      With ``hessian_every``: ``sharpness`` (top eigenvalue), ``sharpness_residual``
      (its Lanczos residual bound), ``hessian_eigenvalues`` (extra dim ``eig``, 0 = top)
      and, for ``rmsprop_sa``/``adam_sa``, ``preconditioned_sharpness``; NaN at records
      that are not a multiple of ``hessian_every`` and after divergence.

    Example (sklearn digits, two σ × two seeds in one program):

    >>> from dynsim import data, models
    >>> ds = train(models.nielsen_mlp((8,), input_dim=64), data.load("digits"), "super_accelerated",
    ...            {"learning_rate": 0.5, "momentum": 0.9, "sigma": [0.0, 4.0]}, steps=4,
    ...            seeds=2, progress=False)
    >>> dict(ds.test_accuracy.sizes)
    {'sigma': 2, 'seed': 2, 'step': 5}
    """
    model = _resolve_model(model)
    opt = resolve_optimizer(optimizer)
    dims, coords, points, fixed, static = _parse_grid(grid, opt)
    seed_list = _parse_seeds(seeds)
    if dtype not in ("float32", "float64"):
        raise ValueError(f"dtype={dtype!r} must be 'float32' or 'float64'")
    if dtype == "float64" and not jax.config.jax_enable_x64:
        raise ValueError("dtype='float64' needs jax_enable_x64 (dynsim --x64)")
    eval_on = tuple(eval_on)
    bad = [e for e in eval_on if e not in EVAL_SETS]
    if bad:
        raise ValueError(f"eval_on={eval_on!r}: unknown sets {bad}; choose from {EVAL_SETS}")
    eval_batch = check_int("eval_batch", eval_batch)
    hessian_every = check_int("hessian_every", hessian_every, lo=0)
    hessian_k = check_int("hessian_k", hessian_k)
    hessian_iters = check_int("hessian_iters", hessian_iters)
    if hessian_k > hessian_iters:
        raise ValueError(f"hessian_k={hessian_k} must be <= hessian_iters={hessian_iters}")
    if hessian_at not in ("lookahead", "theta"):
        raise ValueError(f"hessian_at={hessian_at!r} must be 'lookahead' or 'theta'")
    if not 0 < memory_fraction <= 1:
        raise ValueError(f"memory_fraction={memory_fraction!r} must be in (0, 1]")
    if data_placement not in DATA_PLACEMENTS:
        raise ValueError(f"data_placement={data_placement!r} must be one of {', '.join(map(repr, DATA_PLACEMENTS))}")
    if step_loop not in STEP_LOOPS:
        raise ValueError(f"step_loop={step_loop!r} must be one of {', '.join(map(repr, STEP_LOOPS))}")

    name, xtr, ytr, xte, yte = _prepare_data(model, dataset, train_subset, test_subset)
    n_train = len(xtr)

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
        n_calls, spb, bpc, spe, bs = steps // me, me, 1, 1, n_train
    else:
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
        spb, bpc = me, spe // me
    if hessian_every % spb:
        raise ValueError(f"hessian_every={hessian_every} must be a multiple of metrics_every={spb} "
                         "(Hessian metrics are recorded with the others)")

    spec = ProgramSpec(
        model=model, optimizer=opt, hp_names=tuple(points[0]), static=tuple(sorted(static.items())),
        full_batch=batch_size is None, batch_size=bs, steps_per_block=spb, blocks_per_call=bpc,
        eval_train="train" in eval_on, eval_test="test" in eval_on, eval_batch=eval_batch,
        input_shape=tuple(xtr.shape[1:]), dtype=dtype, hessian_every=hessian_every, hessian_k=hessian_k,
        hessian_iters=hessian_iters, hessian_at=hessian_at,
    )
    _check_model_traceable(model, spec.input_shape, dtype)
    n_models = len(points) * len(seed_list)
    np_dtype = np.dtype(dtype)
    data_bytes = sum(np.asarray(a).nbytes for a in (xtr, ytr, xte, yte)) * (np_dtype.itemsize / 4)
    budget = memory_fraction * _platform.device_memory_bytes()
    placement = _placement(data_placement, data_bytes, budget, name, memory_fraction, batch_size, hessian_every)
    if step_loop == "host" and placement == "stream":
        raise ValueError("step_loop='host' needs the data on the device, but they are streamed (data_placement="
                         f"{data_placement!r}); use step_loop='auto' or 'device', or replicate the data")
    # see "Step loop" in the module docstring
    cpu_conv = (placement == "replicate" and _platform.platform() == "cpu"
                and has_convolution(model, spec.input_shape, dtype))
    if step_loop == "auto":
        step_loop = "host" if cpu_conv else "device"
    # streamed: half the budget for the transfers in flight, half for the models
    share = budget / 2 if placement == "stream" else 0.0
    if chunk_size is None and cpu_conv:
        chunk_size = 1  # XLA:CPU runs vmapped (grouped) convolutions slower per model than one alone
    if chunk_size is None:
        room = budget - share if placement == "stream" else budget - data_bytes
        chunk_size = max(1, min(n_models, int(room // max(1, bytes_per_model(spec, n_train)))))
    chunk_size = min(check_int("chunk_size", chunk_size), n_models)
    if placement == "stream":
        n_slots = min(len(seed_list), chunk_size)  # distinct seeds a chunk can hold
        n_eval = max([n for n, on in ((n_train, spec.eval_train), (len(xte), spec.eval_test)) if on], default=0)
        seg = train_stream.segment_steps(spec, n_eval, n_slots, share)
    thresholds = {k: [float(t) for t in np.atleast_1d(v)] for k, v in (thresholds or {}).items()}

    # model m = (point m // n_seeds, seed m % n_seeds): C order over (*grid dims, seed)
    hp_all = {k: np.array([p[k] for p in points], np_dtype).repeat(len(seed_list)) for k in spec.hp_names}
    seed_all = np.tile(np.array(seed_list, np.int32), len(points))
    seed_idx_all = np.tile(np.arange(len(seed_list)), len(points))
    params_by_seed = initial_params(model, seed_list, spec.input_shape, dtype)
    prog = program(spec)
    rule0 = opt.build(**points[0], **static)  # only for the (value-independent) state layout
    n_rec = 1 + n_calls * bpc
    host_data = tuple(np.asarray(a) for a in (xtr.astype(np_dtype), ytr, xte.astype(np_dtype), yte))

    # ---- what is recorded: the program's outputs, by their shapes
    shapes = record_names(spec)
    grid_dims = [*dims, "seed"]
    shape = tuple(len(coords[d][1]) for d in dims) + (len(seed_list),)
    if batch_size is None:
        tdim, times = "step", np.arange(n_rec) * spb
        tcoords = {"step": (("step",), times)}
    else:
        tdim, steps_axis = "epoch", np.arange(n_rec) * spb
        times = steps_axis / spe
        tcoords = {"epoch": (("epoch",), times), "step": (("epoch",), steps_axis)}
    extra_dims = {"hessian_eigenvalues": ("eig",)}
    variables = [Variable(k, (*grid_dims, tdim, *extra_dims.get(k, ())), np_dtype.str) for k in shapes]
    variables.append(Variable("wall_time", (*grid_dims, tdim), "<f8",
                              attrs={"description": "seconds since the chunk started, compile excluded"}))
    variables.append(Variable("diverged", tuple(grid_dims), "bool", False))
    variables.append(Variable("diverged_at", tuple(grid_dims), "<i8", -1))
    for k, ts in thresholds.items():
        if k not in shapes or shapes[k] != ():
            raise ValueError(f"thresholds: {k!r} is not a recorded curve; choose from "
                             f"{', '.join(k for k, s in shapes.items() if s == ())}")
        variables.append(Variable(f"{tdim}s_to_{k}", (*grid_dims, f"{k}_threshold"), "<f8",
                                  attrs={"description": f"first {tdim} with {k} >= threshold (NaN: never)"}))
    all_coords = {**coords, "seed": (("seed",), np.array(seed_list)), **tcoords}
    if hessian_every:
        all_coords["eig"] = (("eig",), np.arange(hessian_k))
    for k, ts in thresholds.items():
        all_coords[f"{k}_threshold"] = ((f"{k}_threshold",), np.array(ts))

    config = {
        "kind": "train", "model": model.name, "model_digest": _model_digest(model, spec.input_shape, np_dtype),
        "dataset": name, "data_sha256": _data_digest(*host_data), "n_train": n_train, "n_test": len(xte),
        "optimizer": opt.name, "optimizer_digest": _optimizer_digest(opt, points[0], static),
        "grid": {d: jsonable(coords[d][1]) for d in dims}, "points": jsonable(points) if dims == ["config"] else None,
        "fixed": fixed, "static": static, "seeds": seed_list, "batch_size": None if batch_size is None else bs,
        "steps_per_record": spb, "records": n_rec, "eval_on": list(eval_on), "eval_batch": eval_batch,
        "dtype": dtype, "hessian": {"every": hessian_every, "k": hessian_k, "iters": hessian_iters,
                                    "at": hessian_at} if hessian_every else None,
        "thresholds": thresholds, "chunk_size": chunk_size,
    }
    if placement == "stream":
        # only when streaming: stores written before data_placement existed (replicated) stay resumable
        config["data_placement"] = placement
    attrs = {
        "model": model.name,
        "loss": model.loss if isinstance(model.loss, str) else getattr(model.loss, "__name__", "custom"),
        "optimizer": opt.name,
        "hyperparameters": list(spec.hp_names),
        "fixed": str(fixed),
        "dataset": name,
        "n_train": n_train,
        "n_test": len(xte),
        "batch_size": "full" if batch_size is None else bs,
        "steps_per_epoch": spe,
        "metrics_every": spb,
        "dtype": dtype,
        "chunk_size": chunk_size,
        "data_placement": placement,
        "step_loop": step_loop,
        "device": str(jax.devices()[0]),
        "coordinates": "metrics at the paper's theta = rule.to_paper(params, state)",
        "grad_norm": "norm of the last gradient used (at the look-ahead point, last minibatch)",
        "config": json.dumps(config, sort_keys=True, default=str),
    }
    if hessian_every:
        attrs.update({
            "hessian_every": hessian_every, "hessian_k": hessian_k, "hessian_iters": hessian_iters,
            "hessian_at": hessian_at,
            "hessian": ("top eigenvalues of the Hessian of the full training loss at the "
                        + ("look-ahead point (optax params)" if hessian_at == "lookahead" else "paper's theta")
                        + f", Lanczos with {hessian_iters} HVPs, every {hessian_every} steps"),
        })
    if placement == "stream":
        attrs.update({
            "stream_steps_per_transfer": seg,
            "stream_slots": n_slots,
            "data_transfer": (f"per call (epoch), host->device: each segment of <= {seg} steps sends the "
                              f"minibatches of the chunk's <= {n_slots} seeds; each record sends the evaluated "
                              f"sets in batches of {eval_batch}"),
        })
    compile_s = [0.0]
    placed: dict = {}

    def run_chunk(start, n_valid, n_padded, sharding, tick):
        take = np.minimum(np.arange(start, start + n_padded), start + n_valid - 1)  # pad with the last model
        rep = jax.sharding.NamedSharding(sharding.mesh, jax.sharding.PartitionSpec())  # a copy on every device
        put = lambda t: jax.device_put(t, sharding)  # noqa: E731
        hp = put({k: v[take] for k, v in hp_all.items()})
        carry = put(initial_carry(rule0, jax.tree.map(lambda a: a[seed_idx_all[take]], params_by_seed), np_dtype))
        if placement == "stream":
            distinct = np.unique(seed_idx_all[take])  # the chunk's seeds: one slot of minibatches each
            slot = put(np.searchsorted(distinct, seed_idx_all[take]).astype(np.int32))
            carry, recs, wall, dt = train_stream.run_chunk(spec, seg, carry, hp, slot, np.array(seed_list)[distinct],
                                                           n_slots, host_data, n_calls, rep, tick)
            compile_s[0] += dt
            wall = [0.0] + wall
        else:
            key = str(sharding)
            if key not in placed:  # the data, replicated on every device of the mesh
                placed.clear()
                placed[key] = jax.device_put(host_data, rep)
            data = placed[key]
            sd = put(seed_all[take])
            if step_loop == "host":
                carry, recs, wall, dt = train_host.run_chunk(spec, carry, hp, sd, data, n_train, n_calls, tick)
                compile_s[0] += dt
                wall = [0.0] + wall
            else:
                exe, dt = compiled("block", prog, carry, hp, sd, data, np.int32(0), np.bool_(True))
                compile_s[0] += dt
                carry, m0 = exe(carry, hp, sd, data, np.int32(0), np.bool_(False))
                recs = [jax.tree.map(lambda a: np.asarray(a)[:, -1:], m0)]
                t0 = time.perf_counter()
                wall = [0.0]
                for i in range(n_calls):
                    carry, m = exe(carry, hp, sd, data, np.int32(i), np.bool_(True))
                    recs.append(jax.tree.map(np.asarray, m))  # host copy = synchronisation point
                    wall += [time.perf_counter() - t0] * bpc
                    tick(1.0 / n_calls)
        values = {k: np.concatenate([r[k] for r in recs], axis=1)[:n_valid] for k in recs[0]}
        values["wall_time"] = np.broadcast_to(np.array(wall), (n_valid, n_rec))
        values["diverged"] = np.asarray(carry["diverged"])[:n_valid]
        values["diverged_at"] = np.asarray(carry["diverged_at"])[:n_valid].astype(np.int64)
        for k, ts in thresholds.items():
            values[f"{tdim}s_to_{k}"] = _first_reach(values[k], times, ts)
        return values

    job = ModelJob(config=config, grid_dims=grid_dims, shape=shape, coords=all_coords, variables=variables,
                   run_chunk=run_chunk, steps=n_calls * bpc * spb, attrs=attrs, chunk_size=chunk_size)
    n_dev = devices
    if n_dev is None:  # all local devices, but never more than models per chunk (no padding to the count)
        n_dev = min(len(jax.local_devices() if jax.process_count() > 1 else jax.devices()), chunk_size)
    ds = run_models(job, out=out, devices=n_dev, chunks=chunks, progress=progress, stop_after=_stop_after,
                    resume_only=_resume_only, source=_source, source_text=_source_text)
    ds.attrs["compile_seconds"] = compile_s[0]
    ds.attrs["n_chunks"] = -(-n_models // chunk_size)
    return ds


# --------------------------------------------------------------------------- configs

#: Keys of a training config's ``[problem]`` table.
PROBLEM_KEYS = {"model", "dataset", "steps", "epochs", "batch_size", "seeds", "metrics_every", "eval_on",
                "train_subset", "test_subset", "eval_batch", "dtype", "memory_fraction", "data_placement",
                "hessian_every", "hessian_k", "hessian_iters", "hessian_at", "thresholds"}


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

    ``optimizer`` and ``[grid]`` are as in landscape configs (any optax factory by import
    path); ``[problem]`` names the model (a :data:`dynsim.models.MODELS` name or an import
    path), the dataset (a :func:`dynsim.data.load` name or an import path), ``steps`` (full
    batch) or ``batch_size`` and ``epochs``, ``seeds`` and what to record
    (:data:`PROBLEM_KEYS`: the keyword arguments of :func:`train`).
    """
    from dynsim.engine.config import expand_axis

    problem = dict(cfg["problem"])
    bad = set(problem) - PROBLEM_KEYS
    if bad:
        raise ValueError(f"[problem]: unknown key(s) {', '.join(sorted(bad))}; expected {', '.join(sorted(PROBLEM_KEYS))}")
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
    return train(model, dataset, cfg["optimizer"], grid, chunk_size=cs, progress=progress, out=out,
                 _stop_after=stop_after, _source=cfg, _source_text=source_text, _resume_only=resume_only, **problem)


# --------------------------------------------------------------------------- thresholds


def steps_to_threshold(ds, threshold: float, metric: str = "test_accuracy", dim: str | None = None):
    """First value of the time coordinate at which ``metric >= threshold`` (NaN if never).

    ``dim`` defaults to the dataset's time dim (``step`` or ``epoch``). Works on any
    ``xarray`` object with that dim; diverged (NaN) records never count.
    """
    import xarray as xr

    da = ds[metric] if isinstance(ds, xr.Dataset) else ds
    dim = dim or ("step" if "step" in da.dims else "epoch")
    if dim not in da.dims:
        raise ValueError(f"dim={dim!r} is not a dimension of {metric} ({da.dims})")
    hit = (da >= threshold).fillna(False)
    first = hit.argmax(dim)
    t = da[dim].values[first.values]
    return xr.DataArray(np.where(hit.any(dim).values, t, np.nan), dims=first.dims,
                        coords=first.coords, name=f"{dim}s_to_{metric}>={threshold}")


def at_threshold(ds, threshold: float, metric: str = "train_accuracy", dim: str | None = None):
    """Every time-dependent variable at the first record where ``metric >= threshold``.

    Models that never reach it get NaN; the time is in ``reached`` (NaN if never).
    """
    import xarray as xr

    da = ds[metric]
    dim = dim or ("step" if "step" in da.dims else "epoch")
    hit = (da >= threshold).fillna(False)
    first = hit.argmax(dim)
    reached = hit.any(dim)
    out = {}
    for k, v in ds.data_vars.items():
        if dim in v.dims:
            out[k] = v.isel({dim: first}).where(reached)
    res = xr.Dataset(out)
    res["reached"] = steps_to_threshold(ds, threshold, metric, dim)
    return res


# --------------------------------------------------------------------------- benchmark


def benchmark(n_models: int = 128, steps: int | None = None, repeats: int = 3, n_train: int | None = None,
              sequential_models: int = 4, hidden: Sequence[int] = (30,), dataset=None,
              progress: bool = False) -> dict:
    """Throughput of N vmapped 784-30-10 full-batch models vs the same models one at a time.

    Both sides use the same engine (:func:`train`, ``super_accelerated`` with one σ per
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
        ds = train(model, dataset, "super_accelerated",
                   {"learning_rate": 0.5, "momentum": 0.9, "sigma": sig},
                   steps=steps, metrics_every=steps, eval_on=("test",), train_subset=n_train,
                   test_subset=n_test, chunk_size=chunk, progress=progress)
        per_chunk = ds.wall_time.isel(step=-1).values.ravel()[::chunk]
        return float(per_chunk.sum())

    load0 = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    run(sigmas, n_models)  # compile and warm up both programs
    run(sigmas[:sequential_models], 1)
    vm, seq = [], []
    for _ in range(repeats):
        vm.append(n_models * steps / run(sigmas, n_models))
        seq.append(sequential_models * steps / run(sigmas[:sequential_models], 1))
    vmed, smed = float(np.median(vm)), float(np.median(seq))
    overhead = _store_and_shard_overhead(model, dataset, sigmas, steps, n_train, n_test, repeats)
    from dynsim.bench import matmul_rate  # the microbenchmarks live together

    mm = matmul_rate()
    flop = _step_flops(model, dataset.x_train[:n_train])
    load1 = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
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
    return float(cost["flops"])


def _store_and_shard_overhead(model, dataset, sigmas, steps, n_train, n_test, repeats) -> dict:
    """Whole-call throughput at the default chunk size: in memory on one device, with the store, on all devices.

    Timed around :func:`train` (compile excluded by a warm-up), so host work (writing the
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
            ds = train(model, dataset, "super_accelerated", grid, devices=devices,
                       out=pathlib.Path(tmp) / "o" if store else None, **kw)
            return time.perf_counter() - t0, int(ds.attrs["chunk_size"])
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    res = {}
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

