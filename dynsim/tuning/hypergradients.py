r"""Hypergradients through full-batch network training: ``∂L_val(θ_t)/∂(η, σ, ...)``.

A :mod:`dynsim.optim` rule is an optax transformation, so a full-batch training loop
over ``rule.init``/``rule.update`` (unchanged) inside ``lax.scan``
(:func:`unroll_training`) is differentiable in the rule's hyperparameters. With two
hyperparameters and many horizons, *forward mode* is the right tool: one ``jax.jvp``
pass yields ``d L_val(t)/dσ`` at every step ``t`` (:func:`horizon_hypergradients`).

Long unrolls make these hypergradients chaotic (norm grows with the horizon and their
sign stops agreeing across initialisations; Metz et al., "Understanding and correcting
pathologies in the training of learned optimizers", 2019); :func:`tune_training` uses a
short horizon, averages over initialisations and can truncate the backward dependence
to the last ``truncation`` steps (:func:`truncated_hypergradients`).

These functions mirror :func:`dynsim.training.train`'s conventions (seed ``s``
initialises with ``model.init(s, ...)``; losses are evaluated at the paper's
θ = ``rule.to_paper(Θ, state)``), but are pure functions of the hyperparameters: the
training engine's bookkeeping (divergence freezing, chunking, xarray output) has no
derivative, so it is not reused for gradients. A test checks both engines give the same
validation-loss curve.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from dynsim import optim
from dynsim.run import check_steps
from dynsim.tuning.tuner import TuneResult, minimize, split_starts

PyTree = Any

__all__ = [
    "TrainingProblem",
    "training_problem",
    "init_params",
    "unroll_training",
    "validation_curve",
    "horizon_hypergradients",
    "truncated_hypergradients",
    "hypergradient",
    "training_objective",
    "tune_training",
]


class TrainingProblem(NamedTuple):
    """A full-batch training task: a :class:`dynsim.models.Model` and its data.

    Attributes:
      model: the network and its loss.
      x_train, y_train: training set (flattened for MLPs), as jax arrays.
      x_val, y_val: validation set (held out from the training images).
      name: e.g. ``"mnist/valid"``.
    """

    model: Any
    x_train: jax.Array
    y_train: jax.Array
    x_val: jax.Array
    y_val: jax.Array
    name: str

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])


def training_problem(
    dataset="mnist",
    model="nielsen_30",
    *,
    n_train: int | None = None,
    n_val: int = 10_000,
    split_seed: int = 0,
    dtype: str = "float32",
) -> TrainingProblem:
    """Load ``dataset`` (name or :class:`dynsim.data.Dataset`), hold out ``n_val`` training
    images for validation (:func:`dynsim.data.validation_split`) and keep the first
    ``n_train`` of the rest (default all). The test set is not used: tuning on it would
    leak it into the hyperparameters.
    """
    from dynsim import data as data_mod
    from dynsim import models

    mdl = models.get(model)
    ds = data_mod.load(dataset) if isinstance(dataset, str) else dataset
    if not hasattr(ds, "x_train"):
        raise ValueError(f"dataset={dataset!r} must be a dataset name or a dynsim.data.Dataset")
    if mdl.flat_input:
        ds = ds.flatten()
    if ds.num_classes != mdl.num_classes:
        raise ValueError(f"dataset has {ds.num_classes} classes, model={mdl.name!r} has {mdl.num_classes} outputs")
    ds = data_mod.validation_split(ds, n_val, seed=split_seed)
    xtr, ytr = ds.x_train, ds.y_train
    if n_train is not None:
        if not isinstance(n_train, int) or not 1 <= n_train <= len(xtr):
            raise ValueError(f"n_train={n_train!r} must be an int in [1, {len(xtr)}]")
        xtr, ytr = xtr[:n_train], ytr[:n_train]
    if dtype not in ("float32", "float64"):
        raise ValueError(f"dtype={dtype!r} must be 'float32' or 'float64'")
    dt = np.dtype(dtype)
    return TrainingProblem(
        mdl,
        jnp.asarray(xtr.astype(dt)),
        jnp.asarray(np.asarray(ytr, np.int32)),
        jnp.asarray(ds.x_test.astype(dt)),
        jnp.asarray(np.asarray(ds.y_test, np.int32)),
        ds.name,
    )


def init_params(problem: TrainingProblem, seed) -> PyTree:
    """Initial parameters of seed ``seed``, drawn as :func:`dynsim.training.train` draws them
    (``model.init(seed, ...)``; a test checks the two engines agree)."""
    return jax.tree.map(jnp.asarray, problem.model.init(int(seed), problem.input_shape, problem.x_train.dtype))


def unroll_training(
    problem: TrainingProblem,
    optimizer: str,
    hparams: Mapping[str, Any],
    params0: PyTree,
    steps: int,
    *,
    truncation: int | None = None,
) -> jax.Array:
    r"""Validation loss after each of ``steps`` full-batch steps, shape ``(steps+1,)``.

    Pure in ``hparams`` (a dict of the rule's hyperparameters, runtime arrays) and
    ``params0``: ``jax.grad``/``jax.jvp`` give hypergradients
    ``∂L_val(θ_t)/∂(η, σ, ...)`` through the whole unrolled optimisation.

    ``truncation=T`` makes the derivative see only the last ``T`` steps: the first
    ``steps − T`` run on ``stop_gradient``-ed hyperparameters and the carry is cut from
    the graph before the last ``T`` (truncated back-propagation; biased towards
    short-horizon behaviour, but its variance does not grow with ``steps``).
    """
    n = check_steps(steps)
    if truncation is not None and (not isinstance(truncation, int) or not 1 <= truncation):
        raise ValueError(f"truncation={truncation!r} must be None or an int >= 1")
    model = problem.model
    xtr, ytr, xv, yv = problem.x_train, problem.y_train, problem.x_val, problem.y_val
    factory = optim.resolve(optimizer)[1]

    def run(hp, carry, length):
        rule = factory(**hp)

        def step(c, _):
            params, state = c
            g = jax.grad(model.loss_fn)(params, xtr, ytr)
            upd, state = rule.update(g, state, params)
            params = optax.apply_updates(params, upd)
            return (params, state), model.loss_fn(rule.to_paper(params, state), xv, yv)

        return jax.lax.scan(step, carry, None, length=length)

    rule0 = factory(**hparams)
    carry = (params0, rule0.init(params0))
    l0 = model.loss_fn(params0, xv, yv)
    if truncation is None or truncation >= n:
        _, losses = run(hparams, carry, n)
    else:
        frozen = jax.tree.map(jax.lax.stop_gradient, dict(hparams))
        carry, first = run(frozen, carry, n - truncation)
        carry = jax.tree.map(jax.lax.stop_gradient, carry)
        _, last = run(hparams, carry, truncation)
        losses = jnp.concatenate([jax.lax.stop_gradient(first), last])
    return jnp.concatenate([jnp.asarray(l0)[None], losses])


def _stack_seeds(problem, seeds):
    seeds = list(seeds)
    if not seeds:
        raise ValueError("seeds must be a non-empty list of ints")
    return jax.tree.map(lambda *a: jnp.stack(a), *[init_params(problem, s) for s in seeds])


def validation_curve(problem: TrainingProblem, optimizer: str, hparams: Mapping[str, Any], seeds,
                     steps: int) -> np.ndarray:
    """Validation loss curves ``(n_seeds, steps+1)``, no derivatives; one jitted program.

    Hyperparameters given as ``(n_configs,)`` arrays give ``(n_configs, n_seeds, steps+1)``:
    every configuration and seed in the same vmapped call.
    """
    p0 = _stack_seeds(problem, seeds)
    dt = problem.x_train.dtype
    batched = any(np.ndim(v) == 1 for v in hparams.values())
    hp = {k: jnp.atleast_1d(jnp.asarray(v, dt)) for k, v in hparams.items()}
    n = max(v.shape[0] for v in hp.values())
    hp = {k: jnp.broadcast_to(v, (n,)) for k, v in hp.items()}
    def per(h, p):
        return unroll_training(problem, optimizer, h, p, steps)
    f = jax.jit(jax.vmap(jax.vmap(per, in_axes=(None, 0)), in_axes=(0, None)))
    out = np.asarray(f(hp, p0))
    return out if batched else out[0]


_JVP_CACHE: dict = {}


def _horizon_jvp(problem, optimizer, steps, wrt, truncation):
    """Jitted ``(hp, params0[seed]) -> (L_val, ∂L_val/∂wrt)`` per seed (all steps, or the last
    one when ``truncation`` is set); cached so several settings share one compiled program."""
    key = (id(problem), optimizer, steps, wrt, truncation)
    if key not in _JVP_CACHE:
        def per_seed(hp, p):
            def f(h):
                losses = unroll_training(problem, optimizer, h, p, steps, truncation=truncation)
                return losses if truncation is None else losses[-1]

            outs = [jax.jvp(f, (hp,), ({n: jnp.ones_like(v) if n == k else jnp.zeros_like(v) for n, v in hp.items()},))
                    for k in wrt]
            return outs[0][0], jnp.stack([o[1] for o in outs])

        if len(_JVP_CACHE) >= 16:  # bounded; entries keep their problem alive, so ids stay unique
            _JVP_CACHE.pop(next(iter(_JVP_CACHE)))
        _JVP_CACHE[key] = (problem, jax.jit(jax.vmap(per_seed, in_axes=(None, 0))))
    return _JVP_CACHE[key][1]


def horizon_hypergradients(
    problem: TrainingProblem,
    optimizer: str,
    hparams: Mapping[str, Any],
    seeds,
    steps: int,
    wrt: Sequence[str] = ("learning_rate", "sigma"),
) -> dict[str, np.ndarray]:
    r"""Hypergradients ``∂L_val(θ_t)/∂h`` at *every* horizon ``t ≤ steps``, per seed, by forward mode.

    One ``jax.jvp`` pass per hyperparameter in ``wrt`` carries the tangent of the whole
    training state through all steps, so the derivative of the validation loss at each
    step comes out of a single unroll (reverse mode would need one backward pass per
    horizon). Vmapped over seeds (initialisations) and over ``wrt``.

    Returns ``{"val_loss": (n_seeds, steps+1), name: (n_seeds, steps+1) for name in wrt}``.
    """
    wrt = tuple(wrt)
    missing = [w for w in wrt if w not in hparams]
    if missing:
        raise ValueError(f"wrt={wrt}: {missing} not in hparams {sorted(hparams)}")
    p0 = _stack_seeds(problem, seeds)
    hp = {k: jnp.asarray(v, problem.x_train.dtype) for k, v in hparams.items()}
    val, tang = _horizon_jvp(problem, optimizer, steps, wrt, None)(hp, p0)
    out = {"val_loss": np.asarray(val)}
    for i, k in enumerate(wrt):
        out[k] = np.asarray(tang[:, i])
    return out


def truncated_hypergradients(
    problem: TrainingProblem,
    optimizer: str,
    hparams: Mapping[str, Any],
    seeds,
    horizons: Sequence[int],
    truncation: int,
    wrt: Sequence[str] = ("sigma",),
) -> dict[str, np.ndarray]:
    r"""Per-seed hypergradients of ``L_val`` after each of ``horizons`` steps, truncated to the
    last ``truncation`` steps (forward mode; the first ``H − T`` steps run without tangents).

    Returns ``{"val_loss": (n_seeds, n_horizons), name: (n_seeds, n_horizons) for name in wrt}``.
    """
    wrt = tuple(wrt)
    if not isinstance(truncation, int) or truncation < 1:
        raise ValueError(f"truncation={truncation!r} must be an int >= 1")
    p0 = _stack_seeds(problem, seeds)
    hp = {k: jnp.asarray(v, problem.x_train.dtype) for k, v in hparams.items()}
    vals: list[np.ndarray] = []
    grads: dict[str, list[np.ndarray]] = {k: [] for k in wrt}
    for h in horizons:
        v, t = _horizon_jvp(problem, optimizer, int(h), wrt, truncation)(hp, p0)
        vals.append(np.asarray(v))
        for i, k in enumerate(wrt):
            grads[k].append(np.asarray(t[:, i]))
    out = {"val_loss": np.stack(vals, axis=1)}
    out.update({k: np.stack(v, axis=1) for k, v in grads.items()})
    return out


def hypergradient(
    problem: TrainingProblem,
    optimizer: str,
    hparams: Mapping[str, Any],
    seeds,
    horizon: int,
    wrt: Sequence[str] = ("learning_rate", "sigma"),
    *,
    truncation: int | None = None,
) -> tuple[float, dict[str, float]]:
    """Mean over ``seeds`` of ``L_val`` after ``horizon`` steps and its gradient w.r.t. ``wrt``
    (reverse mode; optionally truncated to the last ``truncation`` steps)."""
    p0 = _stack_seeds(problem, seeds)
    fixed = {k: jnp.asarray(v, problem.x_train.dtype) for k, v in hparams.items() if k not in wrt}

    def f(free):
        hp = {**fixed, **free}
        losses = jax.vmap(lambda p: unroll_training(problem, optimizer, hp, p, horizon, truncation=truncation)[-1])(p0)
        return jnp.mean(losses)

    free = {k: jnp.asarray(hparams[k], problem.x_train.dtype) for k in wrt}
    v, g = jax.jit(jax.value_and_grad(f))(free)
    return float(v), {k: float(x) for k, x in g.items()}


def training_objective(
    problem: TrainingProblem,
    optimizer: str,
    seeds,
    horizon: int,
    *,
    truncation: int | None = None,
    log: bool = True,
) -> Callable[[Mapping[str, jax.Array]], jax.Array]:
    """``hparams -> mean over seeds of (log) L_val after horizon steps``, for :func:`~dynsim.tuning.tuner.minimize`."""
    p0 = _stack_seeds(problem, seeds)

    def f(hp):
        hp = {k: jnp.asarray(v, problem.x_train.dtype) for k, v in hp.items()}
        last = jax.vmap(lambda p: unroll_training(problem, optimizer, hp, p, horizon, truncation=truncation)[-1])(p0)
        m = jnp.mean(last)
        return jnp.log(m) if log else m

    return f


def tune_training(
    problem: TrainingProblem,
    optimizer: str = "super_accelerated",
    *,
    free: Mapping[str, float],
    hyper: Mapping[str, float] | None = None,
    starts: Mapping[str, Any] | None = None,
    seeds=(0, 1, 2, 3),
    horizon: int = 50,
    truncation: int | None = None,
    **minimize_kwargs,
) -> TuneResult:
    r"""Tune hyperparameters of a training run by hypergradient descent.

    Minimises ``log mean_{seeds} L_val(θ_horizon)`` over ``free`` (the tuned names and their
    starting values; ``hyper`` the fixed ones; ``starts`` parallel starts, paired element by
    element: as in :func:`~dynsim.tuning.tuner.tune`) with :func:`~dynsim.tuning.tuner.minimize`
    (Adam in the unconstrained coordinates of :data:`~dynsim.tuning.tuner.TRANSFORMS`:
    ``η = softplus(z)``, ``σ = z``). Averaging over
    ``seeds`` (initialisations) and a short ``horizon`` (optionally ``truncation``) keep
    the hypergradient informative: see :func:`horizon_hypergradients` and the
    ``hypergrad-chaos`` figure for what happens over long unrolls.
    """
    init, fixed = split_starts(free, hyper, starts)
    f = training_objective(problem, optimizer, seeds, horizon, truncation=truncation)
    return minimize(f, init, fixed=fixed, **minimize_kwargs)
