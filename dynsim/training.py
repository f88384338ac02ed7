r"""Train many networks at once: one compiled program, ``vmap`` over hyperparameters × seeds.

:func:`train` runs full-batch gradient descent (each step is an epoch, Nakerst §4
Fig. 5) or minibatch SGD (reshuffled every epoch, Fig. 6 and Wu et al.) with any
:mod:`dynsim.optim` rule, used *unchanged* as an optax ``GradientTransformation``.
The rule is built inside the vmapped function from array hyperparameters, so a
whole grid of (η, μ, σ, ...) × seeds shares one XLA program; grids larger than
``chunk_size`` run chunk after chunk through that same program (the last chunk is
padded, never recompiled).

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

Results come back as an ``xarray.Dataset`` with dims ``(*hyperparameter axes, seed,
step|epoch)``.
"""
from __future__ import annotations

import collections
import dataclasses
import functools
import inspect
import math
import os
import time
from typing import Any, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from dynsim import optim
from dynsim.models import Model
from dynsim.models import get as get_model

PyTree = Any

__all__ = [
    "train",
    "steps_to_threshold",
    "at_threshold",
    "benchmark",
    "compile_count",
    "clear_cache",
    "epoch_batches",
    "EVAL_SETS",
]

EVAL_SETS = ("train", "test")

#: Training programs traced by this module (a trace happens exactly when jit compiles).
_COMPILES: collections.Counter = collections.Counter()


def compile_count() -> int:
    """How many training programs this process has traced (= compiled: jit caches traces)."""
    return _COMPILES["block"]


# --------------------------------------------------------------------------- argument checks


def _canonical_optimizer(optimizer) -> tuple[str, Any]:
    """(name, factory) of a rule given by name or factory; ValueError otherwise."""
    if isinstance(optimizer, str):
        fn = optim._resolve(optimizer)  # ValueError naming `optimizer` for unknown names
        return fn.__name__, fn
    for name, fn in optim.RULES.items():
        if optimizer is fn:
            return name, fn
    raise ValueError(f"optimizer={optimizer!r} must be a dynsim.optim rule name or factory "
                     f"({', '.join(optim.RULES)})")


def _factory_defaults(fn) -> dict[str, Any]:
    sig = inspect.signature(fn)
    return {p.name: p.default for p in sig.parameters.values()
            if p.name in optim.hyperparameter_names(fn)}


def _is_scalar(v) -> bool:
    return np.ndim(v) == 0


def _parse_grid(grid, opt_name: str, factory) -> tuple[list[str], dict, list[dict], dict]:
    """Returns (dims, coords, points, fixed).

    ``points`` is the flat list of hyperparameter dicts (C order over ``dims``);
    ``coords`` maps each dim (and, for point lists, each hyperparameter) to values.
    """
    names = optim.hyperparameter_names(factory)
    defaults = _factory_defaults(factory)

    def check_names(keys, where):
        bad = [k for k in keys if k not in names]
        if bad:
            raise ValueError(f"grid: {where}{bad} are not hyperparameters of {opt_name} "
                             f"(it takes {names})")

    if isinstance(grid, Mapping):
        if not grid:
            raise ValueError(f"grid={{}} is empty: give values for {opt_name}'s {names}")
        check_names(list(grid), "")
        dims, axes, fixed = [], [], {}
        for k, v in grid.items():
            if _is_scalar(v):
                try:
                    fixed[k] = float(v)
                except (TypeError, ValueError):
                    raise ValueError(f"grid[{k!r}]={v!r} must be a number") from None
                continue
            try:
                arr = np.asarray(v, dtype=float).ravel()
            except (TypeError, ValueError):
                raise ValueError(f"grid[{k!r}]={v!r} must be numbers") from None
            if np.ndim(v) != 1:
                raise ValueError(f"grid[{k!r}] must be a number or a 1-D list, got shape {np.shape(v)}")
            if arr.size == 0:
                raise ValueError(f"grid[{k!r}] is empty")
            dims.append(k)
            axes.append(arr)
        points = []
        for combo in (np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, len(axes))
                      if axes else np.zeros((1, 0))):
            p = dict(fixed)
            p.update({d: float(x) for d, x in zip(dims, combo)})
            points.append(p)
        coords = {d: a for d, a in zip(dims, axes)}
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
            check_names(list(p), "")
            for k, v in p.items():
                if not _is_scalar(v):
                    raise ValueError(f"grid point {dict(p)}: {k} must be a number")
        try:
            points = [{k: float(v) for k, v in p.items()} for p in grid]
        except (TypeError, ValueError):
            raise ValueError(f"grid points must hold numbers, got {list(grid)!r}") from None
        dims = ["config"]
        coords = {"config": np.arange(len(points))}
        coords.update({k: ("config", np.array([p[k] for p in points])) for k in sorted(keys)})
        fixed = {}
    else:
        raise ValueError(f"grid={grid!r} must be a mapping name -> values or a list of mappings")

    missing = [n for n in names if n not in points[0] and defaults.get(n) is inspect.Parameter.empty]
    if missing:
        raise ValueError(f"grid: {opt_name} needs {missing} (given {sorted(points[0])})")
    full = []
    for p in points:
        q = {n: p.get(n, defaults.get(n)) for n in names}
        try:
            optim.get(opt_name, **q)  # concrete values: the rule's own checks, with its message
        except ValueError as e:
            raise ValueError(f"grid point {p}: {e}") from None
        full.append({n: float(q[n]) for n in names})
    return dims, coords, full, fixed


def _check_int(name, v, lo=1):
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)) or v < lo:
        raise ValueError(f"{name}={v!r} must be an integer >= {lo}")
    return int(v)


def _parse_seeds(seeds) -> list[int]:
    if isinstance(seeds, (int, np.integer)) and not isinstance(seeds, bool):
        return list(range(_check_int("seeds", seeds)))
    try:
        out = [int(s) for s in seeds]
    except (TypeError, ValueError):
        raise ValueError(f"seeds={seeds!r} must be a count or a list of non-negative integers") from None
    if not out or any(s < 0 for s in out) or len(set(out)) != len(out):
        raise ValueError(f"seeds={seeds!r} must be a non-empty list of distinct non-negative integers")
    return out


def _prepare_data(model: Model, dataset, train_subset, test_subset):
    from dynsim import data as data_mod

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
    if train_subset is not None:
        n = _check_int("train_subset", train_subset)
        if n > len(xtr):
            raise ValueError(f"train_subset={n} exceeds the {len(xtr)} training examples")
        xtr, ytr = xtr[:n], ytr[:n]
    if test_subset is not None:
        n = _check_int("test_subset", test_subset)
        if n > len(xte):
            raise ValueError(f"test_subset={n} exceeds the {len(xte)} test examples")
        xte, yte = xte[:n], yte[:n]
    return dataset.name, xtr, np.asarray(ytr, np.int32), xte, np.asarray(yte, np.int32)


# --------------------------------------------------------------------------- the program


@dataclasses.dataclass(frozen=True)
class _Spec:
    """Everything that shapes the compiled program (hashable: it keys the program cache)."""

    model: Model
    optimizer: str
    hp_names: tuple[str, ...]
    full_batch: bool
    batch_size: int
    steps_per_block: int  # steps between two metric records
    blocks_per_call: int  # records per compiled call (minibatch: one call = one epoch)
    eval_train: bool
    eval_test: bool
    eval_batch: int
    input_shape: tuple[int, ...]
    dtype: str


def _evaluate(model: Model, theta, x, y, eval_batch: int):
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


def _metrics(spec: _Spec, rule, carry, data):
    theta = rule.to_paper(carry["params"], carry["opt_state"])  # report the paper's θ
    nan = jnp.asarray(jnp.nan, jnp.dtype(spec.dtype))
    out = {}
    for name, (x, y), on in (("train", data[:2], spec.eval_train), ("test", data[2:], spec.eval_test)):
        if on:
            loss, acc = _evaluate(spec.model, theta, x, y, spec.eval_batch)
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

    Exactly what :func:`train` feeds the model (step ``k`` of the epoch uses row ``k``).

    >>> b = epoch_batches(0, 0, 10, 5)
    >>> b.shape, sorted(b.ravel().tolist()) == list(range(10))
    ((2, 5), True)
    """
    n_train, batch_size = _check_int("n_train", n_train), _check_int("batch_size", batch_size)
    if batch_size > n_train:
        raise ValueError(f"batch_size={batch_size} exceeds n_train={n_train}")
    return np.asarray(_epoch_indices(_shuffle_key(seed), epoch, n_train, n_train // batch_size, batch_size))


def _initial_params(model: Model, seeds: Sequence[int], input_shape, dtype) -> PyTree:
    """Initial parameters for each seed (host-side numpy draws), stacked on a leading axis."""
    per_seed = [model.init(s, input_shape, jnp.dtype(dtype)) for s in seeds]
    return jax.tree.map(lambda *a: np.stack([np.asarray(x) for x in a]), *per_seed)


def _initial_carry(rule, params, dtype) -> dict:
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


@functools.lru_cache(maxsize=32)
def _program(spec: _Spec):
    """The one jitted training program, vmapped over the model axis. Cached per spec.

    ``program(carry, hp, seed, data, call_index, do_steps)`` runs one call -- ``blocks_per_call``
    blocks of ``steps_per_block`` steps, metrics after each block -- and returns
    ``(carry, metrics[model, block])``. With ``do_steps=False`` it only evaluates (used for
    the step-0 record), so a whole training run needs this single compiled program.
    """
    model = spec.model
    dtype = jnp.dtype(spec.dtype)

    def loss_and_correct(params, xb, yb):
        out = model.apply(params, xb)
        return model.loss_from_outputs(out, yb), jnp.mean(jnp.argmax(out, -1) == yb)

    def one_model(carry, hp, seed, data, call_index, do_steps):
        _COMPILES["block"] += 1  # runs at trace time only
        rule = optim.get(spec.optimizer, **hp)  # hp values are tracers: one program for all
        x, y = data[0], data[1]

        def step(c, idx):
            params, state = c["params"], c["opt_state"]
            xb, yb = (x, y) if spec.full_batch else (x[idx], y[idx])
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

        def block(c, block_idx):
            # do_steps is not vmapped, so this stays a real branch under vmap
            c, run_loss, run_acc = jax.lax.cond(do_steps, run, skip, c, block_idx)
            m = _metrics(spec, rule, c, data)
            nan = jnp.asarray(jnp.nan, dtype)
            m["running_loss"] = jnp.where(c["diverged"], nan, run_loss)
            m["running_accuracy"] = jnp.where(c["diverged"], nan, run_acc)
            return c, m

        return jax.lax.scan(block, carry, idx)

    return jax.jit(jax.vmap(one_model, in_axes=(0, 0, 0, None, None, None)), donate_argnums=0)


def clear_cache() -> None:
    """Forget compiled programs (tests use it to count compilations from scratch)."""
    _program.cache_clear()
    _EXECUTABLES.clear()


_EXECUTABLES: dict = {}


def _compiled(kind: str, fn, *args):
    """Ahead-of-time compile ``fn`` for these argument shapes, once per process."""
    avals = jax.tree.map(lambda a: (np.shape(a), np.asarray(a).dtype.str if not hasattr(a, 'dtype') else np.dtype(a.dtype).str), args)
    key = (kind, fn, jax.tree.structure(args), tuple(jax.tree.leaves(avals)))
    if key not in _EXECUTABLES:
        t0 = time.perf_counter()
        _EXECUTABLES[key] = (fn.lower(*args).compile(), time.perf_counter() - t0)
        return _EXECUTABLES[key][0], _EXECUTABLES[key][1]
    return _EXECUTABLES[key][0], 0.0


# --------------------------------------------------------------------------- memory


def _device_memory_bytes() -> int:
    dev = jax.devices()[0]
    try:
        stats = dev.memory_stats() or {}
    except Exception:  # noqa: BLE001 - backends without stats
        stats = {}
    if "bytes_limit" in stats:
        return int(stats["bytes_limit"])
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return 8 << 30


def _bytes_per_model(spec: _Spec, n_train: int) -> int:
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
    return item * (3 * rows * per_example + spec.eval_batch * per_example + 8 * n_params)


# --------------------------------------------------------------------------- driver


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
    eval_batch: int = 10_000,
    dtype: str = "float32",
    progress: bool = True,
):
    r"""Train every (hyperparameter point × seed) of ``grid`` with one compiled program.

    Args:
      model: a :class:`dynsim.models.Model` or a name in :data:`dynsim.models.MODELS`.
      dataset: a :class:`dynsim.data.Dataset` or a name for :func:`dynsim.data.load`.
      optimizer: a :mod:`dynsim.optim` rule name (``"super_accelerated"``, ``"nag"``, ...)
        or factory.
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
      chunk_size: models per compiled call (default: as many as fit in
        ``memory_fraction`` of device memory, by a rough activation estimate).
      dtype: ``"float32"`` or ``"float64"`` (needs ``jax_enable_x64``).

    Returns:
      ``xarray.Dataset`` with dims ``(*grid dims, seed, step)`` (full batch) or
      ``(*grid dims, seed, epoch)`` (minibatch; ``step`` is then a coordinate; fractional
      epochs when ``metrics_every`` is less than an epoch). Variables per record:
      ``{train,test}_{loss,accuracy}`` (full passes at θ), ``running_{loss,accuracy}``
      (mean over the steps since the previous record of the minibatch loss/accuracy at
      the gradient point Θ -- what Keras prints), ``grad_norm``, ``wall_time`` (seconds
      since the model's chunk started, compile excluded; shared by the chunk); per model
      ``diverged``, ``diverged_at`` (step, −1 if never). Attributes record the setup.

    Example (sklearn digits, two σ × two seeds in one program):

    >>> from dynsim import data, models
    >>> ds = train(models.nielsen_mlp((8,), input_dim=64), data.load("digits"), "super_accelerated",
    ...            {"learning_rate": 0.5, "momentum": 0.9, "sigma": [0.0, 4.0]}, steps=4,
    ...            seeds=2, progress=False)
    >>> dict(ds.test_accuracy.sizes)
    {'sigma': 2, 'seed': 2, 'step': 5}
    """
    import xarray as xr
    from tqdm.auto import tqdm

    model = get_model(model)
    opt_name, factory = _canonical_optimizer(optimizer)
    dims, coords, points, fixed = _parse_grid(grid, opt_name, factory)
    seed_list = _parse_seeds(seeds)
    if dtype not in ("float32", "float64"):
        raise ValueError(f"dtype={dtype!r} must be 'float32' or 'float64'")
    if dtype == "float64" and not jax.config.jax_enable_x64:
        raise ValueError("dtype='float64' needs jax_enable_x64 (dynsim --x64)")
    eval_on = tuple(eval_on)
    bad = [e for e in eval_on if e not in EVAL_SETS]
    if bad:
        raise ValueError(f"eval_on={eval_on!r}: unknown sets {bad}; choose from {EVAL_SETS}")
    eval_batch = _check_int("eval_batch", eval_batch)
    if not 0 < memory_fraction <= 1:
        raise ValueError(f"memory_fraction={memory_fraction!r} must be in (0, 1]")

    name, xtr, ytr, xte, yte = _prepare_data(model, dataset, train_subset, test_subset)
    n_train = len(xtr)

    if batch_size is None:
        if epochs is not None and steps is not None and epochs != steps:
            raise ValueError(f"full batch: steps={steps} and epochs={epochs} disagree (each step is an epoch)")
        steps = steps if steps is not None else epochs
        if steps is None:
            raise ValueError("steps=None: full-batch training needs steps (or epochs)")
        steps = _check_int("steps", steps)
        me = _check_int("metrics_every", 1 if metrics_every is None else metrics_every)
        if steps % me:
            raise ValueError(f"metrics_every={me} must divide steps={steps}")
        n_calls, spb, bpc, spe, bs = steps // me, me, 1, 1, n_train
    else:
        bs = _check_int("batch_size", batch_size)
        if bs > n_train:
            raise ValueError(f"batch_size={bs} exceeds the {n_train} training examples")
        if steps is not None:
            raise ValueError("steps is for full batch; with batch_size give epochs")
        if epochs is None:
            raise ValueError("epochs=None: minibatch training needs epochs")
        n_calls = _check_int("epochs", epochs)
        spe = n_train // bs
        me = _check_int("metrics_every", spe if metrics_every is None else metrics_every)
        if spe % me:
            raise ValueError(f"metrics_every={me} must divide the {spe} steps per epoch")
        spb, bpc = me, spe // me

    spec = _Spec(
        model=model, optimizer=opt_name, hp_names=tuple(points[0]), full_batch=batch_size is None,
        batch_size=bs, steps_per_block=spb, blocks_per_call=bpc, eval_train="train" in eval_on,
        eval_test="test" in eval_on, eval_batch=eval_batch, input_shape=tuple(xtr.shape[1:]),
        dtype=dtype,
    )
    n_models = len(points) * len(seed_list)
    if chunk_size is None:
        budget = memory_fraction * _device_memory_bytes()
        chunk_size = max(1, min(n_models, int(budget // max(1, _bytes_per_model(spec, n_train)))))
    chunk_size = min(_check_int("chunk_size", chunk_size), n_models)
    n_chunks = math.ceil(n_models / chunk_size)

    np_dtype = np.dtype(dtype)
    data = tuple(jax.device_put(a) for a in (xtr.astype(np_dtype), ytr, xte.astype(np_dtype), yte))
    # model m = (point m // n_seeds, seed m % n_seeds); the last chunk is padded with model 0
    hp_all = {k: np.array([p[k] for p in points], np_dtype).repeat(len(seed_list)) for k in spec.hp_names}
    seed_all = np.tile(np.array(seed_list, np.int32), len(points))
    seed_idx_all = np.tile(np.arange(len(seed_list)), len(points))
    params_by_seed = _initial_params(model, seed_list, spec.input_shape, dtype)

    program = _program(spec)
    rule0 = optim.get(opt_name, **points[0])  # only for the (value-independent) state layout
    n_rec = 1 + n_calls * bpc
    records: dict[str, np.ndarray] = {}
    wall = np.zeros((n_models, n_rec))
    diverged = np.zeros(n_models, bool)
    diverged_at = np.full(n_models, -1, np.int64)
    compile_s = 0.0
    bar = tqdm(total=n_chunks * n_calls, desc=f"train {opt_name} x{n_models}", disable=not progress,
               unit="epoch" if batch_size else "block")
    for c in range(n_chunks):
        lo, hi = c * chunk_size, min((c + 1) * chunk_size, n_models)
        take = np.arange(lo, lo + chunk_size) % n_models  # last chunk padded with model 0, 1, ...
        hp = {k: v[take] for k, v in hp_all.items()}
        sd = seed_all[take]
        carry = _initial_carry(rule0, jax.tree.map(lambda a: a[seed_idx_all[take]], params_by_seed),
                               np_dtype)
        exe, dt = _compiled("block", program, carry, hp, sd, data, np.int32(0), np.bool_(True))
        compile_s += dt
        carry, m0 = exe(carry, hp, sd, data, np.int32(0), np.bool_(False))
        chunk_rec = [jax.tree.map(lambda a: np.asarray(a)[:, -1:], m0)]
        t0 = time.perf_counter()
        times = [0.0]
        for i in range(n_calls):
            carry, m = exe(carry, hp, sd, data, np.int32(i), np.bool_(True))
            chunk_rec.append(jax.tree.map(np.asarray, m))  # host copy = synchronisation point
            times += [time.perf_counter() - t0] * bpc
            bar.update(1)
        keep = hi - lo
        for k in chunk_rec[0]:
            arr = np.concatenate([r[k] for r in chunk_rec], axis=1)[:keep]
            records.setdefault(k, np.full((n_models, n_rec), np.nan, np_dtype))[lo:hi] = arr
        wall[lo:hi] = np.array(times)[None, :]
        diverged[lo:hi] = np.asarray(carry["diverged"])[:keep]
        diverged_at[lo:hi] = np.asarray(carry["diverged_at"])[:keep]
    bar.close()

    # ---- assemble the xarray.Dataset
    shape = [len(coords[d]) for d in dims] + [len(seed_list)]
    if batch_size is None:
        tdim = "step"
        tcoords = {"step": np.arange(n_rec) * spb}
    else:
        tdim = "epoch"
        steps_axis = np.arange(n_rec) * spb
        tcoords = {"epoch": steps_axis / spe, "step": (tdim, steps_axis)}
    all_dims = (*dims, "seed", tdim)
    ds_coords = dict(coords)
    ds_coords["seed"] = np.array(seed_list)
    ds_coords.update(tcoords)
    data_vars = {k: (all_dims, v.reshape(*shape, n_rec)) for k, v in records.items()}
    data_vars["wall_time"] = (all_dims, wall.reshape(*shape, n_rec))
    data_vars["diverged"] = ((*dims, "seed"), diverged.reshape(shape))
    data_vars["diverged_at"] = ((*dims, "seed"), diverged_at.reshape(shape))
    attrs = {
        "model": model.name,
        "loss": model.loss,
        "optimizer": opt_name,
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
        "n_chunks": n_chunks,
        "compile_seconds": compile_s,
        "device": str(jax.devices()[0]),
        "coordinates": "metrics at the paper's theta = rule.to_paper(params, state)",
        "grad_norm": "norm of the last gradient used (at the look-ahead point, last minibatch)",
    }
    return xr.Dataset(data_vars, coords=ds_coords, attrs=attrs)


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
    n_models = _check_int("n_models", n_models)
    steps = _check_int("steps", (10 if cpu else 20) if steps is None else steps)
    n_train = _check_int("n_train", (6_000 if cpu else 60_000) if n_train is None else n_train)
    repeats = _check_int("repeats", repeats)
    sequential_models = min(_check_int("sequential_models", sequential_models), n_models)
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
        "flop_per_model_step_estimate": 6 * n_train * model.num_params((784,)),
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
