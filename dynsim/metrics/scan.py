r"""The pieces of one run's scan: the per-point constants (:class:`Kernel`), the steps, the
renormalisation, the fit checkpoints, and :func:`scan_run` that strings them together."""
from __future__ import annotations

import math
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp

from dynsim.metrics.batched import bcast, dot, exponent, log_norm, max_abs, pow2, scale, sum_sq, to_complex
from dynsim.metrics.config import MetricConfig
from dynsim.metrics.fits import DISP_MARGIN

__all__ = ["Kernel", "run_steps", "renorm", "fit_point", "init_accumulators", "scan_run"]


class Kernel(NamedTuple):
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
        return to_complex(x, u) if self.use_pack else (x, u)

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
        return log_norm((self.dx(x), u), self.P)

    def threshold2(self, acc):
        """(eps·d0)² in the current scale 2^E (recomputed: no drift)."""
        if not self.renormalise:
            return self.thr_abs * self.thr_abs
        t = self.thr_abs * pow2(-acc["E"].astype(jnp.int32), self.dtype)
        return t * t


def run_steps(kern: Kernel, zs, inner, count, acc, length: int, unroll: int):
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
                last = jnp.where(sum_sq(dx, P) > thr2, count.astype(dtype), last)
            if kern.over:
                ov = jnp.maximum(ov, -dot(dx, kern.dhat, P))
            ps = to_complex(last, ov)
        return (kern.pack(x, u), inner, count, ps), None

    ps = acc.get("ps", jnp.zeros((), dtype))
    c = jax.lax.scan(body, (zs, inner, count, ps), None, length=length, unroll=max(1, min(unroll, length)))[0]
    # Materialise the state once: otherwise XLA fuses the whole interval into each
    # consumer below and recomputes it several times.
    zs, inner, count, ps = jax.lax.optimization_barrier(c)
    if kern.per_step:
        acc = {**acc, "ps": ps}
    return zs, inner, count, acc


def renorm(kern: Kernel, zs, inner, acc):
    """Rescale the state by an exact power of two; accumulate the exponent."""
    P, dtype = kern.P, kern.dtype
    acc = dict(acc)
    x, u = kern.unpack(zs)
    a = max_abs((x, u), P)
    ok = (a > 0) & (a < jnp.inf)
    e = jnp.where(ok, exponent(jnp.where(ok, a, 1.0)), 0)
    s = pow2(-e, dtype)
    x, u, inner = scale(x, s), scale(u, s), scale(inner, s)
    if kern.over:  # fold this interval's overshoot (scale 2^E) into a log-space maximum
        last, ov = jnp.real(acc["ps"]), jnp.imag(acc["ps"])
        lov = jnp.log(jnp.where(ov > 0, ov, 1.0)) + acc["E"] * math.log(2.0)
        acc["lov"] = jnp.maximum(acc["lov"], jnp.where(ov > 0, lov, -jnp.inf))
        acc["ps"] = to_complex(last, jnp.zeros((P,), dtype))
    acc["E"] = acc["E"] + e.astype(dtype)
    return kern.pack(x, u), inner, acc


def fit_point(kern: Kernel, zs, acc, xj):
    """Add the fit checkpoint ``xj`` (one log per point)."""
    acc = dict(acc)
    x, u = kern.unpack(zs)
    if kern.renormalise:  # the state was just renormalised: max-abs in [1, 2) or 0
        hl_prev, E_prev = jnp.real(acc["he"]), jnp.imag(acc["he"])
        n2 = sum_sq((x, u), kern.P)
        ok = (n2 > 0) & (n2 < jnp.inf)
        hl = 0.5 * jnp.log(jnp.where(ok, n2, 1.0))
        delta = jnp.where(ok, (acc["E"] - E_prev) * math.log(2.0) + hl - hl_prev, 0.0)
        acc["acc"] = acc["acc"] + xj["C"] * delta.astype(xj["C"].dtype)
        acc["he"] = to_complex(jnp.where(ok, hl, hl_prev), jnp.where(ok, acc["E"], E_prev))
    else:
        y = kern.observable(x, u)
        ok = (y > kern.floor) & (y < jnp.inf)
        row = jnp.where(ok, y - kern.y_init, jnp.nan).astype(kern.dtype)[None]
        acc["ys"] = jax.lax.dynamic_update_slice_in_dim(acc["ys"], row, xj["j"], axis=0)
        # The tangent's start (tangent_rate): a displacement over one interval taken well above
        # the floor (near it, rounding noise excites every mode). `cand` is the displacement at
        # the last record low; it is committed to `disp` once y has fallen DISP_MARGIN below
        # it, so at the end `disp` lies DISP_MARGIN to twice that above the lowest y reached.
        px, pu = acc["prev"]
        d_new = (x - px, u - pu)
        fall = ok & (y < acc["rec"] - DISP_MARGIN)
        sel = lambda c, new, old: jax.tree.map(lambda a, b: jnp.where(bcast(c, a), a, b), new, old)  # noqa: E731
        acc["disp"] = sel(fall, acc["cand"], acc["disp"])
        acc["cand"] = sel(fall, d_new, acc["cand"])
        acc["rec"] = jnp.where(fall, y, acc["rec"])
        acc["prev"] = (x, u)
    return acc


def init_accumulators(kern: Kernel, x0, u0, inner0, n_times: int):
    P, dtype = kern.P, kern.dtype
    zeros = jnp.zeros((P,), dtype)
    if kern.renormalise:
        a0 = max_abs((x0, u0), P)
        e0 = jnp.where(a0 > 0, exponent(jnp.where(a0 > 0, a0, 1.0)), 0)
        s0 = pow2(-e0, dtype)
        x0, inner0 = scale(x0, s0), scale(inner0, s0)
        hl0 = 0.5 * jnp.log(jnp.where(a0 > 0, sum_sq((x0, u0), P), 1.0))
        E0 = e0.astype(dtype)
        # acc: (rate, T) slope accumulators; he: (ln‖state‖ and exponent at the last fit point)
        acc = {"acc": to_complex(zeros, zeros), "he": to_complex(hl0, E0), "E": E0}
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
        acc["ps"] = to_complex(jnp.full((P,), -1.0, dtype), zeros)
        if kern.over and kern.renormalise:
            acc["lov"] = jnp.full((P,), -jnp.inf, dtype)
    return x0, inner0, acc


def scan_run(kern: Kernel, cfg: MetricConfig, steps: int, carry, stride: int, xs):
    """All steps: full fit segments in a scan, then the tail."""
    every, unroll = cfg.every, cfg.unroll
    assert every is not None  # cfg is resolved (run_metrics)
    F = every * stride
    n_fit_full = steps // F
    tail = steps - n_fit_full * F

    def segment(carry, lengths, xj):
        """Intervals of the given lengths (renormalising after each), then a fit point."""
        zs, inner, count, acc = carry
        for length in lengths:
            zs, inner, count, acc = run_steps(kern, zs, inner, count, acc, length, unroll)
            if kern.renormalise:
                zs, inner, acc = renorm(kern, zs, inner, acc)
        return zs, inner, count, fit_point(kern, zs, acc, xj)

    def full_segment(carry, xj):
        if stride == 1:
            return segment(carry, [every], xj), None

        def one(c, _):
            zs, inner, count, acc = run_steps(kern, *c, every, unroll)
            if kern.renormalise:
                zs, inner, acc = renorm(kern, zs, inner, acc)
            return (zs, inner, count, acc), None

        zs, inner, count, acc = jax.lax.scan(one, carry, None, length=stride)[0]
        return (zs, inner, count, fit_point(kern, zs, acc, xj)), None

    carry = jax.lax.scan(full_segment, carry, jax.tree.map(lambda v: v[:n_fit_full], xs))[0]
    if tail:
        lengths = [every] * (tail // every) + ([tail % every] if tail % every else [])
        carry = segment(carry, lengths, jax.tree.map(lambda v: v[n_fit_full], xs))
    return carry
