r"""Differentiable dynamics: smooth convergence objectives, gradient-based tuning, hypergradients.

Everything :func:`dynsim.simulate` returns is differentiable end to end: ``jax.grad``
goes through the whole ``lax.scan`` to the hyperparameters (η, μ, σ, β₂, ...) and to
θ₀. This module supplies the *objectives* worth differentiating, a tuner that
minimises them with optax, and hypergradients through full-batch network training.

**Smooth objectives** (each takes a :class:`~dynsim.run.Trajectory`; the rate-type
ones also take an array of log-norms):

* :func:`log_distance` -- ``log ‖θ_N − θ*‖``;
* :func:`log_loss_after` -- ``log(L(θ_N) − L*)``;
* :func:`log_state_after` -- mean of ``log ‖(θ_i − θ*, u_{i−1})‖`` over the last steps
  (a "distance after N steps" that an orbit passing through θ* at step N cannot game);
* :func:`smoothed_rate` -- least-squares slope, per step, of
  ``ℓ_i = log ‖(θ_i − θ*, u_{i−1})‖`` over the last ``window`` steps: an estimate of
  ``log ρ`` (ρ the asymptotic contraction per step). Including the velocity ``u``
  keeps ``ℓ`` finite when θ crosses θ* and the regression averages out the
  oscillation of the under-damped regime;
* :func:`soft_steps_to_eps` -- a smooth first-passage time
  ``S = Σ_i Π_{j≤i} sigmoid((ℓ_j − log ε)/τ)``, which tends to the exact
  steps-to-ε as ``τ → 0``.

Log-norms are computed as ``log m + ½ log Σ(x/m)²`` with ``m = max|x|`` held out of
the gradient, so nothing under- or overflows before the state itself does. On a
quadratic with a *linear* rule (GD, heavy ball, Nesterov, super-acceleration, EMA
momentum) :func:`simulate_lognorm` goes further: it renormalises the state to unit
norm after every step and accumulates ``log ‖·‖``, which is exact because the map is
linear, so ``log ρ`` over 10⁵ steps is fine even in float32 where ``ρ^N`` would be
``0``.

**Metrics without a useful gradient.** Integer or boolean metrics (steps-to-ε, the
divergence flag, the regime code, argmin over a grid) are piecewise constant in the
hyperparameters: their gradient is zero almost everywhere and undefined at the
jumps. :data:`NON_DIFFERENTIABLE` lists them with the surrogate to use instead;
:func:`surrogate_for` looks one up.

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
   sign of the gradient*: it finds ``g(lo) < 0 < g(hi)`` around the current iterate and
   halves the bracket, which converges at a kink as well as at a smooth minimum (at a
   kink the gradient has no zero, only a sign change).

The finite-horizon rate uses a ``sin⁴``-tapered regression (:func:`smoothed_rate`,
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

**Hypergradients through training** (:func:`unroll_training`,
:func:`horizon_hypergradients`, :func:`tune_training`). A :mod:`dynsim.optim` rule
is an optax transformation, so a full-batch training loop written with
``rule.init``/``rule.update`` (unchanged) inside ``lax.scan`` is differentiable in
(η, σ). With two hyperparameters and many horizons, *forward mode* is the right
tool: one ``jax.jvp`` pass yields ``d L_val(t)/dσ`` at every step ``t``.
Long unrolls make these hypergradients chaotic (norm grows with the horizon and
their sign stops agreeing across initialisations; Metz et al., "Understanding and
correcting pathologies in the training of learned optimizers", 2019);
:func:`tune_training` uses a short horizon, averages over initialisations and can
truncate the backward dependence to the last ``truncation`` steps.
"""
from __future__ import annotations

import operator
from typing import Any, Callable, Mapping, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from dynsim import optim
from dynsim.landscapes import Landscape
from dynsim.run import Trajectory, as_rule, simulate

PyTree = Any

__all__ = [
    "log_norm",
    "state_log_norms",
    "log_distance",
    "log_loss_after",
    "log_state_after",
    "smoothed_rate",
    "TAPERS",
    "soft_steps_to_eps",
    "LINEAR_RULES",
    "LogNormTrajectory",
    "simulate_lognorm",
    "NON_DIFFERENTIABLE",
    "METRIC_GRADIENTS",
    "surrogate_for",
    "TRANSFORMS",
    "constrain",
    "unconstrain",
    "OBJECTIVES",
    "convergence_objective",
    "TuneResult",
    "minimize",
    "tune",
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


# --------------------------------------------------------------------------- log-norms


def _flat(x: PyTree) -> jax.Array:
    leaves = [jnp.ravel(jnp.asarray(leaf)) for leaf in jax.tree.leaves(x)]
    if not leaves:
        raise ValueError("log_norm: empty pytree")
    return jnp.concatenate(leaves) if len(leaves) > 1 else leaves[0]


def log_norm(x: PyTree) -> jax.Array:
    r"""``log ‖x‖₂`` of an array or pytree, without under/overflow.

    Computed as ``log m + ½ log Σ (x/m)²`` with ``m = max|x|`` treated as a constant
    for differentiation (the identity holds for any ``m``, so the gradient is exact).
    ``−inf`` for ``x = 0``, ``+inf`` if an entry is infinite and ``nan`` if one is NaN (a
    diverged state must never look converged).

    >>> import jax.numpy as jnp
    >>> round(float(log_norm(jnp.array([3e-30, 4e-30], jnp.float32))), 3)  # log 5e-30
    -67.468
    """
    v = _flat(x)
    # Explicit checks: XLA's vectorised max need not propagate NaN (seen under vmap on CPU).
    has_nan = jnp.any(jnp.isnan(v))
    has_inf = jnp.any(jnp.isinf(v))
    m = jax.lax.stop_gradient(jnp.max(jnp.abs(v)))
    ok = (m > 0) & ~has_nan & ~has_inf
    m_safe = jnp.where(ok, m, 1.0)
    s = jnp.sum((jnp.where(ok, v, 0.0) / m_safe) ** 2)
    s_safe = jnp.where(ok, s, 1.0)
    bad = jnp.where(has_nan, jnp.nan, jnp.where(has_inf, jnp.inf, -jnp.inf))
    return jnp.where(ok, jnp.log(m_safe) + 0.5 * jnp.log(s_safe), bad)


def _minimum_like(theta: PyTree, minimum) -> PyTree:
    """θ* shaped like ``theta`` (one step's θ): None → 0, a Landscape → its minimum."""
    if isinstance(minimum, Landscape):
        if minimum.minimum is None:
            raise ValueError(f"minimum: landscape {minimum.name!r} has no known minimum; pass minimum= explicitly")
        minimum = minimum.minimum
    if minimum is None:
        return jax.tree.map(jnp.zeros_like, theta)
    if jax.tree.structure(minimum) == jax.tree.structure(theta):
        return jax.tree.map(lambda t, m: jnp.broadcast_to(jnp.asarray(m, t.dtype), t.shape), theta, minimum)
    return jax.tree.map(lambda t: jnp.broadcast_to(jnp.asarray(minimum, t.dtype), t.shape), theta)


def state_log_norms(traj: Trajectory, minimum=None) -> jax.Array:
    r"""``ℓ_i = log ‖(θ_i − θ*, u_{i−1})‖`` for every step, shape ``(steps+1,)``.

    ``minimum`` is θ* (array, scalar, or a :class:`~dynsim.landscapes.Landscape`);
    default 0. The velocity ``u`` makes ``ℓ`` a norm of the full state of the map, so
    it does not plunge to ``−∞`` when θ passes through θ*.
    """
    if not isinstance(traj, Trajectory):
        raise ValueError(f"traj must be a dynsim.Trajectory, got {type(traj).__name__}")
    th = traj.theta
    mn = _minimum_like(jax.tree.map(lambda t: t[0], th), minimum)
    diff = jax.tree.map(lambda t, m: t - m, th, mn)
    per_step = lambda d, u: log_norm((d, u))
    return jax.vmap(per_step)(diff, traj.velocity)


def log_distance(traj: Trajectory, minimum=None, *, index: int = -1) -> jax.Array:
    r"""``log ‖θ_index − θ*‖`` (default: after the last step); smooth where θ ≠ θ*.

    >>> import jax.numpy as jnp, dynsim
    >>> tr = dynsim.simulate(dynsim.optim.gd(0.5), dynsim.landscapes.quadratic(1.0), jnp.ones(1), 3)
    >>> round(float(log_distance(tr)), 4)   # log 0.125
    -2.0794
    """
    if not isinstance(traj, Trajectory):
        raise ValueError(f"traj must be a dynsim.Trajectory, got {type(traj).__name__}")
    th = jax.tree.map(lambda t: t[index], traj.theta)
    mn = _minimum_like(th, minimum)
    return log_norm(jax.tree.map(lambda t, m: t - m, th, mn))


def log_loss_after(traj: Trajectory, loss_min=0.0, *, index: int = -1) -> jax.Array:
    r"""``log(L(θ_index) − L*)``; ``L*`` is ``loss_min`` (a number or a Landscape: its loss at its minimum).

    Excess loss is what converges geometrically (``∝ ρ^{2N}`` near a smooth minimum), so
    its log is the natural smooth objective; ``−inf`` if the excess is ``≤ 0``, NaN if the loss is.
    """
    if not isinstance(traj, Trajectory):
        raise ValueError(f"traj must be a dynsim.Trajectory, got {type(traj).__name__}")
    if isinstance(loss_min, Landscape):
        if loss_min.minimum is None:
            raise ValueError("loss_min: the landscape has no known minimum")
        loss_min = loss_min.loss(jnp.asarray(loss_min.minimum, traj.loss.dtype))
    excess = traj.loss[index] - jnp.asarray(loss_min, traj.loss.dtype)
    pos = excess > 0
    # excess ≤ 0 → −inf; a NaN loss (diverged) stays NaN, never "converged"
    return jnp.where(pos, jnp.log(jnp.where(pos, excess, 1.0)), jnp.where(jnp.isnan(excess), excess, -jnp.inf))


def log_state_after(x, window: int = 1, *, minimum=None) -> jax.Array:
    r"""Mean of ``ℓ_i = log ‖(θ_i − θ*, u_{i−1})‖`` over the last ``window`` steps.

    A robust "how close after N steps": with the velocity in the norm and an average over a
    late window, it cannot be gamed by a σ whose orbit happens to pass through θ* exactly at
    step N (``log_distance`` has such downward spikes, one per oscillation, and a
    bisection will find them). ``x``: Trajectory, LogNormTrajectory or log-norm array.
    """
    ell = _log_norms_of(x, minimum)
    n = ell.shape[0]
    try:
        w = operator.index(window)
    except TypeError:
        raise ValueError(f"window={window!r} must be a Python int") from None
    if not 1 <= w <= n:
        raise ValueError(f"window={window!r} must be in [1, {n}]")
    return jnp.mean(ell[n - w:])


class LogNormTrajectory(NamedTuple):
    """Output of :func:`simulate_lognorm`.

    Attributes:
      log_norm: ``(steps+1,)``, ``ℓ_i = log ‖(θ_i − θ*, u_{i−1})‖``, exact even where
        the state itself would underflow.
      theta: ``(steps+1, *θ₀.shape)``, the *renormalised* displacement
        ``(θ_i − θ*)/‖state_i‖`` (a direction, not a position).
    """

    log_norm: jax.Array
    theta: jax.Array


def _log_norms_of(x, minimum=None) -> jax.Array:
    if isinstance(x, LogNormTrajectory):
        return x.log_norm
    if isinstance(x, Trajectory):
        return state_log_norms(x, minimum)
    arr = jnp.asarray(x)
    if arr.ndim != 1:
        raise ValueError(f"expected a Trajectory or a 1-D array of log-norms, got shape {arr.shape}")
    return arr


TAPERS = ("none", "hann", "hann2")


def _taper(w: int, kind: str, dtype) -> jax.Array:
    x = (jnp.arange(w, dtype=dtype) + 0.5) / w
    if kind == "none":
        return jnp.ones(w, dtype)
    if kind == "hann":
        return jnp.sin(jnp.pi * x) ** 2
    return jnp.sin(jnp.pi * x) ** 4


def smoothed_rate(x, window: int | None = None, *, taper: str = "none", minimum=None) -> jax.Array:
    r"""Least-squares slope of ``ℓ_i = log ‖state_i‖`` over the last ``window`` steps.

    .. math:: \hat r = \frac{\sum_i w_i (i-\bar i)(ℓ_i - \bar ℓ)}{\sum_i w_i (i-\bar i)^2}
              \;\xrightarrow{N\to\infty}\; \log ρ ,\qquad \bar i = \frac{\sum w_i i}{\sum w_i},\;
              \bar ℓ = \frac{\sum w_i ℓ_i}{\sum w_i}

    ``x`` is a :class:`~dynsim.run.Trajectory` (then ``ℓ`` is
    :func:`state_log_norms` about ``minimum``), a :class:`LogNormTrajectory`, or a
    1-D array of log-norms. ``window`` defaults to the last half. Negative means
    converging; the timescale is ``−1/r̂``.

    ``taper`` sets the weights ``w``: ``"none"`` (ordinary least squares),
    ``"hann"`` (``sin²``) or ``"hann2"`` (``sin⁴`` over the window). In the
    under-damped regime ``ℓ_i`` carries a periodic part of phase ``i·arg λ``; with
    uniform weights it leaks into ``r̂`` as ripples in σ of size ``O(1/(W·arg λ))``,
    which make a finite-horizon objective multimodal near critical damping. A taper
    that vanishes smoothly at both ends of the window suppresses the leakage by
    further powers of ``W·arg λ`` (measured: ``hann2`` has 5-10× fewer spurious
    local minima, confined 30-100× closer to σ*; see :func:`tune`).

    >>> import jax.numpy as jnp
    >>> round(float(smoothed_rate(jnp.log(0.9) * jnp.arange(50.0))), 6)
    -0.105361
    """
    ell = _log_norms_of(x, minimum)
    n = ell.shape[0]
    w = n // 2 if window is None else window
    try:
        w = operator.index(w)
    except TypeError:
        raise ValueError(f"window={window!r} must be a Python int") from None
    if not 2 <= w <= n:
        raise ValueError(f"window={window!r} must be in [2, {n}] (the trajectory has {n} points)")
    if taper not in TAPERS:
        raise ValueError(f"taper={taper!r} is unknown; choose one of {', '.join(TAPERS)}")
    y = ell[n - w:]
    wt = _taper(w, taper, y.dtype)
    wt = wt / jnp.sum(wt)
    i = jnp.arange(w, dtype=y.dtype)
    i = i - jnp.sum(wt * i)
    return jnp.sum(wt * i * (y - jnp.sum(wt * y))) / jnp.sum(wt * i * i)


def soft_steps_to_eps(x, eps: float, *, temperature: float = 0.25, settle: bool = False, minimum=None) -> jax.Array:
    r"""Smooth surrogate of steps-to-ε, the first passage of ``ℓ_i = log ‖state_i‖`` below ``log ε``.

    .. math:: S_τ = \sum_{i=0}^{N} \prod_{j \le i} \mathrm{sigmoid}\!\left(\frac{ℓ_j - \log ε}{τ}\right)

    is the expected survival count when step ``j`` "passes" with probability
    ``sigmoid((log ε − ℓ_j)/τ)``; as ``τ → 0`` it is exactly the first-passage index
    (``N+1`` if ε is never reached, where the gradient vanishes: there is nothing to
    improve locally). ``settle=True`` gives the *settling* time instead (the first
    step after which ``ℓ`` stays below ``log ε``, as :mod:`dynsim.metrics` reports
    ``steps_to_eps``): ``Σ_i (1 − Π_{j ≥ i} sigmoid((log ε − ℓ_j)/τ))``. ``τ`` is in
    nats; pass log-norms relative to the start (``ℓ − ℓ_0``) for a relative ε.
    Computed in log space.

    >>> import jax.numpy as jnp
    >>> ell = jnp.log(0.5) * jnp.arange(20.0)            # ‖state_i‖ = 2^-i
    >>> round(float(soft_steps_to_eps(ell, 1e-3, temperature=0.01)))   # 2^-10 < 1e-3
    10
    """
    ell = _log_norms_of(x, minimum)
    if not (isinstance(eps, jax.core.Tracer) or float(eps) > 0):
        raise ValueError(f"eps={eps!r} must be > 0")
    if not (isinstance(temperature, jax.core.Tracer) or float(temperature) > 0):
        raise ValueError(f"temperature={temperature!r} must be > 0")
    z = (ell - jnp.log(jnp.asarray(eps, ell.dtype))) / temperature
    if settle:
        # log Π_{j≥i} P(below at j) = reverse cumulative sum of log sigmoid(−z)
        log_below = jnp.cumsum(jax.nn.log_sigmoid(-z)[::-1])[::-1]
        return jnp.sum(-jnp.expm1(log_below))
    return jnp.sum(jnp.exp(jnp.cumsum(jax.nn.log_sigmoid(z))))


# --------------------------------------------------------------------------- log-norm tracked simulation

#: Rules whose map is linear in (θ − θ*, velocity, direction state) on a quadratic.
LINEAR_RULES = ("gd", "heavy_ball", "nesterov", "super_accelerated", "ema_momentum", "nesterov_time_varying")


def simulate_lognorm(optimizer, landscape: Landscape, theta0, steps: int, *, unroll: int = 1) -> LogNormTrajectory:
    r"""Run a linear rule on a quadratic, renormalising every step; returns exact log-norms.

    On a quadratic the map ``(θ − θ*, u, s) ↦ (θ' − θ*, u', s')`` of a rule in
    :data:`LINEAR_RULES` is linear, so it commutes with scaling: after each step we
    divide the state by its norm ``c_i`` and add ``log c_i`` to a running sum. The
    result equals :func:`state_log_norms` of :func:`dynsim.simulate` (a test checks
    it) but never underflows: ``N = 10⁵`` steps at ``ρ = 0.9`` give ``ℓ ≈ −10⁴``,
    far below float32's ``log(1e−45) ≈ −103``. Differentiable in the hyperparameters
    and θ₀ like :func:`dynsim.simulate`.

    Args:
      optimizer: a rule named in :data:`LINEAR_RULES`.
      landscape: a quadratic :class:`~dynsim.landscapes.Landscape` (one with a Hessian
        spectrum and a minimum: ``quadratic``, ``quadratic_nd``, ``linear_regression``).
      theta0: starting point (array), ``≠ θ*``.
      steps: number of steps (Python int).
    """
    from dynsim.run import check_steps

    n = check_steps(steps)
    rule = as_rule(optimizer)
    if rule.name not in LINEAR_RULES:
        raise ValueError(
            f"optimizer={rule.name!r}: simulate_lognorm needs a rule that is linear on a quadratic "
            f"({', '.join(LINEAR_RULES)}); use dynsim.simulate + state_log_norms for others"
        )
    if not isinstance(landscape, Landscape) or landscape.hessian_eigenvalues is None or landscape.minimum is None:
        raise ValueError(
            f"landscape={getattr(landscape, 'name', landscape)!r}: simulate_lognorm needs a quadratic "
            "Landscape (with hessian_eigenvalues and minimum)"
        )
    theta0 = jnp.asarray(theta0)
    if not jnp.issubdtype(theta0.dtype, jnp.floating):
        raise ValueError("theta0 must be an array of floats")
    mn = jnp.broadcast_to(jnp.asarray(landscape.minimum, theta0.dtype), theta0.shape)
    loss = landscape.loss
    g_star = jax.grad(loss)(mn)
    # ∇L(θ* + d) − ∇L(θ*) = H d exactly linear in d (subtracting removes the tiny residual
    # gradient at a numerically computed minimum, which would break homogeneity).
    grad_fn = lambda d: jax.grad(loss)(mn + d) - g_star

    def scale(tree, c):
        return jax.tree.map(lambda a: a / c.astype(a.dtype) if jnp.issubdtype(a.dtype, jnp.floating) else a, tree)

    d0 = theta0 - mn
    l0 = log_norm(d0)
    c0 = jnp.exp(l0)
    state0 = rule.map_init(d0)
    d0n = d0 / c0

    def body(carry, _):
        d, state, acc = carry
        d, state = rule.map_step(grad_fn, d, state)
        lc = log_norm((d, state.velocity))
        c = jnp.exp(lc)
        d = d / c
        state = state._replace(velocity=state.velocity / c, inner=scale(state.inner, c))
        acc = acc + lc
        return (d, state, acc), (acc, d)

    _, (ells, ds) = jax.lax.scan(body, (d0n, state0, l0), None, length=n, unroll=unroll)
    return LogNormTrajectory(
        log_norm=jnp.concatenate([l0[None], ells]),
        theta=jnp.concatenate([d0n[None], ds], axis=0),
    )


# --------------------------------------------------------------------------- non-differentiable metrics

#: Metrics whose gradient is useless (zero a.e., undefined at jumps), each with a smooth surrogate.
NON_DIFFERENTIABLE: dict[str, tuple[str, str]] = {
    "steps_to_eps": (
        "integer first-passage / settling time: piecewise constant in the hyperparameters",
        "dynsim.tuning.soft_steps_to_eps (settle=True for the settling time; exact as temperature → 0), "
        "or smoothed_rate",
    ),
    "diverged": (
        "boolean flag",
        "dynsim.tuning.smoothed_rate (> 0 ⇔ the state grows)",
    ),
    "converged": (
        "boolean flag",
        "dynsim.tuning.log_distance or smoothed_rate",
    ),
    "regime": (
        "integer regime code (dynsim.analysis.regime)",
        "the discriminant p² − 4b from dynsim.analysis.characteristic_coefficients",
    ),
    "argmin": (
        "index of the best grid point",
        "dynsim.tuning.minimize / tune (gradient-based argmin)",
    ),
    "best_sigma": (
        "argmin over a σ grid",
        "dynsim.tuning.tune",
    ),
}


#: How every metric of the sweep engine (:data:`dynsim.metrics.METRICS`) differentiates
#: through :func:`dynsim.metrics.run_metrics`: ``"smooth"`` (use it directly),
#: ``"piecewise"`` (differentiable wherever the maximising step is unique) or ``"none"``
#: (piecewise constant; see :data:`NON_DIFFERENTIABLE` for the surrogate). A test
#: checks this table covers the registry and that the smooth ones match finite differences.
METRIC_GRADIENTS: dict[str, str] = {
    "rate": "smooth",
    "rho": "smooth",
    "timescale": "smooth",
    "final_loss": "smooth",
    "final_distance": "smooth",
    "log_distance": "smooth",
    "overshoot": "piecewise",
    "steps_to_eps": "none",
    "diverged": "none",
}


def surrogate_for(metric: str) -> str:
    """The smooth surrogate to differentiate instead of a non-differentiable ``metric``.

    Raises ``ValueError`` if ``metric`` is differentiable or unknown to this table.

    >>> surrogate_for("steps_to_eps").split(" ")[0]
    'dynsim.tuning.soft_steps_to_eps'
    """
    if metric not in NON_DIFFERENTIABLE:
        raise ValueError(
            f"metric={metric!r} is not listed as non-differentiable; listed: {', '.join(NON_DIFFERENTIABLE)}"
        )
    return NON_DIFFERENTIABLE[metric][1]


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


# --------------------------------------------------------------------------- objectives on landscapes

OBJECTIVES = ("log_rate", "log_loss", "log_distance", "log_state", "soft_steps")


def convergence_objective(
    optimizer: str | Callable[..., optim.Rule],
    landscape: Landscape,
    theta0,
    steps: int,
    *,
    objective: str = "log_rate",
    window: int | None = None,
    taper: str = "hann2",
    eps: float = 1e-6,
    temperature: float = 0.25,
    lognorm: bool | None = None,
) -> Callable[[Mapping[str, jax.Array]], jax.Array]:
    r"""A smooth function ``hyperparams -> scalar`` to minimise: simulate, then score.

    Args:
      optimizer: rule name or factory (:func:`dynsim.optim.get`); the returned function
        takes a dict of *all* its hyperparameters (runtime arrays; tracers fine).
      landscape: the loss (a :class:`~dynsim.landscapes.Landscape`).
      theta0: starting point.
      steps: horizon ``N``.
      objective: ``"log_rate"`` (:func:`smoothed_rate` over the last ``window`` steps,
        default all ``N+1`` points, with weights ``taper``), ``"log_loss"`` (:func:`log_loss_after`, relative to the
        landscape's minimum loss when known), ``"log_distance"``
        (:func:`log_distance`), ``"log_state"`` (:func:`log_state_after`, mean over the last
        ``window`` steps, default ``max(1, N//10)``) or ``"soft_steps"`` (:func:`soft_steps_to_eps`).
      lognorm: use :func:`simulate_lognorm` (exact, never underflows; every objective);
        default: when the rule is linear and the landscape quadratic.
    """
    if objective not in OBJECTIVES:
        raise ValueError(f"objective={objective!r} is unknown; choose one of {', '.join(OBJECTIVES)}")
    if taper not in TAPERS:
        raise ValueError(f"taper={taper!r} is unknown; choose one of {', '.join(TAPERS)}")
    factory = optim._resolve(optimizer) if isinstance(optimizer, str) else optimizer
    if not isinstance(landscape, Landscape):
        raise ValueError(f"landscape={landscape!r} must be a dynsim.landscapes.Landscape")
    can_track = (
        getattr(factory, "__name__", "") in LINEAR_RULES
        and landscape.hessian_eigenvalues is not None
        and landscape.minimum is not None
    )
    if lognorm is None:
        lognorm = can_track
    if lognorm and not can_track:
        raise ValueError(
            f"lognorm=True needs a linear rule ({', '.join(LINEAR_RULES)}) on a quadratic landscape"
        )
    theta0 = jnp.asarray(theta0)
    names = set(optim.hyperparameter_names(factory))
    minimum = landscape.minimum

    def f(hparams: Mapping[str, jax.Array]) -> jax.Array:
        unknown = set(hparams) - names
        if unknown:
            raise ValueError(f"hyperparameters {sorted(unknown)} are not taken by {factory.__name__}; it takes {sorted(names)}")
        rule = factory(**hparams)
        if objective in ("log_rate", "soft_steps", "log_state"):
            if lognorm:
                ell = simulate_lognorm(rule, landscape, theta0, steps).log_norm
            else:
                ell = state_log_norms(simulate(rule, landscape, theta0, steps), minimum)
            if objective == "log_rate":
                return smoothed_rate(ell, steps + 1 if window is None else window, taper=taper)
            if objective == "log_state":
                return log_state_after(ell, max(1, steps // 10) if window is None else window)
            return soft_steps_to_eps(ell, eps, temperature=temperature)
        if lognorm:
            # Exact in any precision: θ_N − θ* = e^{ℓ_N}·d̂_N with d̂_N the renormalised
            # displacement, and on a quadratic L(θ* + c·d̂) − L* = c²·(L(θ* + d̂) − L*).
            tr = simulate_lognorm(rule, landscape, theta0, steps)
            d_hat = tr.theta[-1]
            if objective == "log_distance":
                return tr.log_norm[-1] + log_norm(d_hat)
            mn = jnp.broadcast_to(jnp.asarray(minimum, d_hat.dtype), d_hat.shape)
            excess = landscape.loss(mn + d_hat) - landscape.loss(mn)
            return 2 * tr.log_norm[-1] + jnp.log(excess)
        traj = simulate(rule, landscape, theta0, steps)
        if objective == "log_distance":
            return log_distance(traj, minimum)
        return log_loss_after(traj, landscape if minimum is not None else 0.0)

    f.__name__ = f"{objective}[{getattr(factory, '__name__', factory)}, {landscape.name}, N={steps}]"
    return f


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

    def make_value(f):
        return lambda z_i, fx_i: f({**constrain(z_i, transforms), **fx_i})

    hist_v, hist_p, stage_ends = [], {k: [] for k in names}, []
    stage_params = {k: [] for k in names}
    refined = np.zeros(n_starts, bool)
    vals = okg = None
    for f, n_it in zip(stages, stage_steps):
        # One compiled program per stage: value and gradient for all starts. The optax
        # loop and the bisection drive it from Python (cheap next to compiling a scan
        # of the scan for each use of the gradient).
        vg = jax.jit(jax.vmap(jax.value_and_grad(make_value(f))))
        stx = tx if tx is not None else optax.adam(
            optax.cosine_decay_schedule(learning_rate, max(n_it, 1), alpha=0.01)
        )
        tx_step = jax.jit(jax.vmap(_tx_step(stx)))
        st = jax.vmap(stx.init)(z)
        vs, ps = [], {k: [] for k in names}
        from tqdm.auto import tqdm

        for _ in tqdm(range(n_it), desc=f"minimize stage {len(stage_ends) + 1}/{len(stages)}", disable=not progress):
            v, g = vg(z, fx)
            vs.append(np.asarray(v))
            for k in names:
                ps[k].append(np.asarray(constrain({k: z[k]}, transforms)[k]))
            z, st = tx_step(z, g, v, st)
        if do_refine:
            (name,) = names
            zr, ok = _bisect_sign(lambda s: vg({name: s}, fx)[1][name], np.asarray(z[name]), bracket, bisect_iters)
            refined = ok
            z = {name: jnp.asarray(np.where(ok, zr, np.asarray(z[name])))}
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


def _all_finite_batched(tree) -> jax.Array:
    return jnp.all(jnp.stack([jnp.isfinite(x).reshape(x.shape[0], -1).all(axis=1) for x in jax.tree.leaves(tree)]), axis=0)


def _tx_step(tx):
    def step(z, g, v, st):
        ok = jnp.isfinite(v) & _all_finite(g)
        g = jax.tree.map(lambda x: jnp.where(ok, x, 0.0), g)  # a bad start stands still
        upd, st = tx.update(g, st, z)
        return optax.apply_updates(z, upd), st

    return step


def _bisect_sign(grad, z, width, iters):
    """Bracket a sign change of ``g = ∂F/∂z`` around ``z`` (g(lo) < 0 < g(hi)), then bisect.

    ``grad`` maps a batch of points to a batch of derivatives. Returns ``(z, found)``
    per start. Works at a kink, where ``g`` jumps from negative to positive without a
    zero, as well as at a smooth minimum; a bracket is searched by doubling steps
    (12 at most) on each side.
    """
    z = np.asarray(z, dtype=float)
    w = np.full_like(z, width)
    lo, hi = z - w, z + w
    glo, ghi = np.asarray(grad(jnp.asarray(lo))), np.asarray(grad(jnp.asarray(hi)))
    for _ in range(12):
        need_lo, need_hi = ~(glo < 0), ~(ghi > 0)
        if not (need_lo.any() or need_hi.any()):
            break
        lo, hi = np.where(need_lo, lo - w, lo), np.where(need_hi, hi + w, hi)
        w = 2 * w
        if need_lo.any():
            glo = np.where(need_lo, np.asarray(grad(jnp.asarray(lo))), glo)
        if need_hi.any():
            ghi = np.where(need_hi, np.asarray(grad(jnp.asarray(hi))), ghi)
    found = (glo < 0) & (ghi > 0)
    for _ in range(iters):
        mid = 0.5 * (lo + hi)
        up = np.asarray(grad(jnp.asarray(mid))) > 0
        lo, hi = np.where(up, lo, mid), np.where(up, mid, hi)
    return 0.5 * (lo + hi), found


def tune(
    optimizer: str | Callable[..., optim.Rule],
    landscape: Landscape,
    theta0,
    *,
    free: Mapping[str, Any],
    fixed: Mapping[str, Any] | None = None,
    objective: str = "log_rate",
    horizons: Sequence[int] = (200, 1600, 6400, 25600),
    window_fraction: float | None = None,
    taper: str = "hann2",
    **minimize_kwargs,
) -> TuneResult:
    r"""Tune the ``free`` hyperparameters of a rule on a landscape by gradient descent.

    Builds :func:`convergence_objective` at each of ``horizons`` (the horizon
    schedule; each stage warm-starts from the previous) and calls :func:`minimize`.
    ``free`` maps names to starting values (scalars or ``(n_starts,)`` arrays: all
    starts run at once); ``fixed`` holds the rest (also scalars or per-start arrays).
    ``objective``: ``"log_rate"`` (tapered :func:`smoothed_rate` over the last
    ``window_fraction`` of each horizon, default all of it), ``"log_state"``
    (:func:`log_state_after` over the last ``window_fraction``, default 10 %),
    ``"log_loss"``, ``"log_distance"`` or ``"soft_steps"``. Further keywords go to :func:`minimize` (``steps``,
    ``learning_rate``, ``refine``, ...).

    *Accuracy at critical damping.* The minimiser of the horizon-``N`` rate lies on
    the under-damped side of σ*, inside a boundary layer where fewer than ~one
    oscillation fits in the window: ``σ* − σ̂ ≲ C/(N² (kη)^{3/2})`` (φ² ≈ (kη)^{3/2}|σ−σ*|
    near σ*). With the default schedule ending at ``N = 25 600`` that is below 10⁻³
    for ``kη ≳ 0.01``; smaller kη needs a longer last horizon.

    >>> import jax.numpy as jnp, dynsim
    >>> r = tune("super_accelerated", dynsim.landscapes.quadratic(1.0), jnp.ones(1),
    ...          free={"sigma": 0.0}, fixed={"learning_rate": 0.1, "momentum": 0.9},
    ...          horizons=(100, 1600), steps=(100, 0), learning_rate=0.5)
    >>> abs(r.best["sigma"] - float(dynsim.analysis.critical_sigma(0.1, 0.9))) < 2e-3
    True
    """
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
            optimizer, landscape, theta0, h, objective=objective, taper=taper,
            window=max(lo, min(h + 1, int(round(window_fraction * (h + 1))))),
        )
        for h in hs
    ]
    return minimize(stages, free, fixed=fixed, **minimize_kwargs)


# --------------------------------------------------------------------------- hypergradients through training
#
# A :mod:`dynsim.optim` rule is an optax transformation, so a full-batch training
# loop over ``rule.init``/``rule.update`` inside ``lax.scan`` is differentiable in the
# rule's hyperparameters. These functions mirror :func:`dynsim.training.train`'s
# conventions (seed ``s`` initialises with ``model.init(s, ...)``; losses are
# evaluated at the paper's θ = ``rule.to_paper(Θ, state)``), but are pure functions
# of the hyperparameters: the training engine's bookkeeping (divergence freezing,
# chunking, xarray output) has no derivative, so it is not reused for gradients. A
# test checks both engines give the same validation-loss curve.


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
    from dynsim.run import check_steps

    n = check_steps(steps)
    if truncation is not None and (not isinstance(truncation, int) or not 1 <= truncation):
        raise ValueError(f"truncation={truncation!r} must be None or an int >= 1")
    model = problem.model
    xtr, ytr, xv, yv = problem.x_train, problem.y_train, problem.x_val, problem.y_val
    factory = optim._resolve(optimizer) if isinstance(optimizer, str) else optimizer

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


def validation_curve(problem: TrainingProblem, optimizer: str, hparams: Mapping[str, Any], seeds, steps: int) -> np.ndarray:
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
    per = lambda h, p: unroll_training(problem, optimizer, h, p, steps)
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
    vals, grads = [], {k: [] for k in wrt}
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
    """``hparams -> mean over seeds of (log) L_val after horizon steps``, for :func:`minimize`."""
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
    free: Mapping[str, Any],
    fixed: Mapping[str, Any] | None = None,
    seeds=(0, 1, 2, 3),
    horizon: int = 50,
    truncation: int | None = None,
    **minimize_kwargs,
) -> TuneResult:
    r"""Tune hyperparameters of a training run by hypergradient descent.

    Minimises ``log mean_{seeds} L_val(θ_horizon)`` over ``free`` (starting values,
    scalars or ``(n_starts,)`` arrays) with :func:`minimize` (Adam in the unconstrained
    coordinates of :data:`TRANSFORMS`: ``η = softplus(z)``, ``σ = z``). Averaging over
    ``seeds`` (initialisations) and a short ``horizon`` (optionally ``truncation``) keep
    the hypergradient informative: see :func:`horizon_hypergradients` and the
    ``hypergrad-chaos`` figure for what happens over long unrolls.
    """
    f = training_objective(problem, optimizer, seeds, horizon, truncation=truncation)
    return minimize(f, free, fixed=fixed, **minimize_kwargs)
