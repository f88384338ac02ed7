r"""Online trajectory metrics: computed inside the scan, never from stored trajectories.

:func:`run_metrics` runs one optimizer map on a batch of points (each with its own
hyperparameters) and accumulates, per point, in the scan carry:

``rate``
    asymptotic decay rate per step, :math:`r = -\frac{d}{dt}\ln\lVert x_t\rVert`, from a
    Hann-tapered least-squares fit of :math:`\ln\lVert x_t\rVert` against ``t`` over the late
    window (the last ``window`` fraction of the run), sampled at fit checkpoints
    (:func:`fit_times`). ``x_t = (θ_t − θ^*, u_{t-1})`` is the *full* state (position and
    velocity): for a linear map its norm has no exact zeros, unlike ``θ_t − θ^*``.
``rho``
    :math:`e^{-r}`, the contraction per step; on ``L = kθ²/2`` it estimates
    :func:`dynsim.analysis.spectral_radius`.
``timescale``
    the paper's ``T`` (Nakerst §2.1): :math:`-1/\text{slope}` of an ordinary least-squares
    fit of the log-envelope :math:`\ln\lVert x_t\rVert` over the *whole* run, i.e. the
    ``exp(−t/T)`` envelope including the transient (``inf`` if it does not decay).
    For long runs ``T → 1/r``; its minimiser over σ depends on ``steps``.
``steps_to_eps``
    settling time: the first step after which ``‖θ_t − θ^*‖ ≤ eps·‖θ_0 − θ^*‖`` for the
    rest of the run (NaN if never). Not the first crossing: an oscillation dips below
    ``eps`` at every zero crossing.
``overshoot``
    largest excursion past the minimum along the initial direction,
    :math:`\max_t \max(0, -\langle θ_t − θ^*, \hat d_0\rangle)/\lVert d_0\rVert` with
    :math:`d_0 = θ_0 − θ^*` (control theory's fractional overshoot).
``final_loss``, ``final_distance``, ``log_distance``
    ``L(θ_T)``, ``‖θ_T − θ^*‖`` and its natural log (which never underflows).
``diverged``
    NaN/inf met, or the state norm ‖(θ − θ*, u)‖ or the loss gap ``L − L*`` grew by more
    than ``divergence_factor`` (1e6). A divergent point only affects its own entries: every
    operation is per point.
``floor_step``, ``flags``
    where an unrescaled run reached its floating-point floor (below), and bit flags saying
    why a metric is NaN (:data:`FLAGS`, :func:`describe_flags`).

**Why renormalise.** In float32 a point with ρ = 0.5 underflows after ~150 steps and
``ln‖x‖`` becomes ``−inf``; a naive ratio of norms then reads "no decay" (a 2000-step σ*
grid was off by up to 17 that way). For maps that are *linear and homogeneous in the
state* (GD, heavy ball, Nesterov, super-acceleration, EMA momentum and Nesterov with
time-varying momentum, on quadratic landscapes, in coordinates ``x = θ − θ^*``) the state
can be rescaled freely: every ``every`` steps it is multiplied by an exact power of two
``2^{-e}`` (bit manipulation, no rounding, no log) and the integer ``e`` is accumulated.
Nothing then under- or overflows, however long the run (as long as ``ρ^every`` stays
within the float range: ρ ≳ 0.07 for float32 with ``every = 32``; a point that decays
faster reaches exactly 0 and reports ``rate = inf``). One ``log`` per fit checkpoint gives
the increment ``Δ_j = \ln\lVert x_{t_j}\rVert − \ln\lVert x_{t_{j-1}}\rVert``; the fitted slope is a
fixed linear combination ``Σ_j C_j Δ_j`` (``C_j = Σ_{i≥j} c_i`` for least-squares weights
``c_i``), summed in small, well-scaled terms.

For nonlinear rules or landscapes (RMSProp, Adam, Rosenbrock, eq. (15), every user loss)
rescaling would change the dynamics, so the state is *not* rescaled: ``y`` is tracked directly
(``ln‖x‖`` with a max-abs prescale so squaring never underflows) every ``every`` = 8 steps,
and the series of ``y`` is kept (at most 1024 points per run). Checkpoints below a few ulps of
θ* (``floor_eps``), in the subnormal range (``1e3·tiny``) or non-finite are masked.

**The floating-point floor.** Near a minimiser θ* ≠ 0 the iterate stops moving a few ulps
from θ* (about ``ulp(θ*)/(ηλ)``), so ``y`` stops falling at a floor set by the dtype; it does
not underflow. A fit through the floor reads "slow", and the fastest runs reach it first.
At the end of the run the floor is found from ``y`` alone, without θ* (:func:`series_fit`):
the run's fits then end where it began (``floor_step``; flag ``floor``). The floor cuts
the series before a nearly degenerate slow pair of modes separates, so a floored run's
``rate`` is that of its map *linearised at the floor point*: ``tangent_steps`` steps of
the same step linearised there (``jax.linearize``), from the run's own last displacement well above the floor,
renormalised, with the Hann-tapered slope accumulated at every step (:func:`tangent_rate`;
``tangent_steps`` defaults to the run's length, clipped to [256, 4096]: near critical
damping the slow mode is ``t·λ^t`` and its ``1/t`` bias needs a long tangent).
That is the asymptotic rate the run would show without rounding; it equals ``−ln ρ`` of
the companion matrices of the Hessian's eigenvalues at θ* (see the tests). ``flags``
(:data:`FLAGS`) says why a metric is NaN: too short a window, ``eps`` below the floor, a
plateau above it.

**Estimating the asymptotic rate near critical damping.** At critical damping the slow
mode is ``t·λ^t`` (log-slope ``ln λ + 1/t``) and just below it the oscillation period
diverges, so a finite-window estimate is biased in a σ-dependent way. The taper
suppresses the leakage of the oscillating part of ``ln‖x_t‖`` into the slope (ordinary
least squares leaks ``O(P/W²)`` for period ``P``; a smooth taper much less), and the
bias at the kink shrinks like ``1/(kη W²)`` in σ. :func:`dynsim.locate` therefore
refines σ* with long runs (``2^18`` steps, fitted over the whole run, in float64 by
default): this reproduces :func:`dynsim.analysis.critical_sigma` to better than ``1e-4``
relative for kη ∈ [0.003, 0.6], g ∈ {0.5, 0.9, 0.99} (see the tests). Away from the
kink (|σ − σ*| > 5%) the 4096-step estimate of ρ is within 1e-5 of the exact value for
90% of random stable points and within ~2e-4 at the 99th percentile (slow under-damped
modes, aliased by the fit sampling).

Per-step work is only the map itself plus, when requested, two compare/select pairs for
``steps_to_eps`` and ``overshoot``; everything else happens at checkpoints.

**Why the kernel looks the way it does (XLA:CPU).** XLA:CPU emits one loop fusion per
carried array and recomputes shared work in each, so the state ``(θ − θ*, u)`` is carried as
*one complex array* (``pack``); an ``optimization_barrier`` after each interval stops XLA from
fusing the whole interval into every checkpoint output; renormalisation is bit operations
every ``every`` steps and the log-fit is sparser (:func:`fit_stride`). The best ``unroll``
depends on the block size (:func:`dynsim.engine.default_unroll`). Per-step metrics add a
second carried array. Measured throughputs are in ``results/bench/README.md``.

**Unknown minimum.** When the landscape has no known minimiser (a user's loss), the
distance-based metrics (``steps_to_eps``, ``overshoot``, ``final_distance``,
``log_distance``) are unavailable. ``rate`` and ``timescale`` are then fitted to
:math:`y_t = \tfrac12\ln(L(θ_t) − L^*)` when ``L*`` is known (``Landscape.min_loss``), else to
:math:`\tfrac12\ln L(θ_t)` (the decay of the loss itself, right for losses whose infimum is
0; a loss that stops falling far above any float floor is flagged ``plateau``). The half
makes the rate comparable: near a non-degenerate minimum
:math:`L − L^* ≈ \tfrac12 xᵀHx ∝ \lVert x\rVert^2`. ``diverged`` also fires when the loss gap
``L − L*`` grew by ``divergence_factor``, for every kind of problem. The definitions per kind
of problem are tabulated in ``sweeps/README.md``.

**The package.** One module per job: :mod:`~dynsim.metrics.config` (the names, the options
:class:`MetricConfig`, the ``flags`` bits), :mod:`~dynsim.metrics.schedule` (checkpoint and
fit times), :mod:`~dynsim.metrics.batched` (per-point reductions, exact powers of two),
:mod:`~dynsim.metrics.fits` (the slopes and the floor), :mod:`~dynsim.metrics.scan` (the
pieces of the scan), :mod:`~dynsim.metrics.tangent` (the floored runs' rate),
:mod:`~dynsim.metrics.finalise` (the metrics from the final state) and
:mod:`~dynsim.metrics.kernel` (:func:`run_metrics`).

>>> import jax.numpy as jnp
>>> from dynsim import optim, landscapes
>>> out = run_metrics(optim.super_accelerated, {"learning_rate": jnp.array([0.01, 0.01]),
...                   "momentum": jnp.array([0.9, 0.9]), "sigma": jnp.array([0.0, 9.0])},
...                   landscapes.quadratic, {}, jnp.ones((2, 1)), 2048, metrics=("rho",))
>>> [round(float(r), 3) for r in out["rho"]]        # exact: sqrt(0.9) and 1 - sqrt(0.01)
[0.949, 0.9]
"""
from __future__ import annotations

from dynsim.metrics.config import (
                                   DEFAULT_METRICS,
                                   DISTANCE_METRICS,
                                   FITTED_METRICS,
                                   FLAGS,
                                   LINEAR_LANDSCAPES,
                                   METRIC_OPTIONS,
                                   METRICS,
                                   OPTIONAL_METRICS,
                                   PER_STEP_METRICS,
                                   MetricConfig,
                                   available_metrics,
                                   can_renormalise,
                                   describe_flags,
)
from dynsim.metrics.kernel import run_metrics
from dynsim.metrics.schedule import checkpoint_times, fit_stride, fit_times, series_bytes_per_point
from dynsim.numerics import fit_weights

__all__ = [
    "METRICS",
    "DEFAULT_METRICS",
    "PER_STEP_METRICS",
    "DISTANCE_METRICS",
    "OPTIONAL_METRICS",
    "FITTED_METRICS",
    "LINEAR_LANDSCAPES",
    "MetricConfig",
    "METRIC_OPTIONS",
    "fit_weights",
    "fit_stride",
    "fit_times",
    "checkpoint_times",
    "run_metrics",
    "can_renormalise",
    "available_metrics",
    "series_bytes_per_point",
    "FLAGS",
    "describe_flags",
]
