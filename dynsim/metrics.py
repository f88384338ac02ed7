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
    NaN/inf met, or the state norm grew by more than ``divergence_factor``. A divergent
    point only affects its own entries: every operation is per point.

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

For nonlinear rules or landscapes (RMSProp, Adam, Rosenbrock, eq. (15)) rescaling would
change the dynamics, so the state is *not* rescaled: ``ln‖x‖`` is tracked directly (with
a max-abs prescale so squaring never underflows), and checkpoints below the precision
floor ``floor_eps · ‖θ^*‖`` (θ − θ* cannot be resolved below it), below ``1e3·tiny`` (the
subnormal range, where logs lose precision: long unrescaled runs reach it) or non-finite
are masked out of the fits. If no late-window checkpoint survives, ``rate``
falls back to the whole-run fit.

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
0). The half makes the rate comparable: near a non-degenerate minimum
:math:`L − L^* ≈ \tfrac12 xᵀHx ∝ \lVert x\rVert^2`. ``diverged`` compares the same ``y``.

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
]

METRICS: dict[str, str] = {
    "rate": "asymptotic decay rate per step, -d ln|x|/dt (Hann-tapered fit over the late window)",
    "rho": "contraction per step exp(-rate); estimates the spectral radius on quadratics",
    "timescale": "T of the exp(-t/T) envelope: -1/slope of ln|x| fitted over the whole run",
    "steps_to_eps": "first step after which |theta-theta*| <= eps*|theta0-theta*| for good (NaN: never)",
    "overshoot": "largest excursion past the minimum along theta0-theta*, as a fraction of |theta0-theta*|",
    "final_loss": "loss at the last step",
    "final_distance": "|theta-theta*| at the last step",
    "log_distance": "natural log of |theta-theta*| at the last step (never underflows)",
    "diverged": "NaN/inf met, or the state grew by more than divergence_factor",
    "sharpness": "largest Hessian eigenvalue of the loss at the final look-ahead point theta + sigma*u (exact)",
}
#: Computed only on request (not in the default set): a dense d×d Hessian per point at the end.
OPTIONAL_METRICS = ("sharpness",)
DEFAULT_METRICS = tuple(m for m in METRICS if m not in OPTIONAL_METRICS)
PER_STEP_METRICS = ("steps_to_eps", "overshoot")
#: Metrics that need the minimiser θ*.
DISTANCE_METRICS = ("steps_to_eps", "overshoot", "final_distance", "log_distance")
_MIN_FIT_POINTS = 32  # fit checkpoints per run, at least (when renormalising)

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
        64 in float64 (float64 has the range for longer intervals).
      window: late-window fraction of the run used for ``rate``, in (0, 1].
      eps: relative distance for ``steps_to_eps``.
      divergence_factor: growth of the state norm that counts as divergence.
      renormalise: rescale the state by powers of two; ``"auto"``: exactly when the map is
        linear (:func:`can_renormalise`).
      floor_eps: relative precision floor of the unrescaled fits (``None``: ``1e3·eps_mach``).
      unroll: unroll factor of the per-step scan; ``None``: the platform's default
        (:func:`dynsim.engine.default_unroll`).
      pack: carry ``(θ, u)`` as one complex array when the rule has no inner state.
      fit_every: steps between fit points (:func:`fit_stride`).
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
        every = self.every if self.every is not None else (64 if jnp.dtype(dtype) == jnp.float64 else 32)
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
        return self._replace(every=every, unroll=unroll, renormalise=renorm, window=float(self.window),
                             eps=float(self.eps), divergence_factor=float(self.divergence_factor),
                             pack=bool(self.pack),
                             fit_every=None if self.fit_every is None else int(self.fit_every))


# --------------------------------------------------------------------------- fit schedule


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
    if fit_every is None:
        if per_step or not renormalise:
            return 1
        fit_every = max(every, 64)
    stride = max(1, int(fit_every) // every)
    if per_step or not renormalise:
        stride = 1  # per-step accumulators and the unrescaled fits are folded at every interval
    return max(1, min(stride, (steps // every) // _MIN_FIT_POINTS))


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


class _Fits(NamedTuple):
    """Running sums of a masked weighted least-squares fit of y against τ = t/steps."""

    s0: jax.Array
    s1: jax.Array
    s2: jax.Array
    sy: jax.Array
    sty: jax.Array

    @classmethod
    def zeros(cls, n, dtype):
        z = jnp.zeros((n,), dtype)
        return cls(z, z, z, z, z)

    def add(self, w, tau, y, ok):
        w = jnp.where(ok, w, 0.0)
        y = jnp.where(ok, y, 0.0)
        return _Fits(self.s0 + w, self.s1 + w * tau, self.s2 + w * tau * tau,
                     self.sy + w * y, self.sty + w * tau * y)

    def slope(self, steps: int):
        den = self.s0 * self.s2 - self.s1 * self.s1
        num = self.s0 * self.sty - self.s1 * self.sy
        good = den > 1e-12 * self.s0 * self.s0
        return jnp.where(good, num / jnp.where(good, den, 1.0), jnp.nan) / steps


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
        acc["fr"] = acc["fr"].add(xj["wr"], xj["tau"], y - kern.y_init, ok)
        acc["fT"] = acc["fT"].add(xj["wT"], xj["tau"], y - kern.y_init, ok)
    return acc


def _fit_schedule(steps: int, cfg: MetricConfig, per_step: bool, dtype):
    """Static per-checkpoint data: LS coefficients and weights (shared by all points)."""
    stride = fit_stride(steps, cfg.every, cfg.renormalise, per_step, cfg.fit_every)
    times = checkpoint_times(steps, cfg.every * stride)
    w_rate = hann_window_weights(times, steps, cfg.window)
    w_T = np.ones_like(times)
    npd = np.dtype(dtype)
    xs = {  # per fit checkpoint j = 1..n (index j-1)
        "C": jnp.asarray((fit_weights(times, w_rate) + 1j * fit_weights(times, w_T)).astype(
            np.complex64 if npd == np.float32 else np.complex128)),
        "wr": jnp.asarray(w_rate[1:].astype(npd)),
        "wT": jnp.asarray(w_T[1:].astype(npd)),
        "tau": jnp.asarray((times[1:] / steps).astype(npd)),
    }
    return stride, xs, w_rate, w_T


def _init_accumulators(kern: _Kernel, x0, u0, inner0, w_rate, w_T):
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
        ok0 = kern.y_init > kern.floor
        acc = {
            "fr": _Fits.zeros(P, dtype).add(jnp.asarray(w_rate[0], dtype), 0.0, zeros, ok0),
            "fT": _Fits.zeros(P, dtype).add(jnp.asarray(w_T[0], dtype), 0.0, zeros, ok0),
        }
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
            zs, inner, acc = _renorm(kern, zs, inner, acc)
            return (zs, inner, count, acc), None

        zs, inner, count, acc = jax.lax.scan(one, carry, None, length=stride)[0]
        return (zs, inner, count, _fit_point(kern, zs, acc, xj)), None

    carry = jax.lax.scan(full_segment, carry, jax.tree.map(lambda v: v[:n_fit_full], xs))[0]
    if tail:
        lengths = [every] * (tail // every) + ([tail % every] if tail % every else [])
        carry = segment(carry, lengths, jax.tree.map(lambda v: v[n_fit_full], xs))
    return carry


def _finalise(kern: _Kernel, metrics, steps: int, cfg: MetricConfig, d0, zs, acc, inner, count) -> dict:
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
    else:
        s_rate, slope_T = acc["fr"].slope(steps), acc["fT"].slope(steps)
        # Too few late checkpoints above the precision floor: use the whole-run fit.
        rate = -jnp.where(jnp.isfinite(s_rate), s_rate, slope_T)
        y_final = kern.observable(x, u)
        if not kern.loss_mode:
            log_dist = _log_norm(x - kern.minimum, P)
    final_loss = None
    if kern.loss_mode or "final_loss" in want:
        final_loss = kern.loss(kern.minimum + x if (kern.renormalise and not kern.zero_min) else x)
    bad = ~state_ok
    if kern.loss_mode:  # a finite state can still give a non-finite loss
        bad = bad | ~jnp.isfinite(final_loss)
    T = jnp.where(slope_T < 0, -1.0 / jnp.where(slope_T < 0, slope_T, -1.0), jnp.inf)
    diverged = bad | (y_final - kern.y_init > math.log(cfg.divergence_factor))
    if "rate" in want:
        out["rate"] = jnp.where(bad, nanf, rate)
    if "rho" in want:
        out["rho"] = jnp.where(bad, nanf, jnp.exp(-rate))
    if "timescale" in want:
        out["timescale"] = jnp.where(bad, nanf, T)
    if kern.settle:
        last = jnp.real(acc["ps"])
        done = (last < steps) & ~bad
        out["steps_to_eps"] = jnp.where(done, last + 1, nanf)
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
            excess = final_loss - kern.loss_star
            lx = jnp.log(jnp.where(excess > 0, excess, 1.0)) + 2 * scale_log
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
    fe = cfg.floor_eps if cfg.floor_eps is not None else float(1e3 * jnp.finfo(dtype).eps)
    # Below ~1e3·tiny the state (or loss) is subnormal and its log loses precision: such
    # checkpoints are masked like those below the precision floor (unrescaled runs only).
    tiny_floor = math.log(float(jnp.finfo(dtype).tiny) * 1e3)
    if loss_mode:
        d0, dhat, x0 = None, None, theta0
        star = jnp.zeros((P,), dtype) if loss_star is None else loss_star
        gap0 = vloss(hp_b, lp_b, theta0) - star
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
        y_init=y_init, floor=floor, thr_abs=None if d0 is None else cfg.eps * d0,
    )
    stride, xs, w_rate, w_T = _fit_schedule(steps, cfg, kern.per_step, dtype)
    x0, inner0, acc = _init_accumulators(kern, x0, u0, inner0, w_rate, w_T)
    carry = (kern.pack(x0, u0), inner0, jnp.zeros((), jnp.int32), acc)
    zs, inner, count, acc = _scan_run(kern, cfg, steps, carry, stride, xs)
    return _finalise(kern, metrics, steps, cfg, d0, zs, acc, inner, count)
