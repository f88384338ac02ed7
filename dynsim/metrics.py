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
floor ``floor_eps · ‖θ^*‖`` (θ − θ* cannot be resolved below it; none when θ* = 0) or
non-finite are masked out of the fits. If no late-window checkpoint survives, ``rate``
falls back to the whole-run fit.

**Estimating the asymptotic rate near critical damping.** At critical damping the slow
mode is ``t·λ^t`` (log-slope ``ln λ + 1/t``) and just below it the oscillation period
diverges, so a finite-window estimate is biased in a σ-dependent way. The taper
suppresses the leakage of the oscillating part of ``ln‖x_t‖`` into the slope (ordinary
least squares leaks ``O(P/W²)`` for period ``P``; a smooth taper much less), and the
bias at the kink shrinks like ``1/(kη W²)`` in σ. :func:`dynsim.sweep.locate` therefore
refines σ* with long runs (``2^18`` steps, fitted over the whole run, in float64 by
default): this reproduces :func:`dynsim.analysis.critical_sigma` to better than ``1e-4``
relative for kη ∈ [0.003, 0.6], g ∈ {0.5, 0.9, 0.99} (see the tests). Away from the
kink (|σ − σ*| > 5%) the 4096-step estimate of ρ is within 1e-5 of the exact value for
90% of random stable points and within ~2e-4 at the 99th percentile (slow under-damped
modes, aliased by the fit sampling).

Per-step work is only the map itself plus, when requested, two compare/select pairs for
``steps_to_eps`` and ``overshoot``; everything else happens at checkpoints.

**Performance on XLA:CPU** (2-core dev box, float32, super-acceleration on the quadratic,
σ* metrics; see ``results/bench/README.md``): XLA:CPU emits one loop fusion per carried
array and recomputes shared work in each, so the state ``(θ − θ*, u)`` is carried as *one
complex array* (``pack``; ~7× faster than two arrays); an ``optimization_barrier`` after
each interval stops XLA from fusing the whole interval into every checkpoint output;
renormalisation is bit operations every ``every=32`` steps and the log-fit every 64 (with a
fit every 32 steps throughput drops ~25%). The best ``unroll`` depends on the block size
(:func:`dynsim.sweep.default_unroll`: 4 for the sweep's 2^18-point CPU blocks). Per-step
metrics add a second carried array (≈ 3× the cost). At ~6e9 point-steps per CPU-second the
loop is bound by floating-point throughput: each step is 6 dependent operations.

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

from dynsim.landscapes import Landscape
from dynsim.optim import LookaheadState, Rule

__all__ = [
    "METRICS",
    "DEFAULT_METRICS",
    "PER_STEP_METRICS",
    "LINEAR_RULES",
    "LINEAR_LANDSCAPES",
    "MetricConfig",
    "fit_weights",
    "fit_stride",
    "fit_times",
    "checkpoint_times",
    "run_metrics",
    "can_renormalise",
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
}
DEFAULT_METRICS = tuple(METRICS)
PER_STEP_METRICS = ("steps_to_eps", "overshoot")
_MIN_FIT_POINTS = 32  # fit checkpoints per run, at least (when renormalising)

# Rules whose map is linear and homogeneous in (θ − θ*, u, inner state) on a quadratic.
LINEAR_RULES = frozenset(
    {"gd", "heavy_ball", "nesterov", "super_accelerated", "ema_momentum", "nesterov_time_varying"}
)
LINEAR_LANDSCAPES = frozenset({"quadratic", "quadratic_nd", "linear_regression"})


def can_renormalise(rule_name: str, landscape_name: str) -> bool:
    """Whether the state may be rescaled: a linear, homogeneous map (see module docstring)."""
    return rule_name in LINEAR_RULES and landscape_name in LINEAR_LANDSCAPES


class MetricConfig(NamedTuple):
    """Static settings of :func:`run_metrics` (hashable; part of the compile key).

    Attributes:
      steps: number of steps.
      metrics: names from :data:`METRICS`.
      every: checkpoint (and renormalisation) interval in steps.
      window: late-window fraction of the run used for ``rate``, in (0, 1].
      eps: relative distance for ``steps_to_eps``.
      divergence_factor: growth of the state norm that counts as divergence.
      renormalise: rescale the state by powers of two (linear maps only).
      floor_eps: relative precision floor for the unrenormalised fits.
      unroll: unroll factor of the inner per-step scan.
      pack: carry (θ, u) as one complex array (fewer XLA fusions per step on CPU).
    """

    steps: int
    metrics: tuple[str, ...] = DEFAULT_METRICS
    every: int = 16
    window: float = 0.5
    eps: float = 1e-6
    divergence_factor: float = 1e6
    renormalise: bool = False
    floor_eps: float | None = None
    unroll: int = 8
    pack: bool = True


# --------------------------------------------------------------------------- fit weights


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


def fit_weights(times: np.ndarray, weights: np.ndarray) -> np.ndarray:
    r"""Coefficients ``C_j`` with ``slope = Σ_{j≥1} C_j (y_j − y_{j−1})`` (weighted least squares).

    The weighted LS slope is ``Σ c_j y_j`` with ``c_j = w_j (t_j − \bar t)/Σ w (t − \bar t)²``
    and ``Σ c_j = 0``; summation by parts gives ``C_j = Σ_{i≥j} c_i``.

    >>> t = np.arange(5.0); C = fit_weights(t, np.ones(5))
    >>> float(np.sum(C * np.diff(3 * t)))   # slope of y = 3t
    3.0
    """
    t = np.asarray(times, dtype=np.float64)
    w = np.asarray(weights, dtype=np.float64)
    tbar = np.sum(w * t) / np.sum(w)
    c = w * (t - tbar) / np.sum(w * (t - tbar) ** 2)
    return np.cumsum(c[::-1])[::-1][1:]


def _window_weights(times: np.ndarray, steps: int, window: float) -> np.ndarray:
    """Hann taper over the checkpoints in the last ``window`` fraction of the run."""
    start = steps * (1.0 - window)
    inside = times >= start - 1e-9
    ti = times[inside]
    span = ti[-1] - ti[0]
    # Half-sample offsets keep the end points' weights positive.
    h = np.zeros_like(times)
    n = len(ti)
    h[inside] = np.sin(np.pi * (np.arange(n) + 0.5) / n) ** 2 if span > 0 else 1.0
    return h


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


# --------------------------------------------------------------------------- the kernel


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


def _complex(a, b):
    return jax.lax.complex(a, b)


def run_metrics(
    rule_factory: Callable[..., Rule],
    hyper: Mapping[str, jax.Array],
    landscape_factory: Callable[..., Landscape],
    land_params: Mapping[str, jax.Array],
    theta0: jax.Array,
    steps: int,
    *,
    metrics: Sequence[str] = DEFAULT_METRICS,
    every: int = 32,
    window: float = 0.5,
    eps: float = 1e-6,
    divergence_factor: float = 1e6,
    renormalise: bool | str = "auto",
    floor_eps: float | None = None,
    unroll: int = 8,
    pack: bool = True,
    fit_every: int | None = None,
    static_hyper: Mapping[str, Any] | None = None,
    static_land: Mapping[str, Any] | None = None,
) -> dict[str, jax.Array]:
    r"""Run ``steps`` steps for a batch of ``P`` points and return their metrics.

    Args:
      rule_factory: a :mod:`dynsim.optim` factory, called per point inside ``vmap``
        (hyperparameters are tracers: one program serves every point).
      hyper: ``name -> (P,)`` hyperparameter arrays.
      landscape_factory: a :mod:`dynsim.landscapes` factory, called per point.
      land_params: ``name -> (P,)`` landscape parameters (may be empty).
      theta0: ``(P, *shape)`` initial points.
      steps: number of steps (static: the scan length).
      metrics: names from :data:`METRICS`; only these are computed.
      every: checkpoint/renormalisation interval. With renormalisation the state may
        shrink by at most the float range within one interval: points with
        ``ρ^every`` below ~1e-38 (float32) reach exactly 0 and report ``rate = inf``.
      window: late fraction of the run used for ``rate``.
      eps: relative distance for ``steps_to_eps``.
      divergence_factor: final/initial state-norm ratio beyond which a point diverged.
      renormalise: rescale the state by powers of two (linear homogeneous maps only);
        ``"auto"`` does so exactly when :func:`can_renormalise` says the map is linear;
        otherwise ``ln‖x‖`` is tracked unrescaled.
      floor_eps: relative precision floor of the unrescaled fits (default ``1e3·eps_mach``).
      unroll: unroll factor of the per-step scan inside a checkpoint interval.
      pack: carry ``(θ, u)`` as one complex array when the rule has no inner state
        (XLA:CPU emits one fusion per carried array; packing halves the per-step work).
      fit_every: steps between fit points (see :func:`fit_stride`; default 64 when
        renormalising without per-step metrics, else ``every``).
      static_hyper, static_land: non-numeric fixed arguments (e.g. ``lookahead=True``).

    Returns:
      ``name -> (P,)`` arrays in ``metrics`` order (``diverged`` is bool).
    """
    metrics = tuple(metrics)
    for m in metrics:
        if m not in METRICS:
            raise ValueError(f"metrics: unknown metric {m!r}; choose from {', '.join(METRICS)}")
    steps, every, unroll = int(steps), int(every), int(unroll)
    if every < 1:
        raise ValueError(f"every={every} must be >= 1")
    if steps < 3 * every:
        raise ValueError(f"steps={steps} must be at least 3*every={3 * every} (>= 3 checkpoints)")
    if not 0 < window <= 1:
        raise ValueError(f"window={window} must be in (0, 1]")
    if renormalise == "auto":
        renormalise = can_renormalise(getattr(rule_factory, "__name__", ""),
                                      getattr(landscape_factory, "__name__", ""))
    renormalise = bool(renormalise)
    static_hyper = dict(static_hyper or {})
    static_land = dict(static_land or {})
    theta0 = jnp.asarray(theta0)
    dtype = theta0.dtype
    if not jnp.issubdtype(dtype, jnp.floating):
        raise ValueError(f"theta0 must be a float array, got {dtype}")
    if "steps_to_eps" in metrics and dtype == jnp.float32 and steps >= 2**24:
        raise ValueError("steps_to_eps in float32 needs steps < 2**24 (step counts are carried as floats)")
    P = theta0.shape[0]
    want = set(metrics)
    settle = "steps_to_eps" in want
    over = "overshoot" in want
    per_step = settle or over
    hp_b, lp_b = dict(hyper), dict(land_params)
    ln2 = math.log(2.0)

    def build(hp, lp):
        return rule_factory(**hp, **static_hyper), landscape_factory(**lp, **static_land)

    def point_init(hp, lp, th0):
        rule, land = build(hp, lp)
        minimum = jnp.broadcast_to(jnp.asarray(land.minimum, dtype), th0.shape)
        return minimum, land.loss(minimum), rule.map_init(th0).inner

    minimum, loss_star, inner0 = jax.vmap(point_init)(hp_b, lp_b, theta0)
    # The quadratic family has its minimum at 0: x = θ exactly, no add/subtract per step.
    zero_min = landscape_factory.__name__ in ("quadratic", "quadratic_nd") and not lp_b.get("_shift")

    def point_step(hp, lp, mn, x, u, inner, count):
        rule, land = build(hp, lp)
        grad = jax.grad(land.loss)
        if renormalise and not zero_min:  # x = θ − θ*; the map is evaluated at θ* + x
            th_next, st = rule.map_step(grad, mn + x, LookaheadState(u, inner, count))
            return th_next - mn, st.velocity, st.inner
        th_next, st = rule.map_step(grad, x, LookaheadState(u, inner, count))
        return th_next, st.velocity, st.inner

    vstep = jax.vmap(point_step, in_axes=(0, 0, 0, 0, 0, 0, None))

    def step(x, u, inner, count):
        return vstep(hp_b, lp_b, minimum, x, u, inner, count)

    has_inner = bool(jax.tree.leaves(inner0))
    use_pack = bool(pack) and not has_inner

    def pack_state(x, u):
        return _complex(x, u) if use_pack else (x, u)

    def unpack_state(z):
        return (jnp.real(z), jnp.imag(z)) if use_pack else z

    def state_dx(x):  # θ − θ* from the tracked coordinate
        return x if (renormalise or zero_min) else x - minimum

    # ---- initial state
    d0vec = theta0 - minimum
    d0 = jnp.sqrt(_sum_sq(d0vec, P))
    dhat = d0vec / _bcast(jnp.where(d0 > 0, d0, 1.0), d0vec)
    x0 = d0vec if renormalise else theta0
    u0 = jnp.zeros_like(theta0)
    y_init = _log_norm((d0vec, u0), P)
    fe = floor_eps if floor_eps is not None else float(1e3 * jnp.finfo(dtype).eps)
    floor = jnp.log(fe * jnp.sqrt(_sum_sq(minimum, P)))  # -inf when θ* = 0

    # ---- schedule (static, shared by all points)
    stride = fit_stride(steps, every, renormalise, per_step, fit_every)
    F = every * stride
    times = checkpoint_times(steps, F)
    n_fit_full = steps // F
    tail = steps - n_fit_full * F
    w_rate = _window_weights(times, steps, window)
    w_T = np.ones_like(times)
    npd = np.dtype(dtype)
    xs = {  # per fit checkpoint j = 1..n (index j-1)
        "C": jnp.asarray((fit_weights(times, w_rate) + 1j * fit_weights(times, w_T)).astype(
            np.complex64 if npd == np.float32 else np.complex128)),
        "wr": jnp.asarray(w_rate[1:].astype(npd)),
        "wT": jnp.asarray(w_T[1:].astype(npd)),
        "tau": jnp.asarray((times[1:] / steps).astype(npd)),
    }

    zeros = jnp.zeros((P,), dtype)
    if renormalise:
        a0 = _max_abs((x0, u0), P)
        e0 = jnp.where(a0 > 0, _exponent(jnp.where(a0 > 0, a0, 1.0)), 0)
        s0 = _pow2(-e0, dtype)
        x0, inner0 = _scale(x0, s0), _scale(inner0, s0)
        hl0 = 0.5 * jnp.log(jnp.where(a0 > 0, _sum_sq((x0, u0), P), 1.0))
        E0 = e0.astype(dtype)
        # acc: (rate, T) slope accumulators; he: (ln‖state‖ and exponent at the last fit point)
        acc = {"acc": _complex(zeros, zeros), "he": _complex(hl0, E0), "E": E0}
    else:
        ok0 = y_init > floor
        acc = {
            "fr": _Fits.zeros(P, dtype).add(jnp.asarray(w_rate[0], dtype), 0.0, zeros, ok0),
            "fT": _Fits.zeros(P, dtype).add(jnp.asarray(w_T[0], dtype), 0.0, zeros, ok0),
        }
    thr_abs = eps * d0

    def threshold2(acc):  # (eps·d0)² in the current scale 2^E (recomputed: no drift)
        if not renormalise:
            return thr_abs * thr_abs
        t = thr_abs * _pow2(-acc["E"].astype(jnp.int32), dtype)
        return t * t

    if per_step:
        # (last step above eps, overshoot in the current interval's scale)
        acc["ps"] = _complex(jnp.full((P,), -1.0, dtype), zeros)
        if over and renormalise:
            acc["lov"] = jnp.full((P,), -jnp.inf, dtype)

    def run_steps(zs, inner, count, acc, length):
        """``length`` steps of the map; only per-step metrics in the carry."""
        thr2 = threshold2(acc) if settle else None

        def body(c, _):
            zs, inner, count, ps = c
            x, u = unpack_state(zs)
            x, u, inner = step(x, u, inner, count)
            count = count + 1
            if per_step:
                last, ov = jnp.real(ps), jnp.imag(ps)
                dx = state_dx(x)
                if settle:
                    last = jnp.where(_sum_sq(dx, P) > thr2, count.astype(dtype), last)
                if over:
                    ov = jnp.maximum(ov, -_dot(dx, dhat, P))
                ps = _complex(last, ov)
            return (pack_state(x, u), inner, count, ps), None

        ps = acc.get("ps", jnp.zeros((), dtype))
        c = jax.lax.scan(body, (zs, inner, count, ps), None, length=length,
                         unroll=max(1, min(unroll, length)))[0]
        # Materialise the state once: otherwise XLA fuses the whole interval into each
        # consumer below and recomputes it several times.
        zs, inner, count, ps = jax.lax.optimization_barrier(c)
        if per_step:
            acc = {**acc, "ps": ps}
        return zs, inner, count, acc

    def renorm(zs, inner, acc):
        """Rescale the state by an exact power of two; accumulate the exponent."""
        acc = dict(acc)
        x, u = unpack_state(zs)
        a = _max_abs((x, u), P)
        ok = (a > 0) & (a < jnp.inf)
        e = jnp.where(ok, _exponent(jnp.where(ok, a, 1.0)), 0)
        s = _pow2(-e, dtype)
        x, u, inner = _scale(x, s), _scale(u, s), _scale(inner, s)
        if over:  # fold this interval's overshoot (scale 2^E) into a log-space maximum
            last, ov = jnp.real(acc["ps"]), jnp.imag(acc["ps"])
            lov = jnp.log(jnp.where(ov > 0, ov, 1.0)) + acc["E"] * ln2
            acc["lov"] = jnp.maximum(acc["lov"], jnp.where(ov > 0, lov, -jnp.inf))
            acc["ps"] = _complex(last, zeros)
        acc["E"] = acc["E"] + e.astype(dtype)
        return pack_state(x, u), inner, acc

    def fit_point(zs, acc, xj):
        """Add the fit checkpoint ``xj`` (one log per point)."""
        acc = dict(acc)
        x, u = unpack_state(zs)
        if renormalise:  # the state was just renormalised: max-abs in [1, 2) or 0
            hl_prev, E_prev = jnp.real(acc["he"]), jnp.imag(acc["he"])
            n2 = _sum_sq((x, u), P)
            ok = (n2 > 0) & (n2 < jnp.inf)
            hl = 0.5 * jnp.log(jnp.where(ok, n2, 1.0))
            delta = jnp.where(ok, (acc["E"] - E_prev) * ln2 + hl - hl_prev, 0.0)
            acc["acc"] = acc["acc"] + xj["C"] * delta.astype(xj["C"].dtype)
            acc["he"] = _complex(jnp.where(ok, hl, hl_prev), jnp.where(ok, acc["E"], E_prev))
        else:
            y = _log_norm((state_dx(x), u), P)
            ok = (y > floor) & (y < jnp.inf)
            acc["fr"] = acc["fr"].add(xj["wr"], xj["tau"], y - y_init, ok)
            acc["fT"] = acc["fT"].add(xj["wT"], xj["tau"], y - y_init, ok)
        return acc

    def segment(carry, lengths, xj):
        """Intervals of the given lengths (renormalising after each), then a fit point."""
        zs, inner, count, acc = carry
        for length in lengths:
            zs, inner, count, acc = run_steps(zs, inner, count, acc, length)
            if renormalise:
                zs, inner, acc = renorm(zs, inner, acc)
        return zs, inner, count, fit_point(zs, acc, xj)

    def full_segment(carry, xj):
        if stride == 1:
            return segment(carry, [every], xj), None

        def one(c, _):
            zs, inner, count, acc = c
            zs, inner, count, acc = run_steps(zs, inner, count, acc, every)
            zs, inner, acc = renorm(zs, inner, acc)
            return (zs, inner, count, acc), None

        c = jax.lax.scan(one, carry, None, length=stride)[0]
        zs, inner, count, acc = c
        return (zs, inner, count, fit_point(zs, acc, xj)), None

    carry = (pack_state(x0, u0), inner0, jnp.zeros((), jnp.int32), acc)
    carry = jax.lax.scan(full_segment, carry, jax.tree.map(lambda v: v[:n_fit_full], xs))[0]
    if tail:
        lengths = [every] * (tail // every) + ([tail % every] if tail % every else [])
        carry = segment(carry, lengths, jax.tree.map(lambda v: v[n_fit_full], xs))
    zs, inner, count, acc = carry
    x, u = unpack_state(zs)

    # ---- finalise
    out = {}
    state_ok = jnp.isfinite(_max_abs((x, u), P))
    bad = ~state_ok
    nanf = jnp.asarray(jnp.nan, dtype)
    if renormalise:
        slope_rate, slope_T = jnp.real(acc["acc"]), jnp.imag(acc["acc"])
        zero = state_ok & (_max_abs((x, u), P) == 0)  # a linear map never leaves exact 0
        scale_log = acc["E"] * ln2
        dx = x
        log_dist = scale_log + _log_norm(dx, P)
        log_state = scale_log + _log_norm((x, u), P)
        rate = jnp.where(zero, jnp.inf, -slope_rate)
        slope_T = jnp.where(zero, -jnp.inf, slope_T)
    else:
        s_rate, slope_T = acc["fr"].slope(steps), acc["fT"].slope(steps)
        # Too few late checkpoints above the precision floor: use the whole-run fit.
        rate = -jnp.where(jnp.isfinite(s_rate), s_rate, slope_T)
        dx = x - minimum
        log_dist = _log_norm(dx, P)
        log_state = _log_norm((dx, u), P)
    T = jnp.where(slope_T < 0, -1.0 / jnp.where(slope_T < 0, slope_T, -1.0), jnp.inf)
    diverged = bad | (log_state - y_init > math.log(divergence_factor))
    if "rate" in want:
        out["rate"] = jnp.where(bad, nanf, rate)
    if "rho" in want:
        out["rho"] = jnp.where(bad, nanf, jnp.exp(-rate))
    if "timescale" in want:
        out["timescale"] = jnp.where(bad, nanf, T)
    if settle:
        last = jnp.real(acc["ps"])
        done = (last < steps) & ~bad
        out["steps_to_eps"] = jnp.where(done, last + 1, nanf)
    if over:
        ld0 = jnp.log(jnp.where(d0 > 0, d0, 1.0))
        if renormalise:
            ov_true = jnp.exp(acc["lov"] - ld0)
        else:
            ov_true = jnp.imag(acc["ps"]) / jnp.exp(ld0)
        out["overshoot"] = jnp.where(bad, nanf, ov_true)
    if "log_distance" in want:
        out["log_distance"] = jnp.where(bad, nanf, log_dist)
    if "final_distance" in want:
        out["final_distance"] = jnp.where(bad, nanf, jnp.exp(log_dist))
    if "final_loss" in want:
        vloss = jax.vmap(lambda hp, lp, th: build(hp, lp)[1].loss(th))
        if renormalise:
            excess = vloss(hp_b, lp_b, minimum + dx) - loss_star
            lx = jnp.log(jnp.where(excess > 0, excess, 1.0)) + 2 * scale_log
            fl = loss_star + jnp.where(excess > 0, jnp.exp(lx), 0.0)
        else:
            fl = vloss(hp_b, lp_b, x)
        out["final_loss"] = jnp.where(bad, nanf, fl)
    if "diverged" in want:
        out["diverged"] = diverged
    return {m: out[m] for m in metrics}
