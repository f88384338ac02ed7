r"""The metrics of a finished run, from its final state and accumulators (:func:`finalise`)."""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from dynsim.metrics.batched import log_norm, max_abs
from dynsim.metrics.config import FLAGS, MetricConfig
from dynsim.metrics.fits import series_fit
from dynsim.metrics.scan import Kernel
from dynsim.metrics.tangent import tangent_rate

__all__ = ["finalise"]


def finalise(kern: Kernel, metrics, steps: int, cfg: MetricConfig, d0, zs, acc, inner, count, times,
              theta0) -> dict:
    """The requested metrics from the final state and accumulators."""
    P, dtype = kern.P, kern.dtype
    want = set(metrics)
    x, u = kern.unpack(zs)
    out = {}
    state_ok = jnp.isfinite(max_abs((x, u), P))
    nanf = jnp.asarray(jnp.nan, dtype)
    if kern.renormalise:
        slope_rate, slope_T = jnp.real(acc["acc"]), jnp.imag(acc["acc"])
        zero = state_ok & (max_abs((x, u), P) == 0)  # a linear map never leaves exact 0
        scale_log = acc["E"] * math.log(2.0)
        log_dist = scale_log + log_norm(x, P)
        y_final = scale_log + log_norm((x, u), P)
        rate = jnp.where(zero, jnp.inf, -slope_rate)
        slope_T = jnp.where(zero, -jnp.inf, slope_T)
        floored = jnp.zeros((P,), bool)
        unfit = jnp.zeros((P,), bool)
        plateau = jnp.zeros((P,), bool)
    else:
        s_rate, slope_T, floored, j_end, tail, stalled = series_fit(acc["ys"], times, steps, cfg.window)
        t_end = jnp.take(jnp.asarray(times, dtype), j_end)
        # In loss mode a floor far above the float floor is a plateau: L → L* ≠ 0 (no min_loss
        # given), a saddle or a flat region; y is ½ ln(gap/gap₀) there, so the threshold is a
        # gap ratio of √eps, far above any stagnation floor (ulps of θ*, squared).
        plateau = (stalled & (tail > 0.25 * math.log(float(jnp.finfo(dtype).eps)))
                   if kern.loss_mode else jnp.zeros((P,), bool))
        rate = -s_rate
        tangent_steps = cfg.tangent_steps
        if tangent_steps and want & {"rate", "rho"}:
            use = floored & ~plateau & state_ok
            # a real branch (lax.map over blocks): blocks with no floored point skip it
            r_tan = jax.lax.cond(jnp.any(use),
                                 lambda: tangent_rate(kern, zs, inner, count, theta0, acc["disp"],
                                                       tangent_steps, cfg.window),
                                 lambda: jnp.full((P,), jnp.nan, dtype))
            rate = jnp.where(use, r_tan, rate)
        unfit = ~jnp.isfinite(rate) | plateau
        rate = jnp.where(unfit, jnp.nan, rate)
        slope_T = jnp.where(plateau, jnp.nan, slope_T)
        y_final = kern.observable(x, u)
        if not kern.loss_mode:
            log_dist = log_norm(x - kern.minimum, P)
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
        assert settled is not None  # set above under the same condition
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
