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
At the end of the run the floor is found from ``y`` alone, without θ* (:func:`_series_fit`):
the run's fits then end where it began (``floor_step``; flag ``floor``). The floor cuts
the series before a nearly degenerate slow pair of modes separates, so a floored run's
``rate`` is that of its map *linearised at the floor point*: ``tangent_steps`` steps of
the same step linearised there (``jax.linearize``), from the run's own last displacement well above the floor,
renormalised, with the Hann-tapered slope accumulated at every step (:func:`_tangent_rate`;
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

>>> import jax.numpy as jnp
>>> from dynsim import optim, landscapes
>>> out = run_metrics(optim.super_accelerated, {"learning_rate": jnp.array([0.01, 0.01]),
...                   "momentum": jnp.array([0.9, 0.9]), "sigma": jnp.array([0.0, 9.0])},
...                   landscapes.quadratic, {}, jnp.ones((2, 1)), 2048, metrics=("rho",))
>>> [round(float(r), 3) for r in out["rho"]]        # exact: sqrt(0.9) and 1 - sqrt(0.01)
[0.949, 0.9]
"""
from __future__ import annotations

import math
from typing import Any, Callable, Mapping, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from dynsim import landscapes as _landscapes
from dynsim import optim as _optim
from dynsim.landscapes import Landscape
from dynsim.numerics import fit_weights, hann_window_weights
from dynsim.optim import LookaheadState, Rule

__all__ = [
    "METRICS",
    "DEFAULT_METRICS",
    "PER_STEP_METRICS",
    "DISTANCE_METRICS",
    "OPTIONAL_METRICS",
    "LINEAR_LANDSCAPES",
    "MetricConfig",
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

METRICS: dict[str, str] = {
    "rate": "asymptotic decay rate per step, -d ln|x|/dt (Hann-tapered fit over the late window, "
            "before the float floor; floored runs: the map linearised at the floor point)",
    "rho": "contraction per step exp(-rate); estimates the spectral radius on quadratics",
    "timescale": "T of the exp(-t/T) envelope: -1/slope of ln|x| fitted over the whole run",
    "steps_to_eps": "first step after which |theta-theta*| <= eps*|theta0-theta*| for good (NaN: never)",
    "overshoot": "largest excursion past the minimum along theta0-theta*, as a fraction of |theta0-theta*|",
    "final_loss": "loss at the last step",
    "final_distance": "|theta-theta*| at the last step",
    "log_distance": "natural log of |theta-theta*| at the last step (never underflows)",
    "diverged": "NaN/inf met, or the state grew by more than divergence_factor",
    "sharpness": "largest Hessian eigenvalue of the loss at the final look-ahead point theta + sigma*u (exact)",
    "floor_step": "step at which the run reached its floating-point floor (the fits end there); NaN: not reached",
    "flags": "bit flags, dynsim.metrics.FLAGS: 1 floor, 2 short fit, 4 eps below floor, 8 plateau, 16 NaN/inf",
}
#: Computed only on request (not in the default set): a dense d×d Hessian per point at the end.
OPTIONAL_METRICS = ("sharpness",)
DEFAULT_METRICS = tuple(m for m in METRICS if m not in OPTIONAL_METRICS)
PER_STEP_METRICS = ("steps_to_eps", "overshoot")
#: Metrics that need the minimiser θ*.
DISTANCE_METRICS = ("steps_to_eps", "overshoot", "final_distance", "log_distance")
_MIN_FIT_POINTS = 32  # fit checkpoints per run, at least (when renormalising)
_MAX_SERIES = 1024  # fit checkpoints kept per point by the unrescaled fits, at most
_UNRESCALED_EVERY = 8  # default checkpoint interval of unrescaled runs

LINEAR_LANDSCAPES = frozenset({"quadratic", "quadratic_nd", "linear_regression"})


def can_renormalise(rule, landscape) -> bool:
    """Whether the state may be rescaled: a linear, homogeneous map (see module docstring).

    ``rule`` and ``landscape`` are the built-in factories (or their registered names); user
    code is never assumed linear, whatever it is called.
    """
    def builtin(x, registry, linear):
        if isinstance(x, str):
            return x in linear
        return any(registry.get(n) is x for n in linear)

    return (builtin(rule, _optim.RULES, _optim.LINEAR_RULES)
            and builtin(landscape, _landscapes.LANDSCAPES, LINEAR_LANDSCAPES))


def available_metrics(has_minimum: bool) -> tuple[str, ...]:
    """The metrics that can be computed with (or without) a known minimiser."""
    return DEFAULT_METRICS if has_minimum else tuple(m for m in DEFAULT_METRICS if m not in DISTANCE_METRICS)


class MetricConfig(NamedTuple):
    """The metric options: the one place they and their defaults live (hashable, static).

    :func:`run_metrics` and :func:`dynsim.sweep` take these as keyword arguments.

    Attributes:
      every: checkpoint (and renormalisation) interval in steps; ``None``: 32 in float32,
        64 in float64 when renormalising (float64 has the range for longer intervals), 8
        for unrescaled runs (their fits need points before the floor).
      window: late-window fraction of the run used for ``rate``, in (0, 1].
      eps: relative distance for ``steps_to_eps``.
      divergence_factor: growth of the state norm that counts as divergence.
      renormalise: rescale the state by powers of two; ``"auto"``: exactly when the map is
        linear (:func:`can_renormalise`).
      floor_eps: relative precision below which unrescaled checkpoints are masked
        (``None``: ``4·eps_mach``; where runs really stall is found from the series).
      unroll: unroll factor of the per-step scan; ``None``: the platform's default
        (:func:`dynsim.engine.default_unroll`).
      pack: carry ``(θ, u)`` as one complex array when the rule has no inner state.
      fit_every: steps between fit points (:func:`fit_stride`).
      tangent_steps: steps of the linearised map that give ``rate`` where an unrescaled run
        reached its floating-point floor (:func:`_tangent_rate`); ``None``: ``steps``
        clipped to [256, 4096]; 0: off (the rate is then fitted before the floor only).
    """

    every: int | None = None
    window: float = 0.5
    eps: float = 1e-6
    divergence_factor: float = 1e6
    renormalise: bool | str = "auto"
    floor_eps: float | None = None
    unroll: int | None = None
    pack: bool = True
    fit_every: int | None = None
    tangent_steps: int | None = None

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> "MetricConfig":
        """Build from keyword options; an unknown one is a ValueError naming it."""
        bad = sorted(set(options) - set(cls._fields))
        if bad:
            raise ValueError(f"unknown option(s) {', '.join(map(repr, bad))}; metric options are "
                             f"{', '.join(cls._fields)}")
        return cls(**{k: v for k, v in options.items() if v is not None or k in ("floor_eps",)})

    def resolved(self, steps: int, dtype, *, linear: bool, default_unroll: int = 4) -> "MetricConfig":
        """Defaults filled in and every value checked (ValueError naming the option)."""
        renorm_default = linear if self.renormalise in (None, "auto") else bool(self.renormalise)
        # Renormalising runs fold every `every` steps and fit sparsely (fit_stride); unrescaled
        # runs only sample their series, finely enough to fit a run that reaches the float
        # floor within ~100 steps (a loss evaluation per 8 steps costs a few % of the run).
        every = self.every if self.every is not None else (
            (64 if jnp.dtype(dtype) == jnp.float64 else 32) if renorm_default else _UNRESCALED_EVERY)
        unroll = self.unroll if self.unroll is not None else default_unroll
        try:
            every, unroll = int(every), int(unroll)
        except (TypeError, ValueError):
            raise ValueError(f"every={self.every!r} and unroll={self.unroll!r} must be integers") from None
        if every < 1:
            raise ValueError(f"every={every} must be >= 1")
        if steps < 3 * every:
            raise ValueError(f"steps={steps} must be at least 3*every={3 * every} (>= 3 checkpoints); "
                             "lower 'every' or raise steps")
        if not 0 < float(self.window) <= 1:
            raise ValueError(f"window={self.window} must be in (0, 1]")
        if not float(self.eps) > 0:
            raise ValueError(f"eps={self.eps} must be > 0")
        if not float(self.divergence_factor) > 1:
            raise ValueError(f"divergence_factor={self.divergence_factor} must be > 1")
        if unroll < 1:
            raise ValueError(f"unroll={unroll} must be >= 1")
        if self.fit_every is not None and int(self.fit_every) < every:
            raise ValueError(f"fit_every={self.fit_every} must be >= every={every}")
        if self.renormalise in (None, "auto"):
            renorm = linear
        elif isinstance(self.renormalise, (bool, np.bool_)):
            renorm = bool(self.renormalise)
        else:
            raise ValueError(f"renormalise={self.renormalise!r} must be True, False or 'auto'")
        tangent = self.tangent_steps
        tangent = min(max(steps, 256), 4096) if tangent is None else int(tangent)
        if tangent < 0:
            raise ValueError(f"tangent_steps={self.tangent_steps} must be >= 0")
        tangent = tangent // _UNRESCALED_EVERY * _UNRESCALED_EVERY
        if 0 < tangent < 4 * _UNRESCALED_EVERY:
            raise ValueError(f"tangent_steps={self.tangent_steps} must be 0 or at least {4 * _UNRESCALED_EVERY}")
        return self._replace(every=every, unroll=unroll, renormalise=renorm, window=float(self.window),
                             tangent_steps=tangent,
                             eps=float(self.eps), divergence_factor=float(self.divergence_factor),
                             pack=bool(self.pack),
                             fit_every=None if self.fit_every is None else int(self.fit_every))


# --------------------------------------------------------------------------- fit schedule


def series_bytes_per_point(steps: int, cfg: MetricConfig, dtype, theta_dim: int) -> int:
    """Bytes an unrescaled run carries per point beyond the state: its series of fit points and
    the tangent's start (:func:`_series_fit`, :func:`_tangent_rate`); 0 when renormalising.
    ``cfg`` is resolved (:meth:`MetricConfig.resolved`)."""
    if cfg.renormalise:
        return 0
    n = len(fit_times(steps, cfg.every, False, False))
    return (n + 6 * theta_dim) * np.dtype(dtype).itemsize


def checkpoint_times(steps: int, every: int) -> np.ndarray:
    """Times ``0, every, 2·every, …, steps`` of the checkpoints (the last may be closer)."""
    t = list(range(0, steps + 1, every))
    if t[-1] != steps:
        t.append(steps)
    return np.asarray(t, dtype=np.float64)


def fit_stride(steps: int, every: int, renormalise: bool, per_step: bool, fit_every: int | None = None) -> int:
    """Renormalisations per fit checkpoint: fit points are every ``every·stride`` steps.

    Renormalising is cheap (bit operations); a fit point costs a ``log`` and, on XLA:CPU,
    as much as ~30 steps of the map. ``fit_every`` (steps, rounded down to a multiple of
    ``every``) defaults to ``max(every, 64)`` when renormalising without per-step
    metrics, and to ``every`` otherwise; at least ``_MIN_FIT_POINTS`` fit points are kept.
    Sparser fit points alias under-damped oscillations into the slope: at 4096 steps the
    99th-percentile relative error of ``rho`` away from the kink is ~1e-4 for 32-step,
    ~2e-4 for 64-step and ~6e-4 for 128-step spacing (σ* refinement is unaffected:
    near the kink the oscillation period is long).
    """
    intervals = steps // every
    if not renormalise:
        # The unrescaled fits keep the whole series of fit points (to cut it at the floor,
        # :func:`_series_fit`): at most _MAX_SERIES of them, however long the run.
        return max(1, -(-intervals // _MAX_SERIES))
    if fit_every is None:
        if per_step:
            return 1
        fit_every = max(every, 64)
    stride = max(1, int(fit_every) // every)
    if per_step:
        stride = 1  # the per-step accumulators are folded (rescaled) at every interval
    return max(1, min(stride, intervals // _MIN_FIT_POINTS))


def fit_times(steps: int, every: int, renormalise: bool, per_step: bool, fit_every: int | None = None) -> np.ndarray:
    """The fit checkpoint times ``0, F, 2F, …, steps`` used by :func:`run_metrics`."""
    return checkpoint_times(steps, every * fit_stride(steps, every, renormalise, per_step, fit_every))


# --------------------------------------------------------------------------- bit-level scaling


def _exponent(a: jax.Array) -> jax.Array:
    """``e`` with ``2^e ≤ a < 2^{e+1}`` for positive normal ``a`` (int32); bit ops only."""
    if a.dtype == jnp.float32:
        bits = jax.lax.bitcast_convert_type(a, jnp.int32)
        return ((bits >> 23) & 0xFF) - 127
    bits = jax.lax.bitcast_convert_type(a, jnp.int64)
    return (((bits >> 52) & 0x7FF) - 1023).astype(jnp.int32)


def _pow2(e: jax.Array, dtype) -> jax.Array:
    """Exact ``2^e`` for ``e`` in the normal range (clipped), built from bits."""
    if jnp.dtype(dtype) == jnp.float32:
        e = jnp.clip(e, -126, 127)
        return jax.lax.bitcast_convert_type((e + 127) << 23, jnp.float32)
    e = jnp.clip(e, -1022, 1023).astype(jnp.int64)
    return jax.lax.bitcast_convert_type((e + 1023) << 52, jnp.float64)


# --------------------------------------------------------------------------- helpers on batched pytrees


def _sum_sq(tree, n_points: int):
    leaves = jax.tree.leaves(tree)
    return sum(jnp.sum(jnp.reshape(x * x, (n_points, -1)), axis=1) for x in leaves)


def _max_abs(tree, n_points: int):
    leaves = jax.tree.leaves(tree)
    out = None
    for x in leaves:
        m = jnp.max(jnp.abs(jnp.reshape(x, (n_points, -1))), axis=1)
        out = m if out is None else jnp.maximum(out, m)
    return out


def _dot(a, b, n_points: int):
    return sum(
        jnp.sum(jnp.reshape(x * y, (n_points, -1)), axis=1)
        for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b))
    )


def _scale(tree, s):
    """Multiply every float leaf of a batched pytree by a per-point factor ``s`` (P,)."""

    def f(x):
        if not jnp.issubdtype(x.dtype, jnp.floating):
            return x
        return x * jnp.reshape(s, s.shape + (1,) * (x.ndim - 1)).astype(x.dtype)

    return jax.tree.map(f, tree)


def _log_norm(tree, n_points: int):
    """``ln‖tree‖`` per point, prescaled by the max-abs entry so squares never underflow."""
    a = _max_abs(tree, n_points)
    ok = (a > 0) & (a < jnp.inf)
    safe = jnp.where(ok, a, 1.0)
    n2 = _sum_sq(_scale(tree, 1.0 / safe), n_points)
    return jnp.where(ok, jnp.log(safe) + 0.5 * jnp.log(n2), jnp.where(a > 0, a, -jnp.inf))


def _bcast(v, x):
    return jnp.reshape(v, v.shape + (1,) * (x.ndim - 1))


def _complex(a, b):
    return jax.lax.complex(a, b)


#: Bit flags of the ``flags`` metric (:func:`describe_flags`).
FLAGS: dict[str, tuple[int, str]] = {
    "floor": (1, "the run reached its floating-point floor at floor_step; the fits end there"),
    "short": (2, "too few usable fit checkpoints (before the floor) to fit rate/timescale: NaN"),
    "eps_below_floor": (4, "steps_to_eps is NaN because eps*|theta0-theta*| lies below the floor"),
    "plateau": (8, "the loss stopped decreasing far above the floating-point floor "
                   "(L* is not 0? give min_loss): rate/timescale NaN"),
    "nonfinite": (16, "NaN/inf met: every metric but diverged is NaN"),
}
# A flat tail: y (½ ln of the loss gap, or ln of the distance) fell by less than half of what
# the rate fitted before it predicts. The floor starts where y first came within
# _FLOOR_MARGIN of the tail's upper envelope (a factor 10 in distance, 100 in the loss gap:
# there the floor's rounding moves y by < 0.5%); the fit ends at the checkpoint before.
_FLOOR_MARGIN = math.log(10.0)
_DISP_MARGIN = 2 * math.log(10.0)


def describe_flags(value) -> list[str]:
    """The names of the bits set in a ``flags`` value (:data:`FLAGS`).

    >>> describe_flags(FLAGS["floor"][0] | FLAGS["eps_below_floor"][0])
    ['floor', 'eps_below_floor']
    """
    v = int(value)
    return [name for name, (bit, _) in FLAGS.items() if v & bit]


def _window_slope(ys, valid, times, j_end, steps: int, window: float | None):
    """Weighted least-squares slope of ``ys`` (n, P) against ``t`` per point, ending at ``j_end``.

    ``window=None``: uniform weights over ``[0, t_end]`` (``timescale``); else the Hann
    taper over the times in ``[t_end(1 − window), t_end]``, exactly
    :func:`dynsim.numerics.hann_window_weights` with ``steps = t_end``. Masked points get
    weight 0; fewer than 3 weighted points give NaN.
    """
    n, _ = ys.shape
    dtype = ys.dtype
    t = jnp.asarray(times, dtype)[:, None]
    idx = jnp.arange(n)[:, None]
    t_end = jnp.take(jnp.asarray(times, dtype), j_end)[None, :]
    upto = idx <= j_end[None, :]
    if window is None:
        w = upto.astype(dtype)
    else:
        inside = upto & (t >= t_end * (1.0 - window) - 1e-9)
        n_in = jnp.sum(inside, axis=0)
        first = jnp.argmax(inside, axis=0)
        span = t_end[0] - jnp.take(jnp.asarray(times, dtype), first)
        rank = (idx - first[None, :]).astype(dtype)
        h = jnp.sin(jnp.pi * (rank + 0.5) / jnp.maximum(n_in, 1)[None, :].astype(dtype)) ** 2
        w = jnp.where(inside, jnp.where((span > 0)[None, :], h, 1.0), 0.0).astype(dtype)
    w = jnp.where(valid, w, 0.0)
    y = jnp.where(valid, ys, 0.0)
    tau = t / steps
    s0, s1, s2 = jnp.sum(w, 0), jnp.sum(w * tau, 0), jnp.sum(w * tau * tau, 0)
    sy, sty = jnp.sum(w * y, 0), jnp.sum(w * tau * y, 0)
    den = s0 * s2 - s1 * s1
    num = s0 * sty - s1 * sy
    good = (den > 1e-12 * s0 * s0) & (jnp.sum(w > 0, 0) >= 3)
    return jnp.where(good, num / jnp.where(good, den, 1.0), jnp.nan) / steps


def _series_fit(ys, times, steps: int, window: float):
    r"""The unrescaled fits, cut at the floating-point floor.

    Returns ``(rate slope, T slope, floored, j_end, tail envelope, stalled)`` per point.

    ``ys`` (n, P): ``y − y_init`` at the fit checkpoints, NaN where masked. Near a
    minimiser θ* ≠ 0 the iterate stops moving at a few ulps of θ*, so ``y`` stops falling
    at a floor (it does not underflow); fitting through it reads "slow". The floor is found
    from ``y`` alone: the tail (last 1/16 of the checkpoints) is *flat* when its upper
    envelope fell, against the block before it, by less than half of what the rate fitted
    up to the floor's start predicts; the floor then starts at the first checkpoint within
    :data:`_FLOOR_MARGIN` of the tail's envelope. Upper envelopes ignore the downward
    spikes of oscillations (zero crossings). A run whose tail has no usable point (exact
    zeros, the subnormal range) ends at its last usable checkpoint. Floored runs are
    fitted over ``[0, t_end]`` and the late window of it; the others over the whole run,
    exactly as before.
    """
    n = ys.shape[0]
    valid = jnp.isfinite(ys)
    idx = jnp.arange(n)[:, None]
    m = max(2, -(-(n - 1) // 16))
    env = jnp.where(valid, ys, -jnp.inf)
    tail = jnp.max(env[n - m:], axis=0)
    prev = jnp.max(env[max(0, n - 2 * m): n - m], axis=0) if n >= m + 1 else tail
    tail_ok = tail > -jnp.inf
    last_valid = jnp.max(jnp.where(valid, idx, -1), axis=0)
    near = jnp.argmax(valid & (ys <= tail[None, :] + _FLOOR_MARGIN), axis=0)
    j_cand = jnp.where(tail_ok, jnp.maximum(near - 1, 0), jnp.maximum(last_valid, 0))
    s_cand = _window_slope(ys, valid, times, j_cand, steps, window)
    gap = float(np.mean(times[n - m:]) - np.mean(times[max(0, n - 2 * m): n - m])) if n >= m + 1 else 0.0
    expected = jnp.where(jnp.isfinite(s_cand) & (s_cand < 0), -s_cand * gap, 2 * _FLOOR_MARGIN)
    flat = (prev - tail) < 0.5 * expected
    # A floor lies far below the start: at least 2·margin (a factor 100 in distance) and
    # √eps (¼ ln eps: the stagnation floors, ulp(θ*)/(ηλ), lie far lower). A run that barely
    # moved, or that slows down in a nonlinear valley far above the floor, is fitted whole.
    fell = tail < min(-2 * _FLOOR_MARGIN, 0.25 * math.log(float(jnp.finfo(ys.dtype).eps)))
    floored = jnp.where(tail_ok, (j_cand < n - m) & flat & fell, last_valid >= 0)
    j_end = jnp.where(floored, j_cand, n - 1)
    s_rate = _window_slope(ys, valid, times, j_end, steps, window)
    s_T = _window_slope(ys, valid, times, j_end, steps, None)
    # Stopped decreasing although the run as a whole fell: the tail fell by less than 2% of
    # what the whole-run slope predicts (a run slowing down in a valley still falls by more).
    s_all = _window_slope(ys, valid, times, jnp.full_like(j_end, n - 1), steps, None)
    stalled = tail_ok & (s_all < 0) & ((prev - tail) < 0.02 * -s_all * gap)
    return s_rate, s_T, floored, j_end, tail, stalled


# --------------------------------------------------------------------------- the kernel's pieces


class _Kernel(NamedTuple):
    """What every piece of one run needs: static choices and the per-point constants."""

    P: int
    dtype: Any
    renormalise: bool
    zero_min: bool  # θ* = 0 exactly: the tracked x is θ itself
    loss_mode: bool  # no known θ*: fit the loss instead of the state
    use_pack: bool
    settle: bool
    over: bool
    step: Callable  # (x, u, inner, count) -> (x, u, inner), batched
    loss: Callable  # x -> (P,) losses, batched
    sharpness: Callable  # (θ, u, inner, count) -> (P,) top Hessian eigenvalue at the look-ahead point
    minimum: Any  # (P, d), or None in loss mode
    loss_star: Any  # (P,) L*, or None (taken as 0) in loss mode
    dhat: Any
    y_init: Any
    log_gap0: Any  # ln(L(θ₀) − L*) (L* = 0 when unknown): the loss side of `diverged`
    floor: Any
    thr_abs: Any

    @property
    def per_step(self) -> bool:
        return self.settle or self.over

    def pack(self, x, u):
        return _complex(x, u) if self.use_pack else (x, u)

    def unpack(self, z):
        return (jnp.real(z), jnp.imag(z)) if self.use_pack else z

    def dx(self, x):
        """θ − θ* from the tracked coordinate."""
        return x if (self.renormalise or self.zero_min) else x - self.minimum

    def observable(self, x, u):
        """The fitted ``y``: ``ln‖(θ − θ*, u)‖``, or ``½ ln(L − L*)`` without θ* (unrescaled runs)."""
        if self.loss_mode:
            gap = self.loss(x) - (0.0 if self.loss_star is None else self.loss_star)
            return 0.5 * jnp.log(jnp.where(gap > 0, gap, jnp.where(gap == 0, 0.0, jnp.nan)))
        return _log_norm((self.dx(x), u), self.P)

    def threshold2(self, acc):
        """(eps·d0)² in the current scale 2^E (recomputed: no drift)."""
        if not self.renormalise:
            return self.thr_abs * self.thr_abs
        t = self.thr_abs * _pow2(-acc["E"].astype(jnp.int32), self.dtype)
        return t * t


def _run_steps(kern: _Kernel, zs, inner, count, acc, length: int, unroll: int):
    """``length`` steps of the map; only the per-step metrics ride in the carry."""
    P, dtype = kern.P, kern.dtype
    thr2 = kern.threshold2(acc) if kern.settle else None

    def body(c, _):
        zs, inner, count, ps = c
        x, u = kern.unpack(zs)
        x, u, inner = kern.step(x, u, inner, count)
        count = count + 1
        if kern.per_step:
            last, ov = jnp.real(ps), jnp.imag(ps)
            dx = kern.dx(x)
            if kern.settle:
                last = jnp.where(_sum_sq(dx, P) > thr2, count.astype(dtype), last)
            if kern.over:
                ov = jnp.maximum(ov, -_dot(dx, kern.dhat, P))
            ps = _complex(last, ov)
        return (kern.pack(x, u), inner, count, ps), None

    ps = acc.get("ps", jnp.zeros((), dtype))
    c = jax.lax.scan(body, (zs, inner, count, ps), None, length=length, unroll=max(1, min(unroll, length)))[0]
    # Materialise the state once: otherwise XLA fuses the whole interval into each
    # consumer below and recomputes it several times.
    zs, inner, count, ps = jax.lax.optimization_barrier(c)
    if kern.per_step:
        acc = {**acc, "ps": ps}
    return zs, inner, count, acc


def _renorm(kern: _Kernel, zs, inner, acc):
    """Rescale the state by an exact power of two; accumulate the exponent."""
    P, dtype = kern.P, kern.dtype
    acc = dict(acc)
    x, u = kern.unpack(zs)
    a = _max_abs((x, u), P)
    ok = (a > 0) & (a < jnp.inf)
    e = jnp.where(ok, _exponent(jnp.where(ok, a, 1.0)), 0)
    s = _pow2(-e, dtype)
    x, u, inner = _scale(x, s), _scale(u, s), _scale(inner, s)
    if kern.over:  # fold this interval's overshoot (scale 2^E) into a log-space maximum
        last, ov = jnp.real(acc["ps"]), jnp.imag(acc["ps"])
        lov = jnp.log(jnp.where(ov > 0, ov, 1.0)) + acc["E"] * math.log(2.0)
        acc["lov"] = jnp.maximum(acc["lov"], jnp.where(ov > 0, lov, -jnp.inf))
        acc["ps"] = _complex(last, jnp.zeros((P,), dtype))
    acc["E"] = acc["E"] + e.astype(dtype)
    return kern.pack(x, u), inner, acc


def _fit_point(kern: _Kernel, zs, acc, xj):
    """Add the fit checkpoint ``xj`` (one log per point)."""
    acc = dict(acc)
    x, u = kern.unpack(zs)
    if kern.renormalise:  # the state was just renormalised: max-abs in [1, 2) or 0
        hl_prev, E_prev = jnp.real(acc["he"]), jnp.imag(acc["he"])
        n2 = _sum_sq((x, u), kern.P)
        ok = (n2 > 0) & (n2 < jnp.inf)
        hl = 0.5 * jnp.log(jnp.where(ok, n2, 1.0))
        delta = jnp.where(ok, (acc["E"] - E_prev) * math.log(2.0) + hl - hl_prev, 0.0)
        acc["acc"] = acc["acc"] + xj["C"] * delta.astype(xj["C"].dtype)
        acc["he"] = _complex(jnp.where(ok, hl, hl_prev), jnp.where(ok, acc["E"], E_prev))
    else:
        y = kern.observable(x, u)
        ok = (y > kern.floor) & (y < jnp.inf)
        row = jnp.where(ok, y - kern.y_init, jnp.nan).astype(kern.dtype)[None]
        acc["ys"] = jax.lax.dynamic_update_slice_in_dim(acc["ys"], row, xj["j"], axis=0)
        # The tangent's start (_tangent_rate): a displacement over one interval taken well above
        # the floor (near it, rounding noise excites every mode). `cand` is the displacement at
        # the last record low; it is committed to `disp` once y has fallen _DISP_MARGIN below
        # it, so at the end `disp` lies _DISP_MARGIN to twice that above the lowest y reached.
        px, pu = acc["prev"]
        d_new = (x - px, u - pu)
        fall = ok & (y < acc["rec"] - _DISP_MARGIN)
        sel = lambda c, new, old: jax.tree.map(lambda a, b: jnp.where(_bcast(c, a), a, b), new, old)  # noqa: E731
        acc["disp"] = sel(fall, acc["cand"], acc["disp"])
        acc["cand"] = sel(fall, d_new, acc["cand"])
        acc["rec"] = jnp.where(fall, y, acc["rec"])
        acc["prev"] = (x, u)
    return acc


def _fit_schedule(steps: int, cfg: MetricConfig, per_step: bool, dtype):
    """Static per-checkpoint data (shared by all points): ``(stride, xs, times)``.

    ``xs`` holds, per fit checkpoint ``j = 1..n``, its index (where an unrescaled run stores
    its series) and, when renormalising, the least-squares coefficients of the online fits.
    """
    stride = fit_stride(steps, cfg.every, cfg.renormalise, per_step, cfg.fit_every)
    times = checkpoint_times(steps, cfg.every * stride)
    xs = {"j": jnp.arange(1, len(times), dtype=jnp.int32)}
    if cfg.renormalise:
        w_rate = hann_window_weights(times, steps, cfg.window)
        w_T = np.ones_like(times)
        xs["C"] = jnp.asarray((fit_weights(times, w_rate) + 1j * fit_weights(times, w_T)).astype(
            np.complex64 if np.dtype(dtype) == np.float32 else np.complex128))
    return stride, xs, times


def _init_accumulators(kern: _Kernel, x0, u0, inner0, n_times: int):
    P, dtype = kern.P, kern.dtype
    zeros = jnp.zeros((P,), dtype)
    if kern.renormalise:
        a0 = _max_abs((x0, u0), P)
        e0 = jnp.where(a0 > 0, _exponent(jnp.where(a0 > 0, a0, 1.0)), 0)
        s0 = _pow2(-e0, dtype)
        x0, inner0 = _scale(x0, s0), _scale(inner0, s0)
        hl0 = 0.5 * jnp.log(jnp.where(a0 > 0, _sum_sq((x0, u0), P), 1.0))
        E0 = e0.astype(dtype)
        # acc: (rate, T) slope accumulators; he: (ln‖state‖ and exponent at the last fit point)
        acc = {"acc": _complex(zeros, zeros), "he": _complex(hl0, E0), "E": E0}
    else:
        # ys[j]: y − y_init at fit checkpoint j (NaN where masked), cut at the floor at the end
        ok0 = (kern.y_init > kern.floor) & (kern.y_init < jnp.inf)
        ys = jnp.full((n_times, P), jnp.nan, dtype)
        acc = {"ys": ys.at[0].set(jnp.where(ok0, 0.0, jnp.nan).astype(dtype)),
               "rec": jnp.where(ok0, kern.y_init, jnp.inf).astype(dtype),
               "prev": (x0, u0), "disp": (jnp.zeros_like(x0), jnp.zeros_like(u0)),
               "cand": (jnp.zeros_like(x0), jnp.zeros_like(u0))}
    if kern.per_step:
        # (last step above eps, overshoot in the current interval's scale)
        acc["ps"] = _complex(jnp.full((P,), -1.0, dtype), zeros)
        if kern.over and kern.renormalise:
            acc["lov"] = jnp.full((P,), -jnp.inf, dtype)
    return x0, inner0, acc


def _scan_run(kern: _Kernel, cfg: MetricConfig, steps: int, carry, stride: int, xs):
    """All steps: full fit segments in a scan, then the tail."""
    every, unroll = cfg.every, cfg.unroll
    F = every * stride
    n_fit_full = steps // F
    tail = steps - n_fit_full * F

    def segment(carry, lengths, xj):
        """Intervals of the given lengths (renormalising after each), then a fit point."""
        zs, inner, count, acc = carry
        for length in lengths:
            zs, inner, count, acc = _run_steps(kern, zs, inner, count, acc, length, unroll)
            if kern.renormalise:
                zs, inner, acc = _renorm(kern, zs, inner, acc)
        return zs, inner, count, _fit_point(kern, zs, acc, xj)

    def full_segment(carry, xj):
        if stride == 1:
            return segment(carry, [every], xj), None

        def one(c, _):
            zs, inner, count, acc = _run_steps(kern, *c, every, unroll)
            if kern.renormalise:
                zs, inner, acc = _renorm(kern, zs, inner, acc)
            return (zs, inner, count, acc), None

        zs, inner, count, acc = jax.lax.scan(one, carry, None, length=stride)[0]
        return (zs, inner, count, _fit_point(kern, zs, acc, xj)), None

    carry = jax.lax.scan(full_segment, carry, jax.tree.map(lambda v: v[:n_fit_full], xs))[0]
    if tail:
        lengths = [every] * (tail // every) + ([tail % every] if tail % every else [])
        carry = segment(carry, lengths, jax.tree.map(lambda v: v[n_fit_full], xs))
    return carry


def _tangent_rate(kern: _Kernel, zs, inner, count, theta0, disp, tangent_steps: int, window: float):
    r"""Rate of the optimizer's map *linearised at the run's final point*, by power iteration.

    A run that reached its floating-point floor sits within a few ulps of θ*, where the map
    is linear to within rounding: its Jacobian there (the companion matrix of the Hessian's
    eigenvalues, for the momentum maps) sets the asymptotic rate. The floor cuts the loss
    series before a nearly degenerate slow pair of modes separates (float32 resolves ~13
    e-folds of the distance at θ* = (1, 1)); the tangent has no floor. The very same step
    (user optax transformations included) is linearised once at the final point
    (``jax.linearize``) and the tangent is pushed through it, started from a displacement of
    the run taken 2–4 decades above the floor (its slowest modes, already separated by the
    run; ``θ₀ − θ_T`` if there is none), rescaled by exact powers of two every
    ``_UNRESCALED_EVERY`` steps, and ``ln‖(dθ, du)‖`` is fitted with the late-window Hann
    taper, like ``rate``. Integer leaves of the rule's state (step counts) stay as they are.
    """
    P, dtype = kern.P, kern.dtype
    x, u = kern.unpack(zs)
    leaves, treedef = jax.tree.flatten(inner)
    is_f = [jnp.issubdtype(v.dtype, jnp.inexact) for v in leaves]

    fl = [v for v, f in zip(leaves, is_f) if f]
    rest = [v for v, f in zip(leaves, is_f) if not f]

    def step(xf, uf, fl_):
        """The step on (θ, u, the float leaves of the state): the function that is linearised."""
        it, jt = iter(fl_), iter(rest)
        inn = jax.tree.unflatten(treedef, [next(it) if f else next(jt) for f in is_f])
        x2, u2, inn2 = kern.step(xf, uf, inn, count)
        return x2, u2, [v for v, f in zip(jax.tree.leaves(inn2), is_f) if f]
    moved = _max_abs(disp, P) > 0
    dx = jnp.where(_bcast(moved, x), disp[0], theta0 - x)
    du = jnp.where(_bcast(moved, u), disp[1], 0.0)
    tan = (dx, du, [jnp.zeros_like(v) for v in fl])
    every = _UNRESCALED_EVERY
    n_rec = tangent_steps // every
    # Sampled at every step (an under-damped pair aliases into a sparser series): the
    # Hann-weighted slope is accumulated online as Σ C_t (y_t − y_{t−1}) (fit_weights).
    times = np.arange(tangent_steps + 1, dtype=np.float64)
    C = jnp.asarray(fit_weights(times, hann_window_weights(times, tangent_steps, window)).reshape(n_rec, every),
                    dtype)

    def norm_tangent(t, E):
        a = _max_abs(t, P)
        ok = (a > 0) & (a < jnp.inf)
        e = jnp.where(ok, _exponent(jnp.where(ok, a, 1.0)), 0)
        return jax.tree.map(lambda v: _scale(v, _pow2(-e, dtype)), t), E + e.astype(dtype)

    def log_norm(t, E):
        return E * math.log(2.0) + 0.5 * jnp.log(_sum_sq(t, P))

    # The map linearised once at the floor point (jax.linearize): each tangent step then costs
    # only the linear part, not a primal step as well.
    lin = jax.linearize(step, x, u, fl)[1]

    def interval(c, Cj):
        (t, E, y_prev, acc) = c

        def one(cc, Ck):
            t, y_prev, acc = cc
            t = lin(*t)
            y = log_norm(t, E)
            return (t, y, acc + Ck * (y - y_prev)), None

        (t, y_prev, acc) = jax.lax.scan(one, (t, y_prev, acc), Cj)[0]
        t, E = norm_tangent(t, E)
        return (t, E, y_prev, acc), None

    tan, E0 = norm_tangent(tan, jnp.zeros((P,), dtype))
    zeros = jnp.zeros((P,), dtype)
    c = jax.lax.scan(interval, (tan, E0, log_norm(tan, E0), zeros), C)[0]
    slope = c[-1]  # per step: fit_weights is in the units of `times`
    return -slope


def _finalise(kern: _Kernel, metrics, steps: int, cfg: MetricConfig, d0, zs, acc, inner, count, times,
              theta0) -> dict:
    """The requested metrics from the final state and accumulators."""
    P, dtype = kern.P, kern.dtype
    want = set(metrics)
    x, u = kern.unpack(zs)
    out = {}
    state_ok = jnp.isfinite(_max_abs((x, u), P))
    nanf = jnp.asarray(jnp.nan, dtype)
    if kern.renormalise:
        slope_rate, slope_T = jnp.real(acc["acc"]), jnp.imag(acc["acc"])
        zero = state_ok & (_max_abs((x, u), P) == 0)  # a linear map never leaves exact 0
        scale_log = acc["E"] * math.log(2.0)
        log_dist = scale_log + _log_norm(x, P)
        y_final = scale_log + _log_norm((x, u), P)
        rate = jnp.where(zero, jnp.inf, -slope_rate)
        slope_T = jnp.where(zero, -jnp.inf, slope_T)
        floored = jnp.zeros((P,), bool)
        unfit = jnp.zeros((P,), bool)
        plateau = jnp.zeros((P,), bool)
    else:
        s_rate, slope_T, floored, j_end, tail, stalled = _series_fit(acc["ys"], times, steps, cfg.window)
        t_end = jnp.take(jnp.asarray(times, dtype), j_end)
        # In loss mode a floor far above the float floor is a plateau: L → L* ≠ 0 (no min_loss
        # given), a saddle or a flat region; y is ½ ln(gap/gap₀) there, so the threshold is a
        # gap ratio of √eps, far above any stagnation floor (ulps of θ*, squared).
        plateau = (stalled & (tail > 0.25 * math.log(float(jnp.finfo(dtype).eps)))
                   if kern.loss_mode else jnp.zeros((P,), bool))
        rate = -s_rate
        if cfg.tangent_steps and want & {"rate", "rho"}:
            use = floored & ~plateau & state_ok
            # a real branch (lax.map over blocks): blocks with no floored point skip it
            r_tan = jax.lax.cond(jnp.any(use),
                                 lambda: _tangent_rate(kern, zs, inner, count, theta0, acc["disp"],
                                                       cfg.tangent_steps, cfg.window),
                                 lambda: jnp.full((P,), jnp.nan, dtype))
            rate = jnp.where(use, r_tan, rate)
        unfit = ~jnp.isfinite(rate) | plateau
        rate = jnp.where(unfit, jnp.nan, rate)
        slope_T = jnp.where(plateau, jnp.nan, slope_T)
        y_final = kern.observable(x, u)
        if not kern.loss_mode:
            log_dist = _log_norm(x - kern.minimum, P)
    final_loss = kern.loss(kern.minimum + x if (kern.renormalise and not kern.zero_min) else x)
    bad = ~state_ok | ~jnp.isfinite(final_loss)  # a finite state can still give a non-finite loss
    T = jnp.where(slope_T < 0, -1.0 / jnp.where(slope_T < 0, slope_T, -1.0),
                  jnp.where(jnp.isnan(slope_T), jnp.nan, jnp.inf))
    # Divergence: the state (θ* known) or the loss gap L − L* grew by divergence_factor.
    # The loss gap of a renormalised run is compared in log space (it may lie below the range).
    excess = final_loss - kern.loss_star if kern.loss_star is not None else final_loss
    lx = jnp.log(jnp.where(excess > 0, excess, 1.0)) + (2 * scale_log if kern.renormalise else 0.0)
    grew = (excess > 0) & (lx - kern.log_gap0 > math.log(cfg.divergence_factor))
    diverged = bad | grew | (y_final - kern.y_init > math.log(cfg.divergence_factor))
    settled = None
    if kern.settle:
        last = jnp.real(acc["ps"])
        settled = (last < steps) & ~bad
    if "rate" in want:
        out["rate"] = jnp.where(bad, nanf, rate)
    if "rho" in want:
        out["rho"] = jnp.where(bad, nanf, jnp.exp(-rate))
    if "timescale" in want:
        out["timescale"] = jnp.where(bad, nanf, T)
    if "floor_step" in want:
        out["floor_step"] = jnp.where(floored & ~bad, t_end, nanf) if not kern.renormalise else jnp.full((P,), nanf)
    if "flags" in want:
        bit = {k: v[0] for k, v in FLAGS.items()}
        f = (jnp.where(floored & ~bad, bit["floor"], 0) | jnp.where(unfit & ~plateau & ~bad, bit["short"], 0)
             | jnp.where(plateau & ~bad, bit["plateau"], 0) | jnp.where(bad, bit["nonfinite"], 0))
        if settled is not None:
            f = f | jnp.where(floored & ~settled & ~bad, bit["eps_below_floor"], 0)
        out["flags"] = f.astype(dtype)
    if kern.settle:
        out["steps_to_eps"] = jnp.where(settled, last + 1, nanf)
    if kern.over:
        ld0 = jnp.log(jnp.where(d0 > 0, d0, 1.0))
        ov_true = jnp.exp(acc["lov"] - ld0) if kern.renormalise else jnp.imag(acc["ps"]) / jnp.exp(ld0)
        out["overshoot"] = jnp.where(bad, nanf, ov_true)
    if "log_distance" in want:
        out["log_distance"] = jnp.where(bad, nanf, log_dist)
    if "final_distance" in want:
        out["final_distance"] = jnp.where(bad, nanf, jnp.exp(log_dist))
    if "final_loss" in want:
        fl = final_loss
        if kern.renormalise:  # the excess loss in log space: it may lie far below the float range
            fl = kern.loss_star + jnp.where(excess > 0, jnp.exp(lx), 0.0)
        out["final_loss"] = jnp.where(bad, nanf, fl)
    if "sharpness" in want:
        # The curvature the stability threshold 2(1+μ)/(η(1+2σ)) bounds (dynsim.analysis) is the
        # Hessian's where the gradient is taken: the look-ahead point θ + σu. A renormalised run
        # is a linear map on a quadratic, whose Hessian is the same everywhere: take it at θ*.
        if kern.renormalise:
            theta, uu = kern.minimum, jnp.zeros_like(kern.minimum)
        else:
            theta, uu = x, u
        out["sharpness"] = jnp.where(bad, nanf, kern.sharpness(theta, uu, inner, count))
    if "diverged" in want:
        out["diverged"] = diverged
    return {m: out[m] for m in metrics}


# --------------------------------------------------------------------------- the kernel


def run_metrics(
    rule_factory: Callable[..., Rule],
    hyper: Mapping[str, jax.Array],
    landscape_factory: Callable[..., Landscape],
    land_params: Mapping[str, jax.Array],
    theta0: jax.Array,
    steps: int,
    *,
    metrics: Sequence[str] = DEFAULT_METRICS,
    static_hyper: Mapping[str, Any] | None = None,
    static_land: Mapping[str, Any] | None = None,
    **options,
) -> dict[str, jax.Array]:
    r"""Run ``steps`` steps for a batch of ``P`` points and return their metrics.

    Args:
      rule_factory: a :mod:`dynsim.optim` factory, or any factory of an optax
        transformation, called per point inside ``vmap`` (hyperparameters are tracers: one
        program serves every point).
      hyper: ``name -> (P,)`` hyperparameter arrays.
      landscape_factory: a factory returning a :class:`~dynsim.landscapes.Landscape`, called
        per point. Without a known ``minimum`` the fits use the loss (module docstring).
      land_params: ``name -> (P,)`` landscape parameters (may be empty).
      theta0: ``(P, d)`` initial points.
      steps: number of steps (static: the scan length).
      metrics: names from :data:`METRICS`; only these are computed.
      static_hyper, static_land: non-numeric fixed arguments (e.g. ``lookahead=True``).
      **options: the fields of :class:`MetricConfig` (``every``, ``window``, ``eps``,
        ``divergence_factor``, ``renormalise``, ``floor_eps``, ``unroll``, ``pack``,
        ``fit_every``), with its defaults. With renormalisation the state may shrink by at
        most the float range within one interval: points with ``ρ^every`` below ~1e-38
        (float32) reach exactly 0 and report ``rate = inf``.

    Returns:
      ``name -> (P,)`` arrays in ``metrics`` order (``diverged`` is bool).
    """
    metrics = tuple(metrics)
    for m in metrics:
        if m not in METRICS:
            raise ValueError(f"metrics: unknown metric {m!r}; choose from {', '.join(METRICS)}")
    steps = int(steps)
    theta0 = jnp.asarray(theta0)
    dtype = theta0.dtype
    if not jnp.issubdtype(dtype, jnp.floating):
        raise ValueError(f"theta0 must be a float array, got {dtype}")
    cfg = MetricConfig.from_options(options).resolved(
        steps, dtype, linear=can_renormalise(rule_factory, landscape_factory), default_unroll=8)
    if "steps_to_eps" in metrics and dtype == jnp.float32 and steps >= 2**24:
        raise ValueError("steps_to_eps in float32 needs steps < 2**24 (step counts are carried as floats)")
    static_hyper = dict(static_hyper or {})
    static_land = dict(static_land or {})
    P = theta0.shape[0]
    hp_b, lp_b = dict(hyper), dict(land_params)

    def build(hp, lp):
        from dynsim.run import as_rule

        return as_rule(rule_factory(**hp, **static_hyper)), landscape_factory(**lp, **static_land)

    probe = jax.eval_shape(lambda: build({k: v[0] for k, v in hp_b.items()},
                                         {k: v[0] for k, v in lp_b.items()})[1].minimum)
    loss_mode = probe is None
    if loss_mode:
        if cfg.renormalise:
            raise ValueError("renormalise=True needs a landscape with a known minimum")
        lacking = [m for m in metrics if m in DISTANCE_METRICS]
        if lacking:
            raise ValueError(f"metrics {lacking} need the landscape's minimum, which is unknown; "
                             f"available: {', '.join(available_metrics(False))}")
    renormalise = cfg.renormalise

    def point_init(hp, lp, th0):
        rule, land = build(hp, lp)
        inner = rule.map_init(th0).inner
        if loss_mode:
            star = land.min_loss
            return None, (None if star is None else jnp.asarray(star, dtype)), inner
        minimum = jnp.broadcast_to(jnp.asarray(land.minimum, dtype), th0.shape)
        return minimum, land.loss(minimum), inner

    minimum, loss_star, inner0 = jax.vmap(point_init)(hp_b, lp_b, theta0)
    # The quadratic family has its minimum at 0: x = θ exactly, no add/subtract per step.
    zero_min = (landscape_factory in (_landscapes.quadratic, _landscapes.quadratic_nd)
                and not lp_b.get("_shift"))

    def point_step(hp, lp, mn, x, u, inner, count):
        rule, land = build(hp, lp)
        grad = jax.grad(land.loss)
        if renormalise and not zero_min:  # x = θ − θ*; the map is evaluated at θ* + x
            th_next, st = rule.map_step(grad, mn + x, LookaheadState(u, inner, count))
            return th_next - mn, st.velocity, st.inner
        th_next, st = rule.map_step(grad, x, LookaheadState(u, inner, count))
        return th_next, st.velocity, st.inner

    vstep = jax.vmap(point_step, in_axes=(0, 0, 0 if minimum is not None else None, 0, 0, 0, None))

    def point_sharpness(hp, lp, th, u, inner, count):
        rule, land = build(hp, lp)
        phi = rule.lookahead_point(th, LookaheadState(u, inner, count))
        h = jax.hessian(land.loss)(phi)  # θ is a small vector here: the dense Hessian is exact and cheap
        return jnp.linalg.eigvalsh(h.reshape(phi.size, phi.size))[-1].astype(dtype)

    vsharp = jax.vmap(point_sharpness, in_axes=(0, 0, 0, 0, 0, None))
    # in the run's dtype: a user's loss may close over constants of another precision
    vloss = jax.vmap(lambda hp, lp, th: jnp.asarray(build(hp, lp)[1].loss(th)).astype(dtype))
    has_inner = bool(jax.tree.leaves(inner0))

    # ---- initial state
    u0 = jnp.zeros_like(theta0)
    # Below a few ulps of θ* (or of L*) differences are rounding noise; where the run really
    # stalls (ulp(θ*)/(ηλ) and more) is found from the series itself (_series_fit).
    fe = cfg.floor_eps if cfg.floor_eps is not None else float(4 * jnp.finfo(dtype).eps)
    # Below ~1e3·tiny the state (or loss) is subnormal and its log loses precision: such
    # checkpoints are masked like those below the precision floor (unrescaled runs only).
    tiny_floor = math.log(float(jnp.finfo(dtype).tiny) * 1e3)
    star = jnp.zeros((P,), dtype) if loss_star is None else loss_star
    gap0 = vloss(hp_b, lp_b, theta0) - star
    log_gap0 = jnp.log(jnp.where(gap0 > 0, gap0, jnp.nan))
    if loss_mode:
        d0, dhat, x0 = None, None, theta0
        y_init = 0.5 * jnp.log(jnp.where(gap0 > 0, gap0, jnp.nan))
        floor = jnp.maximum(0.5 * jnp.log(fe * jnp.abs(star)), 0.5 * tiny_floor)  # L* = 0: the range alone
    else:
        d0vec = theta0 - minimum
        d0 = jnp.sqrt(_sum_sq(d0vec, P))
        dhat = d0vec / _bcast(jnp.where(d0 > 0, d0, 1.0), d0vec)
        x0 = d0vec if renormalise else theta0
        y_init = _log_norm((d0vec, u0), P)
        floor = jnp.maximum(jnp.log(fe * jnp.sqrt(_sum_sq(minimum, P))), tiny_floor)  # θ* = 0: the range alone
    kern = _Kernel(
        P=P, dtype=dtype, renormalise=renormalise, zero_min=zero_min, loss_mode=loss_mode,
        use_pack=bool(cfg.pack) and not has_inner, settle="steps_to_eps" in metrics,
        over="overshoot" in metrics,
        step=lambda x, u, inner, count: vstep(hp_b, lp_b, minimum, x, u, inner, count),
        loss=lambda x: vloss(hp_b, lp_b, x),
        sharpness=lambda th, u, inner, count: vsharp(hp_b, lp_b, th, u, inner, count), minimum=minimum, loss_star=loss_star, dhat=dhat,
        y_init=y_init, log_gap0=log_gap0, floor=floor, thr_abs=None if d0 is None else cfg.eps * d0,
    )
    stride, xs, times = _fit_schedule(steps, cfg, kern.per_step, dtype)
    x0, inner0, acc = _init_accumulators(kern, x0, u0, inner0, len(times))
    carry = (kern.pack(x0, u0), inner0, jnp.zeros((), jnp.int32), acc)
    zs, inner, count, acc = _scan_run(kern, cfg, steps, carry, stride, xs)
    return _finalise(kern, metrics, steps, cfg, d0, zs, acc, inner, count, times, theta0)
