"""What the page shows of a result: its variables, dimensions, selector options and slices,
the live trajectory or the training curves of a clicked point, and the arrays a static page
embeds. Plain numpy and xarray: no bokeh here.
"""
from __future__ import annotations

import json
import math
import pathlib
from typing import Any, Mapping

import numpy as np

__all__ = ["PageData", "open_source", "fmt", "coord_value", "MAX_AXIS", "STATIC_CELLS", "MAX_CURVE",
           "STATIC_CURVE_BUDGET", "MAX_TRAJ_STEPS", "MAX_TRAJ_POINTS", "SA_RULES"]

#: Cells per heatmap axis the server sends (the store is strided down to it).
MAX_AXIS = 400
#: Cells per variable embedded in a static page (each dimension strided down evenly).
STATIC_CELLS = 250_000
#: Values per training curve sent or embedded (strided along ``step``).
MAX_CURVE = 400
#: Total numbers of training curves a static page embeds (past it, clicks show a note).
STATIC_CURVE_BUDGET = 2_000_000
#: Steps of a live trajectory (a longer sweep's run is cut here) and points drawn of it.
MAX_TRAJ_STEPS = 50_000
MAX_TRAJ_POINTS = 2_000

_REDUCE = ("mean", "min", "max")
_CURVE_VARS = ("train_loss", "test_loss", "train_accuracy", "test_accuracy", "sharpness")
SA_RULES = ("super_accelerated", "sa")


def fmt(v) -> str:
    """A coordinate as the page shows it: floats to 6 significant digits, numpy scalars as Python ones."""
    if isinstance(v, (float, np.floating)):
        return f"{float(v):.6g}"
    return str(v.item() if hasattr(v, "item") else v)


def _stride(n: int, cap: int) -> int:
    """The smallest stride that leaves at most ``cap`` of ``n`` values."""
    return max(1, math.ceil(n / cap))


class PageData:
    """What the page shows of a dataset: variables, dimensions, selector options, slices.

    Args:
      ds: a result (:func:`dynsim.open_result`, :func:`dynsim.sweep`, :func:`dynsim.train`).
      located: an optional table (``pandas.DataFrame``) of :func:`dynsim.locate` results,
        as in a store's ``locate.csv``.
      static: for a static page: every dimension is strided so that each variable holds at
        most ``cells`` values, and the selectors offer only the values kept.
      cells: that budget per variable (:data:`STATIC_CELLS`).
    """

    def __init__(self, ds, located=None, *, static: bool = False, cells: int = STATIC_CELLS):
        self.ds = ds
        cfg = ds.attrs.get("config", "{}")
        self.config = json.loads(cfg) if isinstance(cfg, str) else dict(cfg)
        self.kind = "train" if ("seed" in ds.dims and "step" in ds.dims) else "landscape"
        self.variables = [v for v, da in ds.data_vars.items()
                          if da.dtype.kind in "biuf" and sum(ds.sizes[d] > 1 for d in da.dims) >= 1]
        if not self.variables:
            raise ValueError("the store holds no numeric variable with a swept dimension to show")
        self.dims = list(ds.dims)
        self.static = static
        # a static page embeds every variable strided by the same per-dim strides, so its
        # selectors offer exactly the embedded values
        self.strides = {d: 1 for d in self.dims}
        if static:
            for v in self.variables:
                da = ds[v]
                for d, s in zip(da.dims, _strides_for([ds.sizes[d] for d in da.dims], cells)):
                    self.strides[d] = max(self.strides[d], s)
        self.options = {d: self._options(d) for d in self.dims}
        # the canonical config's fixed values (a training store's attrs hold their repr)
        self.fixed = dict(self.config.get("fixed") or {})
        self.located = located

    def indices(self, d) -> list[int]:
        """The full-grid indices of ``d`` the page offers."""
        return list(range(0, self.ds.sizes[d], self.strides[d]))

    def _options(self, d) -> list[str]:
        vals = [fmt(coord_value(self.ds, d, i)) for i in self.indices(d)]
        return [*_REDUCE, *(f"seed {v}" for v in vals)] if d == "seed" else vals

    def full_index(self, d, opt: str) -> int:
        """The full-grid index of option ``opt`` of dim ``d`` (not a seed reduction)."""
        return self.indices(d)[self.options[d].index(opt) - (len(_REDUCE) if d == "seed" else 0)]

    # ------------------------------------------------------------------ defaults

    def default_var(self) -> str:
        for v in ("rate", "test_accuracy", "train_loss"):
            if v in self.variables:
                return v
        return self.variables[0]

    def axes_of(self, var: str) -> list[str]:
        """Dims of ``var`` a heatmap or a line can run along (size > 1), hyperparameters first."""
        da = self.ds[var]
        swept = [d for d in da.dims if self.ds.sizes[d] > 1]
        return [d for d in swept if d not in ("seed", "step", "eig")] + \
            [d for d in swept if d in ("seed", "step", "eig")]

    def default_axes(self, var: str) -> tuple[str, str | None]:
        """The two longest hyperparameter dims of ``var``, in store order (else any two)."""
        ax = self.axes_of(var)
        hyper = [d for d in ax if d not in ("seed", "step", "eig")]
        if len(hyper) >= 2:
            top = sorted(hyper, key=lambda d: -self.ds.sizes[d])[:2]
            ax = [d for d in hyper if d in top]
        return ax[0], (ax[1] if len(ax) > 1 else None)

    def default_selection(self) -> dict[str, str]:
        sel = {}
        for d, opts in self.options.items():
            if d == "seed":
                sel[d] = "mean"
            elif d == "step":
                sel[d] = opts[-1]
            else:
                sel[d] = opts[len(opts) // 2]
        return sel

    # ------------------------------------------------------------------ slices (server)

    def slice2d(self, var: str, xdim: str, ydim: str | None, sel: Mapping[str, str],
                cap: int = MAX_AXIS) -> dict[str, list]:
        """The heatmap's data: ``var`` over ``(ydim, xdim)`` at the selection, strided to ``cap``.

        Reads only that slice of a lazily opened store. Returns the columns of the
        page's image source (``image`` is ``(len(yv), len(xv))``).
        """
        da = self.ds[var]
        if xdim not in da.dims or (ydim is not None and ydim not in da.dims) or xdim == ydim:
            raise ValueError(f"{var!r} has dims {da.dims}; cannot show it over ({xdim}, {ydim})")
        index: dict[str, int | slice] = {}
        reduce, fixed = {}, {}
        for d in da.dims:
            if d in (xdim, ydim):
                continue
            opt = sel.get(d, self.default_selection()[d])
            if d == "seed" and opt in _REDUCE:
                reduce[d] = opt
                continue
            i = self.full_index(d, opt)
            index[d] = i
            fixed[d] = coord_value(self.ds, d, i)
        sx = self.strides[xdim] if self.static else _stride(self.ds.sizes[xdim], cap)
        index[xdim] = slice(None, None, sx)
        if ydim is not None:
            sy = self.strides[ydim] if self.static else _stride(self.ds.sizes[ydim], cap)
            index[ydim] = slice(None, None, sy)
        sub = da.isel(index)
        with np.errstate(all="ignore"):
            for d, how in reduce.items():
                sub = getattr(sub.astype("float64"), how)(d, skipna=True)
        order = [ydim, xdim] if ydim is not None else [xdim]
        img = np.asarray(sub.transpose(*order).values, dtype=np.float64)
        if ydim is None:
            img = img[None, :]
        xi = list(range(0, self.ds.sizes[xdim], sx))
        yi = list(range(0, self.ds.sizes[ydim], sy)) if ydim is not None else [0]
        return _image_columns(self, var, xdim, ydim, img, xi, yi, fixed, reduce)

    def point(self, xdim, ydim, xi: int, yi: int, sel: Mapping[str, str]) -> dict[str, Any]:
        """Full-grid coordinates of a clicked cell: ``{dim: index}`` for every dim but reduced seeds."""
        idx = {xdim: int(xi)}
        if ydim is not None:
            idx[ydim] = int(yi)
        for d in self.dims:
            if d in idx:
                continue
            opt = sel.get(d, self.default_selection()[d])
            if d == "seed" and opt in _REDUCE:
                continue
            idx[d] = self.full_index(d, opt)
        return idx

    # ------------------------------------------------------------------ clicks

    def hyper_at(self, idx: Mapping[str, int]) -> dict[str, float]:
        """Every hyperparameter's value at a point: swept ones from ``idx``, fixed ones from the config."""
        out = {k: float(v) for k, v in self.fixed.items() if isinstance(v, (int, float))}
        for d in self.config.get("grid", {}):
            if d in idx:
                out[d] = float(coord_value(self.ds, d, idx[d]))
        return out

    def trajectory(self, idx: Mapping[str, int]) -> dict[str, Any]:
        """A landscape point's run, live: ``{"loss": {step, loss}, "phase": {x, y, xlabel, ylabel}}``."""
        import jax.numpy as jnp

        from dynsim.engine.plan import plan_from_config
        from dynsim.numerics import x64_enabled
        from dynsim.run import simulate

        plan = plan_from_config(self.config)
        hyper = self.hyper_at(idx)
        land = {a: hyper[a] for a in plan.land_swept if a in hyper}
        built = plan.landscape.factory(**land, **plan.land_static)
        rule_kw = {a: hyper[a] for a in plan.rule_args if a in hyper}
        if "k_eta" in hyper:  # the quadratic's kη: learning_rate = kη / k
            k = float(land.get("k", plan.land_static.get("k", plan.landscape.defaults.get("k", 1.0))))
            rule_kw["learning_rate"] = hyper["k_eta"] / k
        rule = plan.optimizer.build(**rule_kw, **plan.static_hyper)
        steps = int(min(plan.steps, MAX_TRAJ_STEPS))
        dtype = jnp.float64 if plan.dtype == "float64" and x64_enabled() else jnp.float32
        traj = simulate(rule, built, jnp.asarray(plan.theta0, dtype), steps)
        loss = np.asarray(traj.loss, np.float64)
        if built.min_loss is not None:
            loss = loss - float(built.min_loss)
        theta = np.asarray(traj.theta, np.float64).reshape(steps + 1, -1)
        vel = np.asarray(traj.velocity, np.float64).reshape(steps + 1, -1)
        keep = np.arange(0, steps + 1, _stride(steps + 1, MAX_TRAJ_POINTS))
        loss = np.where(loss > 0, loss, np.nan)[keep]
        if theta.shape[1] == 1:
            x, y, xl, yl = theta[keep, 0], vel[keep, 0], "θ", "m (θ_i − θ_(i−1))"
        else:
            x, y, xl, yl = theta[keep, 0], theta[keep, 1], "θ₁", "θ₂"
        title = ", ".join(f"{k}={fmt(v)}" for k, v in hyper.items())
        return {"loss": {"step": keep.astype(np.float64), "loss": loss},
                "phase": {"x": x, "y": y}, "labels": [xl, yl, title]}

    def curves(self, idx: Mapping[str, int]) -> dict[str, dict[str, np.ndarray]]:
        """A training point's curves, every seed.

        Returns ``{"curves": {step, {var}_{seed}...}, "hessian": {step, sharpness_{seed}...,
        threshold}}``: the losses and accuracies at every record (strided to
        :data:`MAX_CURVE`), the sharpness at the steps it was recorded, with the exact
        threshold there (:meth:`threshold`). NaN marks a missing value (a gap in the line).
        """
        ds = self.ds
        hidx = {d: i for d, i in idx.items() if d in self.config.get("grid", {})}
        steps = np.asarray(ds["step"].values)
        keep = np.arange(0, len(steps), _stride(len(steps), MAX_CURVE))
        cols: dict[str, np.ndarray] = {"step": steps[keep].astype(np.float64)}
        for v in _CURVE_VARS[:-1]:
            if v in ds:
                a = np.asarray(ds[v].isel(hidx).isel(step=keep).transpose("seed", "step").values, np.float64)
                for s in range(a.shape[0]):
                    cols[f"{v}_{s}"] = a[s]
        hess: dict[str, np.ndarray] = {"step": np.zeros(0)}
        if "sharpness" in ds:
            a = np.asarray(ds["sharpness"].isel(hidx).transpose("seed", "step").values, np.float64)
            rec = np.isfinite(a).any(axis=0)  # the steps a Hessian record was taken
            hess = {"step": steps[rec].astype(np.float64), **{f"sharpness_{s}": a[s, rec] for s in range(a.shape[0])}}
        hess["threshold"] = np.full(len(hess["step"]), self.threshold(hidx))
        return {"curves": cols, "hessian": hess}

    def threshold(self, hidx) -> float:
        """The exact sharpness threshold of super-acceleration at a point (NaN for other rules)."""
        name = self.config.get("optimizer", "")
        h = self.hyper_at(hidx)
        if name not in (*SA_RULES, "heavy_ball", "gd", "nesterov") or "learning_rate" not in h:
            return float("nan")
        from dynsim import analysis

        mu = h.get("momentum", 0.0)
        sigma = {"nesterov": mu, "heavy_ball": 0.0, "gd": 0.0}.get(name, h.get("sigma", 0.0))
        mu = 0.0 if name == "gd" else mu
        return float(analysis.stability_threshold(h["learning_rate"], mu, sigma))

    # ------------------------------------------------------------------ static embedding

    def embedded(self) -> dict[str, Any]:
        """Every variable strided by :attr:`strides` (for the browser to slice), and the curves per point."""
        arrays = {}
        for v in self.variables:
            da = self.ds[v]
            sub = np.asarray(da.isel({d: slice(None, None, self.strides[d]) for d in da.dims}).values,
                             dtype=np.float32)
            arrays[v] = {"dims": list(da.dims), "shape": list(sub.shape), "data": sub.ravel()}
        curves: dict[str, Any] | None = None
        if self.kind == "train":
            grid = [d for d in self.config.get("grid", {}) if d in self.ds.dims]
            n_points = math.prod(len(self.indices(d)) for d in grid)
            per = sum(v in self.ds for v in _CURVE_VARS) * self.ds.sizes["seed"] * \
                min(self.ds.sizes["step"], MAX_CURVE)
            if n_points * per <= STATIC_CURVE_BUDGET:
                table = {}
                for flat in range(n_points):
                    pos = np.unravel_index(flat, [len(self.indices(d)) for d in grid])
                    idx = {d: self.indices(d)[int(p)] for d, p in zip(grid, pos)}
                    table[",".join(str(int(idx[d])) for d in grid)] = self.curves(idx)
                curves = {"grid": grid, "table": table}
        return {"arrays": arrays, "curves": curves}


def _strides_for(sizes, cells) -> list[int]:
    """Per-dim strides bringing ``prod(sizes)`` under ``cells``, shrinking the longest dims first."""
    strides = [1] * len(sizes)

    def count():
        return math.prod(math.ceil(n / s) for n, s in zip(sizes, strides))

    while count() > cells:
        i = max(range(len(sizes)), key=lambda j: math.ceil(sizes[j] / strides[j]))
        strides[i] += 1 if math.ceil(sizes[i] / strides[i]) < 8 else max(1, strides[i] // 4)
    return strides


def coord_value(ds, d, i):
    """The value of dimension ``d`` at index ``i`` (the index itself where ``d`` has no coordinate)."""
    return ds[d].values[i].item() if d in ds.coords else i


def _image_columns(page, var, xdim, ydim, img, xi, yi, fixed, reduce) -> dict[str, list]:
    ds = page.ds
    xv = [float(coord_value(ds, xdim, i)) for i in xi]
    yv = [float(coord_value(ds, ydim, i)) for i in yi] if ydim is not None else [0.0]
    return {"image": [img.astype(np.float32)], "var": [var], "xdim": [xdim], "ydim": [ydim or ""],
            "xv": [xv], "yv": [yv], "xi": [xi], "yi": [yi], "fixed": [json.dumps(fixed)],
            "reduce": [json.dumps(reduce)]}


def open_source(src):
    """``(dataset, located table or None, label)`` from a store directory (with its ``locate.csv``)
    or a dataset."""
    if isinstance(src, (str, pathlib.Path)):
        from dynsim.engine.store import open_result

        path = pathlib.Path(src)
        ds = open_result(path)
        located = None
        if (path / "locate.csv").exists():
            import pandas as pd

            located = pd.read_csv(path / "locate.csv")
        return ds, located, str(path)
    return src, None, "dataset"
