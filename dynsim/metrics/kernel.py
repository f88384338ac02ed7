r"""The entry point: :func:`run_metrics` runs a batch of points and returns their metrics."""
from __future__ import annotations

import math
from typing import Any, Callable, Mapping, Sequence

import jax
import jax.numpy as jnp

from dynsim import landscapes as _landscapes
from dynsim.landscapes import Landscape
from dynsim.metrics.batched import bcast, log_norm, sum_sq
from dynsim.metrics.config import (
    DEFAULT_METRICS,
    DISTANCE_METRICS,
    FITTED_METRICS,
    METRICS,
    MetricConfig,
    available_metrics,
    can_renormalise,
)
from dynsim.metrics.finalise import finalise
from dynsim.metrics.scan import Kernel, init_accumulators, scan_run
from dynsim.metrics.schedule import fit_schedule
from dynsim.optim import LookaheadState, Rule

__all__ = ["run_metrics", "make_kernel"]


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
    options: MetricConfig | None = None,
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
      options: a :class:`MetricConfig` (default: its defaults). With renormalisation the state may shrink by at
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
    if options is None:
        options = MetricConfig()
    elif not isinstance(options, MetricConfig):
        raise ValueError(f"options={options!r} must be a dynsim.metrics.MetricConfig")
    cfg = options.resolved(steps, dtype, linear=can_renormalise(rule_factory, landscape_factory), default_unroll=8,
                           fitted=bool(set(metrics) & set(FITTED_METRICS)))
    if "steps_to_eps" in metrics and dtype == jnp.float32 and steps >= 2**24:
        raise ValueError("steps_to_eps in float32 needs steps < 2**24 (step counts are carried as floats)")
    static_hyper = dict(static_hyper or {})
    static_land = dict(static_land or {})
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
    kern, x0, u0, inner0, d0 = make_kernel(build, landscape_factory, cfg, metrics, hp_b, lp_b, theta0, loss_mode)
    stride, xs, times = fit_schedule(steps, cfg, kern.per_step, dtype)
    x0, inner0, acc = init_accumulators(kern, x0, u0, inner0, len(times))
    carry = (kern.pack(x0, u0), inner0, jnp.zeros((), jnp.int32), acc)
    zs, inner, count, acc = scan_run(kern, cfg, steps, carry, stride, xs)
    return finalise(kern, metrics, steps, cfg, d0, zs, acc, inner, count, times, theta0)


def make_kernel(build: Callable, landscape_factory: Callable, cfg: MetricConfig, metrics, hp_b, lp_b, theta0,
                loss_mode: bool):
    """The batched step, loss and sharpness of the points and their constants, as a :class:`Kernel`.

    ``build(hp, lp) -> (rule, landscape)`` builds one point; returns ``(kern, x0, u0, inner0, d0)``:
    the kernel, the tracked initial state (``θ₀ − θ*`` when renormalising), the rule's initial
    inner state and ``‖θ₀ − θ*‖`` (``None`` without θ*).
    """
    P, dtype = theta0.shape[0], theta0.dtype
    renormalise = cfg.renormalise
    assert isinstance(renormalise, bool)  # cfg is resolved (run_metrics)

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
    # stalls (ulp(θ*)/(ηλ) and more) is found from the series itself (series_fit).
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
        d0 = jnp.sqrt(sum_sq(d0vec, P))
        dhat = d0vec / bcast(jnp.where(d0 > 0, d0, 1.0), d0vec)
        x0 = d0vec if renormalise else theta0
        y_init = log_norm((d0vec, u0), P)
        floor = jnp.maximum(jnp.log(fe * jnp.sqrt(sum_sq(minimum, P))), tiny_floor)  # θ* = 0: the range alone
    kern = Kernel(
        P=P, dtype=dtype, renormalise=renormalise, zero_min=zero_min, loss_mode=loss_mode,
        use_pack=bool(cfg.pack) and not has_inner, settle="steps_to_eps" in metrics,
        over="overshoot" in metrics,
        step=lambda x, u, inner, count: vstep(hp_b, lp_b, minimum, x, u, inner, count),
        loss=lambda x: vloss(hp_b, lp_b, x),
        sharpness=lambda th, u, inner, count: vsharp(hp_b, lp_b, th, u, inner, count), minimum=minimum,
        loss_star=loss_star, dhat=dhat,
        y_init=y_init, log_gap0=log_gap0, floor=floor, thr_abs=None if d0 is None else cfg.eps * d0,
    )
    return kern, x0, u0, inner0, d0
