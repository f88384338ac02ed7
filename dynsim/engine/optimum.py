r"""Locate the optimum along a swept axis: the fastest contraction (max ``rate``) and min ``T``,
or the best value of any stored metric (``by=``).

:func:`locate` takes a finished sweep and, for every point of the other dimensions, finds
the value of ``over`` that maximises the asymptotic ``rate`` (minimises the contraction ρ):
a coarse argmax on the grid, a downhill walk with refine-quality runs until a grid triple
brackets the optimum, then vectorised golden-section refinement (:mod:`dynsim.numerics`).
It works for any problem the engine runs (user losses and optax optimizers included); the
refinement re-runs the same compiled problem at the candidate points.
"""
from __future__ import annotations

import dataclasses
import json
import warnings

import numpy as np

from dynsim import metrics as _metrics
from dynsim.engine import execute as _execute
from dynsim.engine.plan import Plan, plan_from_config
from dynsim.numerics import bisect_sign, bracket_walk, golden_section

__all__ = ["locate", "plan_of", "STATUS", "MAXIMISED", "default_mode"]

#: What a row's ``status`` means (:func:`locate`).
STATUS = {
    "ok": "an interior optimum, refined",
    "edge": "the optimum lies at the grid's edge: widen the grid",
    "no_contraction": "rho >= 1 at the best point: nothing converges there",
    "plateau": "the rate is flat around the optimum: one point of a range is reported",
    "unconverged": "the refinement runs did not reach the floating-point floor: raise refine_steps",
    "invalid": "no finite rate on the row",
}

_PLANS: dict[str, Plan] = {}


def remember(plan: Plan) -> None:
    """Keep this process's plan for a result's config: :func:`locate` then needs no import paths."""
    key = json.dumps(plan.config, sort_keys=True)
    _PLANS.pop(key, None)
    _PLANS[key] = plan
    while len(_PLANS) > 64:
        _PLANS.pop(next(iter(_PLANS)))


def plan_of(config: dict, **overrides) -> Plan:
    """The plan behind a stored config: remembered from this process, else rebuilt."""
    if not overrides:
        hit = _PLANS.get(json.dumps(config, sort_keys=True))
        if hit is not None:
            return hit
    return plan_from_config(config, **overrides)


#: Metrics where larger is better (``locate``'s default ``mode="max"``); every other metric: smaller.
MAXIMISED = ("rate",)


def default_mode(by: str) -> str:
    """``"max"`` for the rate and accuracies (``test_accuracy``, ...), ``"min"`` for every other metric."""
    return "max" if by in MAXIMISED or by.endswith("accuracy") else "min"


def locate(
    ds,
    over: str = "sigma",
    *,
    by: str = "rate",
    mode: str | None = None,
    refine: bool = True,
    refine_steps: int = 1 << 18,
    refine_window: float | None = None,
    tol: float = 1e-4,
    boundary: bool = True,
    T_scan: int = 64,
    refine_dtype: str | None = "float64",
    optimizer=None,
    landscape=None,
):
    r"""Locate the minimiser of the contraction (and of ``T``) along ``over``, or the best ``by``.

    **Any metric** (``by="final_loss"``, ``by="test_accuracy"``, …): the grid point of
    ``over`` where the stored metric ``ds[by]`` is smallest (``mode="min"``) or largest
    (``mode="max"``; the default for ``rate`` and accuracies, :func:`default_mode`), for every
    point of the other dimensions. A metric recorded over time (a training result's ``step``
    or ``epoch`` dimension) is taken at its last record. Nothing is re-run: the best grid
    point is reported, at an edge of the grid too (``at_edge``, status ``"edge"``, one
    warning). Variables: ``{over}_star``, ``{by}_star`` (the metric there), ``at_edge``,
    ``status`` (``"ok"``, ``"edge"``, ``"invalid"``: no finite value on the row). This works on
    every result with ``over`` as a dimension, :func:`dynsim.train`'s included.

    **The rate** (``by="rate"``, the default; refined as follows). ``ds`` is a sweep result
    (it carries its config in ``attrs["config"]``) containing ``rate`` (and ``timescale`` for
    the T-minimiser). For each point of the other dimensions:

    * ``sigma_star``: ``argmax rate`` = ``argmin ρ``: coarse grid argmax, a downhill walk
      on the grid with refine-quality rates until ``(σ_{i−1}, σ_i, σ_{i+1})`` brackets the
      minimum (the short coarse runs are biased near the kink), then golden-section
      inside ``[σ_{i−1}, σ_{i+1}]``, all with ``refine_steps``-step runs
      fitted over ``refine_window`` of the run (asymptotic rate), until the bracket is
      below ``tol/2`` relative (absolute floor ``tol·1e-3·Δσ``); ``rho_star`` is ρ there.
    * ``sigma_star_T``: ``argmin timescale``, with the sweep's own ``steps`` (T is defined
      by the run length); ``T_star`` its value. T of a finite run ripples slightly in σ,
      so the two grid cells around the coarse argmin are first scanned at ``T_scan``
      points, then golden-section refines inside the best fine cell.
    * ``sigma_stable_lo``/``sigma_stable_hi``: the ends of the stable interval
      (``rate > 0``) containing the argmax, refined by bisection on the sign of the
      asymptotic rate (``refine_steps`` runs); NaN where the grid does not bracket them.
    * ``at_edge``: the optimum lies at the grid's edge: the coarse argmax
      (``sigma_star_coarse``) is an end point, or the downhill walk with refine-quality
      runs ended at one (the short coarse runs can place it inside). The grid does not
      bracket the optimum; ``sigma_star`` is NaN there. (A plateau reaching the edge is
      reported as ``"plateau"``, with its value, and ``at_edge`` False.)
    * ``status``: why a row has no optimum, or ``"ok"`` (:data:`STATUS`): ``"edge"``
      (``at_edge``), ``"no_contraction"`` (ρ ≥ 1 at the best point: nothing converges, so
      nothing is reported), ``"plateau"`` (the rate is flat around the optimum within
      ``10·tol``, e.g. heavy ball's ρ = √μ over a range of learning rates: the reported
      value is one point of the plateau), ``"unconverged"`` (a loss without the linear
      structure: the refinement runs of ``refine_steps`` steps did not reach the
      floating-point floor, so the rates are finite-run rates, not asymptotic ones: raise
      ``refine_steps``), ``"invalid"`` (no finite rate on the row). Rows other than
      ``"ok"`` also raise one Python warning, and ``attrs["status_counts"]`` counts them.

    Variables are named after ``over``: ``{over}_star``, ``rho_star``, ``{over}_star_T``,
    ``T_star``, ``{over}_stable_lo``/``_hi``, ``at_edge``, ``status`` (``sigma_star`` … for σ).

    **Runs that reach the floating-point floor** (user losses, nonlinear landscapes: every
    problem the kernel does not renormalise). Each refinement run is only as long as it
    must be: a pilot run of ``refine_steps`` steps at the coarse optima finds where the
    rows reach their floor (``floor_step``), and the refinement runs last twice as long
    (a power of two, at least 512 steps); their ``rate`` is that of the map linearised at
    the floor point (:mod:`dynsim.metrics`), over ``min(max(refine_steps // 16, 1024),
    16384)`` tangent steps. The answer therefore does not depend on ``refine_steps`` once
    the runs reach the floor. ``refine_window`` defaults to 1 (the whole run) for the
    renormalised linear maps and 0.5 otherwise.

    ``optimizer``/``landscape``: for a stored sweep of functions that have no import path
    (lambdas, closures), the same functions again (checked against the stored fingerprint);
    results computed in this process need neither.

    The refinement runs in ``refine_dtype`` (default float64, inside
    ``jax.enable_x64``; ``None`` = the sweep's dtype): it has few points, and float32
    resolves σ* only to ~1e-5 absolute (3e-4 relative where σ* ≈ 0.04).

    Returns an ``xarray.Dataset`` over the other dimensions.
    """
    import xarray as xr

    if mode not in (None, "min", "max"):
        raise ValueError(f"mode={mode!r} must be 'min', 'max' or None (the metric's default)")
    if by != "rate":
        return _locate_metric(ds, over, by, mode or default_mode(by))
    if mode == "min":
        raise ValueError("mode='min' with by='rate': the optimum is the fastest contraction, the largest rate")
    if "config" not in ds.attrs:
        raise ValueError("ds: not a dynsim.sweep result (attrs['config'] missing)")
    if refine_dtype not in (None, "float32", "float64"):
        raise ValueError(f"refine_dtype={refine_dtype!r} must be 'float32', 'float64' or None")
    config = json.loads(ds.attrs["config"])
    over_kw = {k: v for k, v in (("optimizer", optimizer), ("landscape", landscape)) if v is not None}
    plan = plan_of(config, **over_kw)
    rows = _rows_of(ds, over, plan, refine_dtype)
    out, valid, rate_fn, run = _rate_optimum(rows, refine, refine_steps, refine_window, tol)
    if "timescale" in ds:
        out.update(_timescale_optimum(rows, ds, refine, T_scan, tol))
    if boundary:
        out.update(_stable_interval(rows, out, valid, rate_fn, refine, tol))
    counts = {k: int(v) for k, v in zip(*np.unique(out["status"], return_counts=True))}
    bad = {k: v for k, v in counts.items() if k != "ok"}
    if bad:
        warnings.warn(f"locate over {over!r}: {sum(bad.values())} of {rows.n} rows are not clean interior optima: "
                      + ", ".join(f"{v} {k} ({STATUS[k]})" for k, v in bad.items()), stacklevel=2)
    coords = {d: ds[d].values for d in rows.others}
    return xr.Dataset(
        {k: (rows.others, np.asarray(v).reshape(rows.oshape)) for k, v in out.items()},
        coords=coords,
        attrs={**{k: v for k, v in ds.attrs.items() if k != "complete"},
               "locate_over": over, "refine_steps": run["refine_steps"], "refine_window": run["refine_window"],
               "tol": tol, "refine_dtype": refine_dtype or plan.dtype, "tangent_steps": run["tangent_steps"],
               "status_counts": json.dumps(counts)},
    )




@dataclasses.dataclass
class _Rows:
    """A sweep's rows along ``over``: the coarse rates and how to run a point of each row again."""

    plan: Plan
    config: dict
    over: str
    sig: np.ndarray  # the grid along `over`
    R: np.ndarray  # (n, len(sig)) coarse rates
    others: list
    oshape: tuple
    other_vals: dict
    fixed_pts: dict
    refine_dtype: str | None

    @property
    def n(self) -> int:
        return self.R.shape[0]

    @property
    def spacing(self) -> float:
        return np.diff(self.sig).min()

    def pts(self, s) -> dict:
        """Every row's point with ``over = s`` (one value per row)."""
        return {**self.other_vals, **self.fixed_pts, self.over: np.asarray(s, np.float64)}


def _rows_of(ds, over: str, plan: Plan, refine_dtype) -> _Rows:
    if over not in ds.dims:
        raise ValueError(f"over={over!r} is not a swept dimension ({', '.join(ds.dims)})")
    if "rate" not in ds:
        raise ValueError("ds: locate needs the 'rate' metric")
    others = [d for d in ds.rate.dims if d != over]
    rate = ds.rate.transpose(*others, over).values.astype(np.float64)
    sig = ds[over].values.astype(np.float64)
    if len(sig) < 3:
        raise ValueError(f"over={over!r}: need at least 3 grid values")
    if np.any(np.diff(sig) <= 0):
        raise ValueError(f"over={over!r}: grid values must be increasing")
    R = rate.reshape(-1, len(sig))
    other_vals = {}
    grids = np.meshgrid(*[ds[d].values for d in others], indexing="ij") if others else []
    for d, gv in zip(others, grids):
        other_vals[d] = gv.reshape(-1).astype(np.float64)
    fixed_pts = {k: np.full(R.shape[0], v) for k, v in plan.fixed.items()}
    return _Rows(plan, json.loads(ds.attrs["config"]), over, sig, R, others, rate.shape[:-1], other_vals, fixed_pts,
                 refine_dtype)


def _rate_optimum(rows: _Rows, refine: bool, refine_steps: int, refine_window, tol: float):
    """``(out, valid, refined_rate, run)``: the argmax of the rate per row, refined (:func:`locate`);
    ``valid``: rows with a finite coarse rate; ``run``: the refinement runs' settings."""
    plan, sig, R, n, over = rows.plan, rows.sig, rows.R, rows.n, rows.over
    Rm = np.where(np.isfinite(R), R, -np.inf)
    i_best = np.argmax(Rm, axis=1)
    valid = np.isfinite(R[np.arange(n), i_best])
    at_edge = (i_best == 0) | (i_best == len(sig) - 1) | ~valid
    i_c = np.clip(i_best, 1, len(sig) - 2)
    coarse = sig[i_best]
    out = {
        f"{over}_star_coarse": coarse,
        "at_edge": at_edge,
    }
    status = np.where(~valid, "invalid", np.where(at_edge, "edge", "ok")).astype(object)
    linear = bool(plan.options.renormalise)
    window = (1.0 if linear else 0.5) if refine_window is None else float(refine_window)
    run_steps, tangent = int(refine_steps), None
    if refine and not linear:
        # Refinement runs just long enough to reach the floor (module docstring).
        tangent = int(min(max(refine_steps // 16, 1024), 16384))
        pilot = _execute.run_points(plan, rows.pts(coarse), steps=refine_steps, window=window,
                                    metrics=["floor_step"], dtype=rows.refine_dtype, tangent_steps=tangent)
        fs = pilot["floor_step"]
        floored = np.isfinite(fs)
        status = np.where((status == "ok") & ~floored, "unconverged", status).astype(object)
        if np.all(floored | ~valid) and np.any(floored):
            # the pilot samples its series every `sample` steps: the floor lies before the next sample
            every = plan.options.every
            assert every is not None  # plan.options is resolved (make_plan)
            sample = float(np.diff(_metrics.fit_times(refine_steps, every, False, False))[0])
            need = 2 * (float(np.max(fs[floored])) + sample)
            run_steps = int(min(refine_steps, max(512, 1 << int(np.ceil(np.log2(need))))))

    def refined_rate(s):
        """The asymptotic rate at ``s``: refine-quality runs (for the optimum and the stable interval)."""
        return _execute.run_points(plan, rows.pts(s), steps=run_steps, window=window, metrics=["rate"],
                                   dtype=rows.refine_dtype, tangent_steps=tangent)["rate"]

    if refine:
        tol_abs = tol * np.maximum(np.abs(coarse), 1e-3 * rows.spacing)

        def neg_rate(s):
            r = refined_rate(s)
            return np.where(np.isfinite(r), -r, np.inf)

        # The coarse rates (short runs) are biased near the kink, by several grid cells
        # at small kη: walk downhill on the grid with refine-quality rates until the
        # cell triple brackets the minimum, then golden-section inside it.
        i_w, walk_edge = bracket_walk(neg_rate, sig, i_c)
        at_edge = at_edge | walk_edge
        s_star, f_star = golden_section(neg_rate, sig[i_w - 1], sig[i_w + 1], 0.5 * tol_abs)
        # A flat optimum (heavy ball's ρ = √μ over a range of η): the bracket's ends are as fast.
        f_lo, f_hi = neg_rate(sig[i_w - 1]), neg_rate(sig[i_w + 1])
        with np.errstate(invalid="ignore"):  # inf − inf: an unstable end is not flat
            flat = ((np.abs(f_lo - f_star) <= 10 * tol * np.abs(f_star))
                    & (np.abs(f_hi - f_star) <= 10 * tol * np.abs(f_star)))
        rho = np.exp(f_star)
    else:
        s_star, rho = coarse, np.exp(-R[np.arange(n), i_best])
        flat = np.zeros(n, bool)
    status = np.where((status != "invalid") & at_edge, "edge", status).astype(object)
    status = np.where(np.isin(status, ("ok", "unconverged")) & ~(rho < 1), "no_contraction", status).astype(object)
    # On a plateau the downhill walk follows rounding noise, to an edge as often as not.
    status = np.where(np.isin(status, ("ok", "edge")) & flat & (rho < 1), "plateau", status).astype(object)
    report = np.isin(status, ("ok", "plateau", "unconverged"))  # a value that is still an optimum
    out["at_edge"] = at_edge & ~report  # an edge is never reported as an optimum
    out[f"{over}_star"] = np.where(report, s_star, np.nan)
    out["rho_star"] = np.where(report, rho, np.nan)
    out["status"] = status.astype(str)
    run = {"refine_steps": run_steps if refine else 0, "refine_window": window, "tangent_steps": tangent or 0}
    return out, valid, refined_rate, run


def _timescale_optimum(rows: _Rows, ds, refine: bool, T_scan: int, tol: float) -> dict:
    """The minimiser of ``timescale`` per row, with the sweep's own steps (:func:`locate`)."""
    plan, sig, n, over = rows.plan, rows.sig, rows.n, rows.over
    steps, window = rows.config["steps"], rows.config["options"]["window"]
    out = {}
    T = ds.timescale.transpose(*rows.others, over).values.astype(np.float64).reshape(-1, len(sig))
    Tm = np.where(np.isfinite(T), T, np.inf)
    j_best = np.argmin(Tm, axis=1)
    edge_T = (j_best == 0) | (j_best == len(sig) - 1) | ~np.isfinite(T[np.arange(n), j_best])
    j_c = np.clip(j_best, 1, len(sig) - 2)
    out[f"{over}_star_T_coarse"] = sig[j_best]
    if refine:
        tol_T = tol * np.maximum(np.abs(sig[j_best]), 1e-3 * rows.spacing)

        def Tfun(s):
            t = _execute.run_points(plan, rows.pts(s), steps=steps, window=window,
                                    metrics=["timescale"], dtype=rows.refine_dtype)["timescale"]
            return np.where(np.isfinite(t) & (t > 0), t, np.inf)

        # T of a finite run ripples in σ (the envelope fit sees few oscillation
        # periods), so golden-section alone can stop in a ripple: scan the two grid
        # cells finely first, then refine inside the best fine cell.
        lo_c, hi_c = sig[j_c - 1], sig[j_c + 1]
        fine = np.linspace(0.0, 1.0, T_scan + 1)
        grid_pts = lo_c[:, None] + fine[None, :] * (hi_c - lo_c)[:, None]
        rep = {k: np.repeat(v, T_scan + 1) for k, v in {**rows.other_vals, **rows.fixed_pts}.items()}
        t_all = _execute.run_points(plan, {**rep, over: grid_pts.ravel()}, steps=steps,
                                    window=window, metrics=["timescale"],
                                    dtype=rows.refine_dtype)["timescale"].reshape(grid_pts.shape)
        vals = np.where(np.isfinite(t_all) & (t_all > 0), t_all, np.inf)
        q = np.clip(np.argmin(vals, axis=1), 1, T_scan - 1)
        r = np.arange(n)
        sT, fT = golden_section(Tfun, grid_pts[r, q - 1], grid_pts[r, q + 1], 0.5 * tol_T)
    else:
        sT, fT = sig[j_best], T[np.arange(n), j_best]
    out[f"{over}_star_T"] = np.where(edge_T, np.nan, sT)
    out["T_star"] = np.where(edge_T, np.nan, fT)
    return out


def _stable_interval(rows: _Rows, out: dict, valid, refined_rate, refine: bool, tol: float) -> dict:
    """The ends of the stable interval around the optimum, by bisection on the rate's sign (:func:`locate`).

    ρ grows monotonically away from its minimum on both sides, so each end of the stable
    interval is the one sign change of the asymptotic rate between σ* and the grid edge. The
    coarse rates are not trusted near |ρ| = 1 (short runs): the brackets are checked with
    refine-quality runs.
    """
    over, sig, n = rows.over, rows.sig, rows.n

    def rate_at(s):  # the sign of the asymptotic rate: long runs, as for sigma_star
        return np.nan_to_num(refined_rate(s), nan=-1.0)  # non-finite = unstable

    coarse = out[f"{over}_star_coarse"]
    centre = np.where(np.isfinite(out[f"{over}_star"]), out[f"{over}_star"], coarse)
    centre_ok = valid & (rate_at(centre) > 0)
    res_all = {}
    for name, edge in ((f"{over}_stable_lo", sig[0]), (f"{over}_stable_hi", sig[-1])):
        edges = np.full(n, edge)
        has = centre_ok & (rate_at(edges) <= 0)
        res = np.full(n, np.nan)
        if np.any(has):
            r = bisect_sign(rate_at, centre, edges, tol, tol * 1e-3 * rows.spacing) if refine else edges
            res[has] = r[has]
        res_all[name] = res
    return res_all

def _locate_metric(ds, over: str, by: str, mode: str):
    """:func:`locate` with ``by`` other than ``rate``: the best grid point of a stored metric."""
    import xarray as xr

    if by not in ds:
        raise ValueError(f"by={by!r} is not a variable of ds ({', '.join(map(str, ds.data_vars))})")
    if over not in ds.dims:
        raise ValueError(f"over={over!r} is not a swept dimension ({', '.join(map(str, ds.dims))})")
    metric = ds[by]
    if over not in metric.dims:
        raise ValueError(f"by={by!r} does not vary along over={over!r} (its dims: {', '.join(metric.dims)})")
    for time in ("step", "epoch"):  # a record over time: its last record (the final value)
        if time in metric.dims and time != over:
            metric = metric.isel({time: -1})
    others = [d for d in metric.dims if d != over]
    vals = metric.transpose(*others, over).values.astype(np.float64)
    grid = ds[over].values
    flat = vals.reshape(-1, len(grid))
    ok = np.isfinite(flat)
    score = np.where(ok, flat, np.inf if mode == "min" else -np.inf)
    best = np.argmin(score, axis=1) if mode == "min" else np.argmax(score, axis=1)
    rows = np.arange(flat.shape[0])
    valid = ok[rows, best]
    edge = valid & ((best == 0) | (best == len(grid) - 1)) & (len(grid) > 1)
    status = np.where(~valid, "invalid", np.where(edge, "edge", "ok"))
    shape = vals.shape[:-1]
    out = {f"{over}_star": np.where(valid, grid[best].astype(np.float64), np.nan),
           f"{by}_star": np.where(valid, flat[rows, best], np.nan), "at_edge": edge, "status": status}
    counts = {k: int(v) for k, v in zip(*np.unique(status, return_counts=True))}
    bad = {k: v for k, v in counts.items() if k != "ok"}
    if bad:
        warnings.warn(f"locate {by} over {over!r}: {sum(bad.values())} of {len(status)} rows have no interior "
                      "optimum: " + ", ".join(f"{v} {k} ({STATUS[k]})" for k, v in bad.items()), stacklevel=3)
    return xr.Dataset({k: (others, np.asarray(v).reshape(shape)) for k, v in out.items()},
                      coords={d: metric[d].values for d in others},
                      attrs={**{k: v for k, v in ds.attrs.items() if k != "complete"}, "locate_over": over,
                             "locate_by": by, "locate_mode": mode, "status_counts": json.dumps(counts)})
