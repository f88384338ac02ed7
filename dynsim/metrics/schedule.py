r"""When a run checkpoints and fits: checkpoint times, the fit stride, the per-checkpoint data.

Checkpoints fall every ``every`` steps (renormalisation); fit points every ``every·stride``
steps (:func:`fit_stride`); the last may be closer. What a run carries per point beyond
its state follows from them (:func:`series_bytes_per_point`).
"""
from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from dynsim.metrics.config import MAX_SERIES, MIN_FIT_POINTS, MetricConfig
from dynsim.numerics import fit_weights, hann_window_weights

__all__ = ["series_bytes_per_point", "checkpoint_times", "fit_stride", "fit_times", "fit_schedule"]


def series_bytes_per_point(steps: int, cfg: MetricConfig, dtype, theta_dim: int) -> int:
    """Bytes an unrescaled run carries per point beyond the state: its series of fit points and
    the tangent's start (:func:`dynsim.metrics.fits.series_fit`,
    :func:`dynsim.metrics.tangent.tangent_rate`); 0 when renormalising.
    ``cfg`` is resolved (:meth:`MetricConfig.resolved`)."""
    if cfg.renormalise:
        return 0
    assert cfg.every is not None  # resolved
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
    metrics, and to ``every`` otherwise; at least ``MIN_FIT_POINTS`` fit points are kept.
    Sparser fit points alias under-damped oscillations into the slope: at 4096 steps the
    99th-percentile relative error of ``rho`` away from the kink is ~1e-4 for 32-step,
    ~2e-4 for 64-step and ~6e-4 for 128-step spacing (σ* refinement is unaffected:
    near the kink the oscillation period is long).
    """
    intervals = steps // every
    if not renormalise:
        # The unrescaled fits keep the whole series of fit points (to cut it at the floor,
        # :func:`series_fit`): at most MAX_SERIES of them, however long the run.
        return max(1, -(-intervals // MAX_SERIES))
    if fit_every is None:
        if per_step:
            return 1
        fit_every = max(every, 64)
    stride = max(1, int(fit_every) // every)
    if per_step:
        stride = 1  # the per-step accumulators are folded (rescaled) at every interval
    return max(1, min(stride, intervals // MIN_FIT_POINTS))


def fit_times(steps: int, every: int, renormalise: bool, per_step: bool, fit_every: int | None = None) -> np.ndarray:
    """The fit checkpoint times ``0, F, 2F, …, steps`` used by :func:`run_metrics`."""
    return checkpoint_times(steps, every * fit_stride(steps, every, renormalise, per_step, fit_every))


# --------------------------------------------------------------------------- bit-level scaling


def fit_schedule(steps: int, cfg: MetricConfig, per_step: bool, dtype):
    """Static per-checkpoint data (shared by all points): ``(stride, xs, times)``.

    ``xs`` holds, per fit checkpoint ``j = 1..n``, its index (where an unrescaled run stores
    its series) and, when renormalising, the least-squares coefficients of the online fits.
    """
    assert cfg.every is not None and isinstance(cfg.renormalise, bool)  # cfg is resolved (run_metrics)
    stride = fit_stride(steps, cfg.every, cfg.renormalise, per_step, cfg.fit_every)
    times = checkpoint_times(steps, cfg.every * stride)
    xs = {"j": jnp.arange(1, len(times), dtype=jnp.int32)}
    if cfg.renormalise:
        w_rate = hann_window_weights(times, steps, cfg.window)
        w_T = np.ones_like(times)
        xs["C"] = jnp.asarray((fit_weights(times, w_rate) + 1j * fit_weights(times, w_T)).astype(
            np.complex64 if np.dtype(dtype) == np.float32 else np.complex128))
    return stride, xs, times
