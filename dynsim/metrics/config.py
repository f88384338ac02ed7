r"""What the metrics are and their options: names, :class:`MetricConfig`, the ``flags`` bits.

The definitions of the metrics are in the docstring of :mod:`dynsim.metrics`.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import jax.numpy as jnp
import numpy as np

from dynsim import landscapes as _landscapes
from dynsim import optim as _optim

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
MIN_FIT_POINTS = 32  # fit checkpoints per run, at least (when renormalising)
MAX_SERIES = 1024  # fit checkpoints kept per point by the unrescaled fits, at most
UNRESCALED_EVERY = 8  # default checkpoint interval of unrescaled runs
#: Metrics fitted to the series of checkpoints: a run needs at least 3 of them.
FITTED_METRICS = ("rate", "rho", "timescale", "floor_step", "flags")

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


def _check_number(name: str, value, ok, what: str, *, none_ok: bool = False, integer: bool = False) -> None:
    """One ValueError naming the option unless ``value`` is a number (an integer) with ``ok(value)``."""
    if value is None and none_ok:
        return
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{name}={value!r} must be {'an integer' if integer else 'a number'} {what}")
    if (integer and value != int(value)) or not ok(value):
        raise ValueError(f"{name}={value!r} must be {what}")


@dataclasses.dataclass(frozen=True)
class MetricConfig:
    """The metric options: the one place they and their defaults live (hashable, static).

    :func:`dynsim.sweep` and :func:`dynsim.metrics.run_metrics` take one as ``options=``;
    every value is checked here, at construction (one ValueError naming the option), and
    the defaults that depend on the run (``steps``, dtype, whether the map is linear) are
    filled in by :meth:`resolved`.

    Attributes:
      every: checkpoint (and renormalisation) interval in steps; ``None``: 32 in float32,
        64 in float64 when renormalising (float64 has the range for longer intervals), 8
        for unrescaled runs (their fits need points before the floor); a run shorter than
        3 such intervals takes ``steps // 3`` instead (at least 1).
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
      fit_every: steps between fit points (:func:`dynsim.metrics.fit_stride`).
      tangent_steps: steps of the linearised map that give ``rate`` where an unrescaled run
        reached its floating-point floor (:func:`dynsim.metrics.tangent.tangent_rate`);
        ``None``: ``steps`` clipped to [256, 4096]; 0: off (the rate is then fitted before
        the floor only).

    >>> MetricConfig(window=1.0).window
    1.0
    >>> MetricConfig(window=2.0)
    Traceback (most recent call last):
    ...
    ValueError: window=2.0 must be in (0, 1]
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

    def __post_init__(self):
        _check_number("every", self.every, lambda v: v >= 1, ">= 1", none_ok=True, integer=True)
        _check_number("window", self.window, lambda v: 0 < v <= 1, "in (0, 1]")
        _check_number("eps", self.eps, lambda v: v > 0, "> 0")
        _check_number("divergence_factor", self.divergence_factor, lambda v: v > 1, "> 1")
        if not (self.renormalise is None or self.renormalise == "auto"
                or isinstance(self.renormalise, (bool, np.bool_))):
            raise ValueError(f"renormalise={self.renormalise!r} must be True, False or 'auto'")
        _check_number("floor_eps", self.floor_eps, lambda v: v > 0, "> 0", none_ok=True)
        _check_number("unroll", self.unroll, lambda v: v >= 1, ">= 1", none_ok=True, integer=True)
        if not isinstance(self.pack, (bool, np.bool_)):
            raise ValueError(f"pack={self.pack!r} must be True or False")
        _check_number("fit_every", self.fit_every, lambda v: v >= 1, ">= 1", none_ok=True, integer=True)
        _check_number("tangent_steps", self.tangent_steps,
                      lambda v: v // UNRESCALED_EVERY * UNRESCALED_EVERY in (0,) or v >= 4 * UNRESCALED_EVERY,
                      f"0 or at least {4 * UNRESCALED_EVERY}", none_ok=True, integer=True)

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> "MetricConfig":
        """Build from a mapping of options (a TOML ``[options]`` table); an unknown one is a
        ValueError naming it; ``None`` means the default."""
        bad = sorted(set(options) - set(METRIC_OPTIONS))
        if bad:
            raise ValueError(f"unknown option(s) {', '.join(map(repr, bad))}; metric options are "
                             f"{', '.join(METRIC_OPTIONS)}")
        return cls(**{k: v for k, v in options.items() if v is not None or k in ("floor_eps",)})

    def replace(self, **changes) -> "MetricConfig":
        """A copy with ``changes`` (checked like a new one)."""
        return dataclasses.replace(self, **changes)

    def as_dict(self) -> dict[str, Any]:
        """The options by name, in field order."""
        return {k: getattr(self, k) for k in METRIC_OPTIONS}

    def resolved(self, steps: int, dtype, *, linear: bool, default_unroll: int = 4,
                 fitted: bool = True) -> "MetricConfig":
        """Defaults filled in for a run of ``steps`` steps (ValueError naming the option).

        ``fitted``: whether a fitted metric (:data:`FITTED_METRICS`) is asked for; those need
        at least 3 checkpoints, the others (``final_loss``, ``diverged``, …) run any ``steps >= 1``.
        """
        renorm = linear if self.renormalise in (None, "auto") else bool(self.renormalise)
        # Renormalising runs fold every `every` steps and fit sparsely (fit_stride); unrescaled
        # runs only sample their series, finely enough to fit a run that reaches the float
        # floor within ~100 steps (a loss evaluation per 8 steps costs a few % of the run).
        every = self.every
        if every is None:
            every = (64 if jnp.dtype(dtype) == jnp.float64 else 32) if renorm else UNRESCALED_EVERY
            # a short run: 3 checkpoints still (only where the default does not fit: others keep it)
            every = every if steps >= 3 * every else max(1, steps // 3)
        every = int(every)
        unroll = int(self.unroll if self.unroll is not None else default_unroll)
        if fitted and steps < 3 * every:
            if self.every is None:
                raise ValueError(f"steps={steps}: the fitted metrics ({', '.join(FITTED_METRICS)}) need at least "
                                 "3 steps (3 checkpoints); ask for others (final_loss, diverged, ...) or raise steps")
            raise ValueError(f"steps={steps} must be at least 3*every={3 * every} (>= 3 checkpoints); "
                             "lower 'every' or raise steps")
        if self.fit_every is not None and int(self.fit_every) < every:
            raise ValueError(f"fit_every={self.fit_every} must be >= every={every}")
        tangent = self.tangent_steps
        tangent = min(max(steps, 256), 4096) if tangent is None else int(tangent)
        tangent = tangent // UNRESCALED_EVERY * UNRESCALED_EVERY
        return dataclasses.replace(
            self, every=every, unroll=unroll, renormalise=renorm, window=float(self.window),
            tangent_steps=tangent, eps=float(self.eps), divergence_factor=float(self.divergence_factor),
            pack=bool(self.pack), fit_every=None if self.fit_every is None else int(self.fit_every))


#: The names of the metric options (the fields of :class:`MetricConfig`), in order.
METRIC_OPTIONS = tuple(f.name for f in dataclasses.fields(MetricConfig))


#: Bit flags of the ``flags`` metric (:func:`describe_flags`).
FLAGS: dict[str, tuple[int, str]] = {
    "floor": (1, "the run reached its floating-point floor at floor_step; the fits end there"),
    "short": (2, "too few usable fit checkpoints (before the floor) to fit rate/timescale: NaN"),
    "eps_below_floor": (4, "steps_to_eps is NaN because eps*|theta0-theta*| lies below the floor"),
    "plateau": (8, "the loss stopped decreasing far above the floating-point floor "
                   "(L* is not 0? give min_loss): rate/timescale NaN"),
    "nonfinite": (16, "NaN/inf met: every metric but diverged is NaN"),
}


def describe_flags(value) -> list[str]:
    """The names of the bits set in a ``flags`` value (:data:`FLAGS`).

    >>> describe_flags(FLAGS["floor"][0] | FLAGS["eps_below_floor"][0])
    ['floor', 'eps_below_floor']
    """
    v = int(value)
    return [name for name, (bit, _) in FLAGS.items() if v & bit]
