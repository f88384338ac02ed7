r"""Smooth convergence objectives, and the surrogates for metrics without a useful gradient.

Each objective takes a :class:`~dynsim.run.Trajectory`, a
:class:`~dynsim.tuning.lognorm.LogNormTrajectory` or a 1-D array of log-norms
``ℓ_i = log ‖(θ_i − θ*, u_{i−1})‖`` (:mod:`dynsim.tuning.lognorm`):

* :func:`log_distance` -- ``log ‖θ_N − θ*‖``;
* :func:`log_loss_after` -- ``log(L(θ_N) − L*)``;
* :func:`log_state_after` -- mean of ``ℓ_i`` over the last steps (a "distance after N
  steps" that an orbit passing through θ* at step N cannot game);
* :func:`smoothed_rate` -- tapered least-squares slope, per step, of ``ℓ_i`` over the last
  ``window`` steps: an estimate of ``log ρ`` (ρ the asymptotic contraction per step).
  Including the velocity ``u`` keeps ``ℓ`` finite when θ crosses θ*, and the regression
  averages out the oscillation of the under-damped regime;
* :func:`soft_steps_to_eps` -- a smooth first-passage time
  ``S = Σ_i Π_{j≤i} sigmoid((ℓ_j − log ε)/τ)``, which tends to the exact steps-to-ε as
  ``τ → 0``.

:func:`convergence_objective` builds ``hyperparameters -> scalar`` from a rule, a
landscape and one of :data:`OBJECTIVES`: simulate, then score.

**Metrics without a useful gradient.** Integer or boolean metrics (steps-to-ε, the
divergence flag, the regime code, argmin over a grid) are piecewise constant in the
hyperparameters: their gradient is zero almost everywhere and undefined at the jumps.
:data:`NON_DIFFERENTIABLE` lists them with the surrogate to use instead;
:func:`surrogate_for` looks one up. :data:`METRIC_GRADIENTS` says how each metric of the
sweep engine differentiates.
"""
from __future__ import annotations

import operator
from typing import Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from dynsim import numerics, optim
from dynsim.landscapes import Landscape
from dynsim.run import Trajectory, simulate
from dynsim.tuning.lognorm import LogNormTrajectory, displacement, log_norm, simulate_lognorm, state_log_norms

__all__ = [
    "log_distance",
    "log_loss_after",
    "log_state_after",
    "smoothed_rate",
    "TAPERS",
    "soft_steps_to_eps",
    "OBJECTIVES",
    "convergence_objective",
    "NON_DIFFERENTIABLE",
    "METRIC_GRADIENTS",
    "surrogate_for",
]

#: Weights of :func:`smoothed_rate`'s regression (:func:`dynsim.numerics.taper`).
TAPERS = numerics.TAPERS


def _log_norms_of(x, minimum=None) -> jax.Array:
    if isinstance(x, LogNormTrajectory):
        return x.log_norm
    if isinstance(x, Trajectory):
        return state_log_norms(x, minimum)
    arr = jnp.asarray(x)
    if arr.ndim != 1:
        raise ValueError(f"expected a Trajectory or a 1-D array of log-norms, got shape {arr.shape}")
    return arr


def _window(window, n: int, lo: int) -> int:
    try:
        w = operator.index(window)
    except TypeError:
        raise ValueError(f"window={window!r} must be a Python int") from None
    if not lo <= w <= n:
        raise ValueError(f"window={window!r} must be in [{lo}, {n}] (the trajectory has {n} points)")
    return w


def log_distance(traj: Trajectory, minimum=None, *, index: int = -1) -> jax.Array:
    r"""``log ‖θ_index − θ*‖`` (default: after the last step); smooth where θ ≠ θ*.

    >>> import jax.numpy as jnp, dynsim
    >>> tr = dynsim.simulate(dynsim.optim.gd(0.5), dynsim.landscapes.quadratic(1.0), jnp.ones(1), 3)
    >>> round(float(log_distance(tr)), 4)   # log 0.125
    -2.0794
    """
    if not isinstance(traj, Trajectory):
        raise ValueError(f"traj must be a dynsim.Trajectory, got {type(traj).__name__}")
    return log_norm(displacement(jax.tree.map(lambda t: t[index], traj.theta), minimum))


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
    return jnp.mean(ell[n - _window(window, n, 1):])


def smoothed_rate(x, window: int | None = None, *, taper: str = "none", minimum=None) -> jax.Array:
    r"""Least-squares slope of ``ℓ_i = log ‖state_i‖`` over the last ``window`` steps.

    .. math:: \hat r = \frac{\sum_i w_i (i-\bar i)(ℓ_i - \bar ℓ)}{\sum_i w_i (i-\bar i)^2}
              \;\xrightarrow{N\to\infty}\; \log ρ ,\qquad \bar i = \frac{\sum w_i i}{\sum w_i},\;
              \bar ℓ = \frac{\sum w_i ℓ_i}{\sum w_i}

    evaluated as ``Σ_j C_j (ℓ_j − ℓ_{j−1})`` with the fixed coefficients of
    :func:`dynsim.numerics.fit_weights` (float64, then cast): small, well-scaled terms,
    even where ``ℓ ≈ −10⁴``. ``x`` is a :class:`~dynsim.run.Trajectory` (then ``ℓ`` is
    :func:`~dynsim.tuning.lognorm.state_log_norms` about ``minimum``), a
    :class:`~dynsim.tuning.lognorm.LogNormTrajectory`, or a 1-D array of log-norms.
    ``window`` defaults to the last half. Negative means converging; the timescale is ``−1/r̂``.

    ``taper`` sets the weights ``w`` (:func:`dynsim.numerics.taper`): ``"none"`` (ordinary
    least squares), ``"hann"`` (``sin²``) or ``"hann2"`` (``sin⁴`` over the window). In the
    under-damped regime ``ℓ_i`` carries a periodic part of phase ``i·arg λ``; with
    uniform weights it leaks into ``r̂`` as ripples in σ of size ``O(1/(W·arg λ))``,
    which make a finite-horizon objective multimodal near critical damping. A taper
    that vanishes smoothly at both ends of the window suppresses the leakage by
    further powers of ``W·arg λ`` (measured: ``hann2`` has 5-10× fewer spurious
    local minima, confined 30-100× closer to σ*; see :func:`dynsim.tuning.tune`).

    >>> import jax.numpy as jnp
    >>> round(float(smoothed_rate(jnp.log(0.9) * jnp.arange(50.0))), 6)
    -0.105361
    """
    ell = _log_norms_of(x, minimum)
    n = ell.shape[0]
    w = _window(n // 2 if window is None else window, n, 2)
    if taper not in TAPERS:
        raise ValueError(f"taper={taper!r} is unknown; choose one of {', '.join(TAPERS)}")
    y = ell[n - w:]
    C = numerics.fit_weights(np.arange(w, dtype=float), numerics.taper(w, taper))
    return jnp.sum(jnp.asarray(C, y.dtype) * jnp.diff(y))


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
      optimizer: rule name or factory (:func:`dynsim.optim.resolve`); the returned function
        takes a dict of *all* its hyperparameters (runtime arrays; tracers fine).
      landscape: the loss (a :class:`~dynsim.landscapes.Landscape`).
      theta0: starting point.
      steps: horizon ``N``.
      objective: ``"log_rate"`` (:func:`smoothed_rate` over the last ``window`` steps,
        default all ``N+1`` points, with weights ``taper``), ``"log_loss"`` (:func:`log_loss_after`, relative to the
        landscape's minimum loss when known), ``"log_distance"``
        (:func:`log_distance`), ``"log_state"`` (:func:`log_state_after`, mean over the last
        ``window`` steps, default ``max(1, N//10)``) or ``"soft_steps"`` (:func:`soft_steps_to_eps`).
      lognorm: use :func:`~dynsim.tuning.lognorm.simulate_lognorm` (exact, never underflows;
        every objective); default: when the rule is linear and the landscape quadratic.
    """
    if objective not in OBJECTIVES:
        raise ValueError(f"objective={objective!r} is unknown; choose one of {', '.join(OBJECTIVES)}")
    if taper not in TAPERS:
        raise ValueError(f"taper={taper!r} is unknown; choose one of {', '.join(TAPERS)}")
    rule_name, factory = optim.resolve(optimizer)
    if not isinstance(landscape, Landscape):
        raise ValueError(f"landscape={landscape!r} must be a dynsim.landscapes.Landscape")
    can_track = (
        rule_name in optim.LINEAR_RULES
        and landscape.hessian_eigenvalues is not None
        and landscape.minimum is not None
    )
    if lognorm is None:
        lognorm = can_track
    if lognorm and not can_track:
        raise ValueError(
            f"lognorm=True needs a linear rule ({', '.join(sorted(optim.LINEAR_RULES))}) on a quadratic landscape"
        )
    theta0 = jnp.asarray(theta0)
    names = set(optim.hyperparameter_names(factory))
    minimum = landscape.minimum

    def f(hparams: Mapping[str, jax.Array]) -> jax.Array:
        unknown = set(hparams) - names
        if unknown:
            raise ValueError(f"hyperparameters {sorted(unknown)} are not taken by {rule_name}; "
                             f"it takes {sorted(names)}")
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

    f.__name__ = f"{objective}[{rule_name}, {landscape.name}, N={steps}]"
    return f


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
    "floor_step": (
        "the checkpoint at which the run reached its floating-point floor: piecewise constant",
        "dynsim.tuning.log_distance (the floor is where it stops falling)",
    ),
    "flags": (
        "integer bit flags (dynsim.metrics.FLAGS)",
        "none needed: a diagnostic, not an objective",
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
    "floor_step": "none",
    "flags": "none",
    "sharpness": "piecewise",  # smooth wherever the top Hessian eigenvalue is simple
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
