r"""Gradient-based tuning of hyperparameters: :func:`minimize` (any smooth objective) and :func:`tune`.

Everything :func:`dynsim.simulate` returns is differentiable end to end: ``jax.grad``
goes through the whole ``lax.scan`` to the hyperparameters (η, μ, σ, β₂, ...) and to
θ₀. :func:`tune` minimises a :func:`~dynsim.tuning.objectives.convergence_objective`
with optax; :func:`minimize` takes any ``f(hyperparameters) -> scalar`` (also the
training objectives of :mod:`dynsim.tuning.hypergradients`).

**Tuning** (:func:`minimize`, :func:`tune`). Hyperparameters are optimised in
unconstrained coordinates ``z`` (:data:`TRANSFORMS`): ``η = softplus(z)`` (> 0),
``μ, β₁, β₂ = sigmoid(z)`` (in (0, 1)), ``ε = softplus(z)``, ``σ = z`` (any real).
Softplus behaves like ``exp`` for small η, so an optax step in ``z`` is a relative
step in η. Many starting points run at once under ``jax.vmap`` (fixed
hyperparameters may differ per start, so one compiled program solves a batch of
problems); every start is returned and the best finite one is picked.

**The kink at critical damping.** On ``L = kθ²/2`` the asymptotic rate
``log ρ(σ)`` is minimised at the exact ``σ*`` (:func:`dynsim.analysis.critical_sigma`)
where it is *not differentiable*: the one-sided derivatives are ``−kη/(2b*)``
(under-damped side: ``ρ = √b``, ``d log ρ/dσ = −kη/(2b)``) and ``+∞`` (over-damped
side: ``ρ = (|p| + √Δ)/2`` and ``Δ ∝ σ − σ*`` opens like a square root). Exactly at
σ* the companion matrix is a Jordan block, ``‖M^n x‖ ∝ n λ^n``. A finite-horizon
objective ``F_N(σ)`` (the smoothed rate after ``N`` steps) is an analytic function of
σ converging to ``log ρ(σ)``: it interpolates between the two one-sided slopes inside
a boundary layer ``|σ − σ*| ≲ 1/(N² (kη)^{3/2})`` (where fewer than ~one oscillation,
``N·arg λ ≲ 2π``, fits into the horizon; ``arg² λ ≈ (kη)^{3/2}|σ − σ*|``), so its slope
*at* σ* is finite, positive and grows like ``O(N)`` (tests: 4× the horizon gives ~4× the
slope), and its minimiser lies in the layer on the under-damped side. Hence
``argmin F_N → σ*`` like ``1/N²``, from below. :func:`minimize` therefore

1. runs optax (Adam, cosine-decaying step size: the sign of ∂F/∂σ flips across
   the kink and its size does not shrink there, so only a decreasing step stops the
   iterate from bouncing) on a *horizon schedule* ``N = N₁ < N₂ < ...``, warm-starting
   each stage, so early stages see a smooth, wide basin and late ones a sharp,
   accurate one;
2. for one free hyperparameter, ends every stage with a *bracketing bisection on the
   sign of the gradient*: it finds ``g(lo) < 0 < g(hi)`` around the current iterate
   (:func:`dynsim.numerics.bracket_sign_change`) and halves the bracket
   (:func:`dynsim.numerics.bisect_sign`), which converges at a kink as well as at a
   smooth minimum (at a kink the gradient has no zero, only a sign change).

The finite-horizon rate uses a ``sin⁴``-tapered regression (:func:`~dynsim.tuning.objectives.smoothed_rate`,
``taper="hann2"``): with uniform weights the under-damped oscillation leaks into the
slope as ripples in σ whose spurious local minima sit far from σ*; the taper confines
them close to the boundary layer. With the default schedule ``N = 200, 1600, 6400,
25 600`` this recovers ``σ*`` to better than ``10⁻³`` *absolute* (tested over several
(kη, μ); in the figure down to kη = 0.003, where the error is 8·10⁻⁴). On N-dim
quadratics the late-window rate is dominated by the slowest mode, so ``F_N`` is a
smooth maximum (log-sum-exp at temperature ``~1/N``) of the per-mode rates and the
same procedure finds the σ minimising ``max_i ρ(k_i η, μ, σ)``, whether the optimum
is a mode's own kink or a crossing of two modes' curves (there the bias is
``O(1/(N·Δslope))``, Δslope the difference of the two modes' ``d log ρ/dσ``).
"""
from __future__ import annotations

import operator
from typing import Any, Callable, Mapping, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from dynsim import numerics, optim
from dynsim.landscapes import Landscape
from dynsim.tuning.objectives import convergence_objective

__all__ = ["TRANSFORMS", "constrain", "unconstrain", "TuneResult", "minimize", "tune", "split_starts"]


# --------------------------------------------------------------------------- parametrisation

#: Unconstrained coordinates per hyperparameter name: ``value = f(z)``.
TRANSFORMS: dict[str, str] = {
    "learning_rate": "softplus",
    "momentum": "sigmoid",
    "sigma": "identity",
    "decay": "sigmoid",
    "b1": "sigmoid",
    "b2": "sigmoid",
    "beta": "sigmoid",
    "eps": "softplus",
    "gamma": "softplus",
}

_FORWARD = {
    "identity": lambda z: z,
    "softplus": jax.nn.softplus,
    "sigmoid": jax.nn.sigmoid,
    "exp": jnp.exp,
}


def _inv_softplus(x):
    # log(expm1(x)) without overflow for large x
    return jnp.where(x > 20, x, jnp.log(jnp.expm1(jnp.minimum(x, 20.0))))


_INVERSE = {
    "identity": lambda x: x,
    "softplus": _inv_softplus,
    "sigmoid": lambda x: jnp.log(x) - jnp.log1p(-x),
    "exp": jnp.log,
}


def _transform_of(name: str, transforms: Mapping[str, str] | None) -> str:
    t = (transforms or {}).get(name, TRANSFORMS.get(name, "identity"))
    if t not in _FORWARD:
        raise ValueError(f"transforms[{name!r}]={t!r} is unknown; choose one of {', '.join(_FORWARD)}")
    return t


def constrain(z: Mapping[str, Any], transforms: Mapping[str, str] | None = None) -> dict[str, jax.Array]:
    """Unconstrained ``z`` → hyperparameter values (see :data:`TRANSFORMS`)."""
    return {k: _FORWARD[_transform_of(k, transforms)](v) for k, v in z.items()}


def unconstrain(values: Mapping[str, Any], transforms: Mapping[str, str] | None = None) -> dict[str, jax.Array]:
    """Hyperparameter values → unconstrained ``z``; ``ValueError`` if a value is outside the domain.

    >>> round(float(constrain(unconstrain({"momentum": 0.9}))["momentum"]), 6)
    0.9
    """
    out = {}
    for k, v in values.items():
        t = _transform_of(k, transforms)
        a = np.asarray(v, dtype=float)
        if not np.all(np.isfinite(a)):
            raise ValueError(f"init[{k!r}]={v!r} must be finite")
        if t in ("softplus", "exp") and np.any(a <= 0):
            raise ValueError(f"init[{k!r}]={v!r} must be > 0 ({t} parametrisation)")
        if t == "sigmoid" and np.any((a <= 0) | (a >= 1)):
            raise ValueError(f"init[{k!r}]={v!r} must be in (0, 1) (sigmoid parametrisation)")
        out[k] = _INVERSE[t](jnp.asarray(v, jnp.result_type(float)))
    return out


# --------------------------------------------------------------------------- the tuner


class TuneResult(NamedTuple):
    """Result of :func:`minimize` / :func:`tune`.

    Attributes:
      best: free hyperparameters of the best finite start (floats).
      best_value: its objective value (last stage).
      best_index: its index among the starts.
      params: every start's final free hyperparameters, each ``(n_starts,)``.
      values: every start's final objective, ``(n_starts,)``; ``nan`` where non-finite.
      finite: ``(n_starts,)`` bool, objective and gradient finite at the end.
      refined: ``(n_starts,)`` bool, whether the bisection found a bracket and refined.
      history: ``{"value": (n_iters, n_starts), **{name: (n_iters, n_starts)}}``,
        objective and hyperparameters along the optax iterations, all stages concatenated.
      stage_ends: iteration index where each stage ends (for plotting).
      stage_params: ``{name: (n_stages, n_starts)}``, the free hyperparameters at the end of
        each stage (after its bisection): how the horizon schedule converges.
      fixed: the fixed hyperparameters used.
    """

    best: dict
    best_value: float
    best_index: int
    params: dict
    values: np.ndarray
    finite: np.ndarray
    refined: np.ndarray
    history: dict
    stage_ends: tuple
    stage_params: dict
    fixed: dict


def _as_stages(objective) -> list[Callable]:
    if callable(objective):
        return [objective]
    stages = list(objective)
    if not stages or not all(callable(s) for s in stages):
        raise ValueError("objective must be a callable or a non-empty sequence of callables (stages)")
    return stages


def _all_finite(tree) -> jax.Array:
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)]))


def minimize(
    objective: Callable[[Mapping[str, jax.Array]], jax.Array] | Sequence[Callable],
    init: Mapping[str, Any],
    *,
    fixed: Mapping[str, Any] | None = None,
    transforms: Mapping[str, str] | None = None,
    steps: int | Sequence[int] = 200,
    learning_rate: float = 0.05,
    tx: optax.GradientTransformation | None = None,
    refine: bool = True,
    bracket: float = 0.05,
    bisect_iters: int = 30,
    progress: bool = False,
) -> TuneResult:
    r"""Minimise a smooth objective of hyperparameters from many starting points at once.

    Args:
      objective: ``f(hparams: dict) -> scalar`` receiving the free *and* fixed
        hyperparameters (runtime arrays), or a sequence of such functions: *stages*
        run one after another, each warm-started from the last (a horizon schedule).
      init: starting values of the free hyperparameters, each a scalar or an array
        of shape ``(n_starts,)`` (broadcast together).
      fixed: hyperparameters held constant, scalars or ``(n_starts,)`` arrays (so
        different starts may solve different problems in one compiled program).
      transforms: overrides of :data:`TRANSFORMS` for the free parameters.
      steps: optax iterations, one int for every stage or one per stage.
      learning_rate: peak step of the default optimizer, Adam with a cosine decay to
        1 % within each stage (a decreasing step is what converges at a kink, where
        the gradient's sign flips but its size does not shrink).
      tx: any optax optimizer instead (re-initialised at each stage).
      refine: with exactly one free hyperparameter, end every stage with the
        bracketing bisection on the sign of the gradient (module docstring).
      bracket: initial half-width of the bracket, in unconstrained units (doubled
        up to 12 times until ``g(lo) < 0 < g(hi)``).
      bisect_iters: bisection halvings per stage.
      progress: show a tqdm bar over the optax iterations of each stage.

    A non-finite objective or gradient zeroes that start's update (it never affects
    the other starts) and, if still non-finite at the end, marks it ``finite=False``;
    such a start is never chosen as best.

    >>> import jax.numpy as jnp
    >>> r = minimize(lambda h: (h["sigma"] - 2.0) ** 2 + h["momentum"], {"sigma": jnp.array([0.0, 5.0])},
    ...              fixed={"momentum": 0.5}, steps=100, learning_rate=0.5)
    >>> [round(float(s), 6) for s in r.params["sigma"]]
    [2.0, 2.0]
    """
    stages = _as_stages(objective)
    if not isinstance(init, Mapping) or not init:
        raise ValueError("init must be a non-empty dict of free hyperparameters")
    fixed = dict(fixed or {})
    both = set(init) & set(fixed)
    if both:
        raise ValueError(f"fixed and init both set {sorted(both)}")
    stage_steps = [steps] * len(stages) if isinstance(steps, int) else list(steps)
    if len(stage_steps) != len(stages) or not all(isinstance(s, int) and s >= 0 for s in stage_steps):
        raise ValueError(f"steps={steps!r} must be an int >= 0 or one such int per stage ({len(stages)})")
    if not isinstance(bisect_iters, int) or bisect_iters < 0:
        raise ValueError(f"bisect_iters={bisect_iters!r} must be an int >= 0")
    if not bracket > 0:
        raise ValueError(f"bracket={bracket!r} must be > 0")
    z0 = unconstrain(init, transforms)
    shapes = [jnp.shape(v) for v in (*z0.values(), *fixed.values())]
    try:
        bshape = jnp.broadcast_shapes(*shapes)
    except ValueError as e:
        raise ValueError(f"init/fixed shapes {shapes} do not broadcast: {e}") from None
    if len(bshape) > 1:
        raise ValueError(f"init/fixed must be scalars or 1-D (n_starts,) arrays, got shape {bshape}")
    n_starts = bshape[0] if bshape else 1
    z = {k: jnp.broadcast_to(v, (n_starts,)) for k, v in z0.items()}
    fx = {k: jnp.broadcast_to(jnp.asarray(v, jnp.result_type(float)), (n_starts,)) for k, v in fixed.items()}
    names = tuple(z)
    do_refine = refine and len(names) == 1 and bisect_iters > 0
    hist_v: list[np.ndarray] = []
    hist_p: dict[str, list[np.ndarray]] = {k: [] for k in names}
    stage_ends: list[int] = []
    stage_params: dict[str, list[np.ndarray]] = {k: [] for k in names}
    refined = np.zeros(n_starts, bool)
    vals = okg = None
    for f, n_it in zip(stages, stage_steps):
        stx = tx if tx is not None else optax.adam(
            optax.cosine_decay_schedule(learning_rate, max(n_it, 1), alpha=0.01)
        )
        label = f"minimize stage {len(stage_ends) + 1}/{len(stages)}"
        z, vs, ps, vg = _optax_stage(f, stx, z, fx, transforms, n_it, label, progress)
        if do_refine:
            z, refined = _bisect_stage(vg, z, fx, bracket, bisect_iters)
        vals, g = vg(z, fx)
        okg = np.asarray(_all_finite_batched(g))
        hist_v.append(np.asarray(vs).reshape(n_it, n_starts))
        for k in names:
            hist_p[k].append(np.asarray(ps[k]).reshape(n_it, n_starts))
        stage_ends.append(sum(h.shape[0] for h in hist_v))
        for k, v in constrain(z, transforms).items():
            stage_params[k].append(np.asarray(v, dtype=float))

    vals = np.asarray(vals, dtype=float)
    finite = np.isfinite(vals) & okg
    params = {k: np.asarray(v, dtype=float) for k, v in constrain(z, transforms).items()}
    vals = np.where(finite, vals, np.nan)
    best_index = int(np.nanargmin(vals)) if finite.any() else 0
    best = {k: float(v[best_index]) for k, v in params.items()}
    history = {"value": np.concatenate(hist_v, axis=0)}
    for k in names:
        history[k] = np.concatenate(hist_p[k], axis=0)
    return TuneResult(
        best=best,
        best_value=float(vals[best_index]),
        best_index=best_index,
        params=params,
        values=vals,
        finite=finite,
        refined=refined,
        history=history,
        stage_ends=tuple(stage_ends),
        stage_params={k: np.stack(v) for k, v in stage_params.items()},
        fixed={k: np.asarray(v) for k, v in fixed.items()},
    )


def _optax_stage(f, stx, z, fx, transforms, n_it: int, label: str, progress: bool):
    """``n_it`` optax iterations of one stage for all starts: ``(z, values, params, vg)``.

    One compiled program per stage gives value and gradient for all starts (``vg``); the
    optax loop and the bisection drive it from Python (cheap next to compiling a scan of
    the scan for each use of the gradient).
    """
    from tqdm.auto import tqdm

    vg = jax.jit(jax.vmap(jax.value_and_grad(lambda z_i, fx_i: f({**constrain(z_i, transforms), **fx_i}))))
    tx_step = jax.jit(jax.vmap(_tx_step(stx)))
    st = jax.vmap(stx.init)(z)
    vs: list[np.ndarray] = []
    ps: dict[str, list[np.ndarray]] = {k: [] for k in z}
    for _ in tqdm(range(n_it), desc=label, disable=not progress):
        v, g = vg(z, fx)
        vs.append(np.asarray(v))
        for k in ps:
            ps[k].append(np.asarray(constrain({k: z[k]}, transforms)[k]))
        z, st = tx_step(z, g, v, st)
    return z, vs, ps, vg


def _bisect_stage(vg, z, fx, bracket: float, bisect_iters: int):
    """End a stage of one free hyperparameter by bisection on the sign of ∂F/∂z: ``(z, refined)``.

    The sign of ∂F/∂z brackets a kink as well as a smooth minimum (module docstring).
    """
    (name,) = tuple(z)

    def grad(s):
        return np.asarray(vg({name: jnp.asarray(s)}, fx)[1][name])

    lo, hi, ok = numerics.bracket_sign_change(grad, np.asarray(z[name]), bracket)
    zr = numerics.bisect_sign(grad, lo, hi, rtol=0.0, atol=0.0, maxiter=bisect_iters)
    return {name: jnp.asarray(np.where(ok, zr, np.asarray(z[name])))}, ok


def _all_finite_batched(tree) -> jax.Array:
    rows = [jnp.isfinite(x).reshape(x.shape[0], -1).all(axis=1) for x in jax.tree.leaves(tree)]
    return jnp.all(jnp.stack(rows), axis=0)


def _tx_step(tx):
    def step(z, g, v, st):
        ok = jnp.isfinite(v) & _all_finite(g)
        g = jax.tree.map(lambda x: jnp.where(ok, x, 0.0), g)  # a bad start stands still
        upd, st = tx.update(g, st, z)
        return optax.apply_updates(z, upd), st

    return step


def split_starts(free: Mapping[str, Any], hyper: Mapping[str, Any] | None, starts) -> tuple[dict, dict]:
    """``(init, fixed)`` for :func:`minimize` from :func:`tune`'s ``free``, ``hyper`` and ``starts``: the
    scalars of ``free``/``hyper``, with the per-start values of ``starts`` (paired element by
    element) in their place; ValueError naming the argument otherwise."""
    if not isinstance(free, Mapping) or not free:
        raise ValueError(f"free={free!r} must be a non-empty mapping of the tuned names to their starting values")
    hyper = {} if hyper is None else hyper
    if not isinstance(hyper, Mapping):
        raise ValueError(f"hyper={hyper!r} must be a mapping of hyperparameter names to values")
    for what, m in (("free", free), ("hyper", hyper)):
        for k, v in m.items():
            if np.ndim(v) != 0:
                raise ValueError(f"{what}[{k!r}] has shape {np.shape(v)}: a single value; per-start values go in "
                                 f"starts={{{k!r}: [...]}}")
    both = sorted(set(free) & set(hyper))
    if both:
        raise ValueError(f"free and hyper both set {both}")
    starts = {} if starts is None else starts
    if not isinstance(starts, Mapping):
        raise ValueError(f"starts={starts!r} must be a mapping of names to 1-D per-start values")
    lengths = {}
    for k, v in starts.items():
        if k in hyper:
            raise ValueError(f"starts[{k!r}]: also in hyper; a fixed name's per-start values go in starts only")
        if np.ndim(v) != 1 or np.shape(v)[0] == 0:
            raise ValueError(f"starts[{k!r}] must be a non-empty 1-D array of per-start values, "
                             f"got shape {np.shape(v)}")
        lengths[k] = np.shape(v)[0]
    # lists as arrays; arrays as given (their dtype is the caller's)
    starts = {k: v if hasattr(v, "shape") else np.asarray(v, float) for k, v in starts.items()}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"starts: every name needs the same number of starts (paired, not an outer product), "
                         f"got {lengths}")
    init = {k: starts.get(k, v) for k, v in free.items()}
    fixed = {**hyper, **{k: v for k, v in starts.items() if k not in free}}
    return init, fixed


def _landscape_of(landscape, landscape_params) -> Landscape:
    """A Landscape from any form :func:`dynsim.sweep` takes (a name, a factory, a loss, an import path)."""
    if isinstance(landscape, Landscape):
        if landscape_params:
            raise ValueError("landscape_params: the landscape is already built")
        return landscape
    from dynsim.engine.problem import resolve_landscape

    params = dict(landscape_params or {})
    spec = resolve_landscape(landscape, params)
    try:
        return spec.factory(**params)
    except (TypeError, ValueError) as e:
        raise ValueError(f"landscape={spec.name!r}: building it with landscape_params={params} failed ({e})") from None


def tune(
    optimizer: str | Callable[..., optim.Rule],
    landscape,
    theta0,
    *,
    free: Mapping[str, float],
    hyper: Mapping[str, float] | None = None,
    starts: Mapping[str, Any] | None = None,
    landscape_params: Mapping[str, Any] | None = None,
    objective: str = "log_rate",
    horizons: Sequence[int] = (200, 1600, 6400, 25600),
    window_fraction: float | None = None,
    taper: str = "hann2",
    **minimize_kwargs,
) -> TuneResult:
    r"""Tune the ``free`` hyperparameters of a rule on a landscape by gradient descent.

    Builds :func:`~dynsim.tuning.objectives.convergence_objective` at each of ``horizons`` (the horizon
    schedule; each stage warm-starts from the previous) and calls :func:`minimize`.

    * ``optimizer``: a rule name, a :mod:`dynsim.optim` factory, an optax factory or an import
      path, as :func:`dynsim.sweep` takes it.
    * ``landscape``: a landscape name (``"quadratic"``), factory, ``Landscape``, loss or import
      path, as :func:`dynsim.sweep` takes it; ``landscape_params`` are its fixed arguments.
    * ``free``: the tuned names and their starting values (scalars).
    * ``hyper``: the other hyperparameters, fixed (scalars): one point, as in
      :func:`dynsim.simulate`.
    * ``starts``: parallel starts, all run at once under ``vmap``: ``name -> 1-D values``,
      one per start, *paired element by element* across names (not an outer product, unlike
      a :func:`dynsim.sweep` grid). A free name's values are its starting values; any other
      name is a fixed hyperparameter that differs per start (one compiled program then
      solves several problems). Without ``starts`` there is one start.

    ``objective``: ``"log_rate"`` (tapered :func:`~dynsim.tuning.objectives.smoothed_rate` over the last
    ``window_fraction`` of each horizon, default all of it), ``"log_state"``
    (:func:`~dynsim.tuning.objectives.log_state_after` over the last ``window_fraction``, default 10 %),
    ``"log_loss"``, ``"log_distance"`` or ``"soft_steps"``. Further keywords go to :func:`minimize` (``steps``,
    ``learning_rate``, ``refine``, ...).

    *Accuracy at critical damping.* The minimiser of the horizon-``N`` rate lies on
    the under-damped side of σ*, inside a boundary layer where fewer than ~one
    oscillation fits in the window: ``σ* − σ̂ ≲ C/(N² (kη)^{3/2})`` (φ² ≈ (kη)^{3/2}|σ−σ*|
    near σ*). With the default schedule ending at ``N = 25 600`` that is below 10⁻³
    for ``kη ≳ 0.01``; smaller kη needs a longer last horizon.

    >>> import jax.numpy as jnp, dynsim
    >>> r = tune("super_accelerated", "quadratic", jnp.ones(1),
    ...          free={"sigma": 0.0}, hyper={"learning_rate": 0.1, "momentum": 0.9},
    ...          horizons=(100, 1600), steps=(100, 0), learning_rate=0.5)
    >>> abs(r.best["sigma"] - float(dynsim.analysis.critical_sigma(0.1, 0.9))) < 2e-3
    True
    """
    init, fixed = split_starts(free, hyper, starts)
    from dynsim.optim.spec import resolve_optimizer

    factory = resolve_optimizer(optimizer).factory
    landscape = _landscape_of(landscape, landscape_params)
    try:
        hs = [operator.index(h) for h in horizons]
    except TypeError:
        raise ValueError(f"horizons={horizons!r} must be a list of ints") from None
    if not hs or any(h < 4 for h in hs):
        raise ValueError(f"horizons={horizons!r} must be a non-empty list of ints >= 4")
    if window_fraction is None:
        window_fraction = 0.1 if objective == "log_state" else 1.0
    if not 0 < window_fraction <= 1:
        raise ValueError(f"window_fraction={window_fraction!r} must be in (0, 1]")
    lo = 1 if objective == "log_state" else 2
    stages = [
        convergence_objective(
            factory, landscape, theta0, h, objective=objective, taper=taper,
            window=max(lo, min(h + 1, int(round(window_fraction * (h + 1))))),
        )
        for h in hs
    ]
    return minimize(stages, init, fixed=fixed, **minimize_kwargs)
