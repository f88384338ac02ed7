r"""See a result store: an interactive page over any landscape or training sweep.

``dynsim view DIR`` serves the page on 127.0.0.1; ``dynsim view DIR --html FILE`` writes it
as one self-contained file; :func:`view` shows it in a notebook. The page has

* a **heatmap** of any stored variable over any two of its dimensions, a selector for
  each other dimension (for ``seed``: one seed, or the mean, min or max over seeds);
* a **line plot** of the same variable along either heatmap axis, through the point last
  clicked;
* **overlays**: the located optimum (``locate.csv`` of the store when it has one,
  :func:`dynsim.locate`'s refined σ*; otherwise the grid optimum along σ or the learning
  rate, the coarse stage of ``locate``), and on super-acceleration over the quadratic the
  exact closed forms σ* = (μ − (1 − √kη)²)/kη (:func:`dynsim.analysis.critical_sigma`)
  and the flip boundary σ = (1 + μ)/kη − ½ (:func:`dynsim.analysis.stable_sigma_interval`);
* on **click**: for a landscape sweep, the point's trajectory computed live with
  :func:`dynsim.simulate` from the stored config (loss against step, and the phase
  portrait: θ against m, or the first two coordinates); for a training sweep, the point's
  curves over its seeds (losses, accuracies, and the sharpness against the exact
  threshold :func:`dynsim.analysis.stability_threshold` where it was recorded).

**Large stores** stay lazy: the server reads only the 2-D slice on display, strided to
at most :data:`MAX_AXIS` cells per axis. The static page embeds every variable strided to
at most :data:`STATIC_CELLS` cells, and slices it in the browser; the live trajectories
need Python and are left out there.

**Why bokeh, directly.** It is the layer HoloViz itself renders with, one well-kept
dependency (tornado and jinja2 come with it) instead of panel + holoviews + hvplot + param,
and its import costs a fraction of theirs, which the 3 s budget for opening a 10⁷-point
store needs. The page needs only a few widgets, an image and lines; bokeh gives both
transports this module uses with the same models: a server with Python callbacks (the live
trajectories, slices read lazily from the store) and a static document with ``CustomJS``
callbacks and inline resources (no network). The same JavaScript draws the overlays and
the line plot in both, so the two pages cannot drift apart. Every model a test needs is
named (``name=``), so a browser test reads the plotted data through ``Bokeh.documents``.
"""
from __future__ import annotations

import json
import math
import pathlib
from typing import Any, Mapping

import numpy as np

__all__ = ["view", "build", "save_html", "serve", "PageData", "MAX_AXIS", "STATIC_CELLS"]

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
_SA_RULES = ("super_accelerated", "sa")


def _fmt(v) -> str:
    if isinstance(v, (float, np.floating)):
        return f"{float(v):.6g}"
    return str(v.item() if hasattr(v, "item") else v)


def _stride(n: int, cap: int) -> int:
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
        vals = [_fmt(_value(self.ds, d, i)) for i in self.indices(d)]
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
        index, reduce, fixed = {}, {}, {}
        for d in da.dims:
            if d in (xdim, ydim):
                continue
            opt = sel.get(d, self.default_selection()[d])
            if d == "seed" and opt in _REDUCE:
                reduce[d] = opt
                continue
            i = self.full_index(d, opt)
            index[d] = i
            fixed[d] = _value(self.ds, d, i)
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
                out[d] = float(_value(self.ds, d, idx[d]))
        return out

    def trajectory(self, idx: Mapping[str, int]) -> dict[str, dict[str, list]]:
        """A landscape point's run, live: ``{"loss": {step, loss}, "phase": {x, y, xlabel, ylabel}}``."""
        import jax
        import jax.numpy as jnp

        from dynsim.engine.plan import plan_from_config
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
        dtype = jnp.float64 if plan.dtype == "float64" and jax.config.jax_enable_x64 else jnp.float32
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
        title = ", ".join(f"{k}={_fmt(v)}" for k, v in hyper.items())
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
        if name not in (*_SA_RULES, "heavy_ball", "gd", "nesterov") or "learning_rate" not in h:
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
        curves = None
        if self.kind == "train":
            grid = [d for d in self.config.get("grid", {}) if d in self.ds.dims]
            n_points = math.prod(len(self.indices(d)) for d in grid)
            per = sum(v in self.ds for v in _CURVE_VARS) * self.ds.sizes["seed"] * \
                min(self.ds.sizes["step"], MAX_CURVE)
            if n_points * per <= STATIC_CURVE_BUDGET:
                curves = {}
                for flat in range(n_points):
                    pos = np.unravel_index(flat, [len(self.indices(d)) for d in grid])
                    idx = {d: self.indices(d)[int(p)] for d, p in zip(grid, pos)}
                    curves[",".join(str(int(idx[d])) for d in grid)] = self.curves(idx)
                curves = {"grid": grid, "table": curves}
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


def _value(ds, d, i):
    return ds[d].values[i].item() if d in ds.coords else i


def _image_columns(page, var, xdim, ydim, img, xi, yi, fixed, reduce) -> dict[str, list]:
    ds = page.ds
    xv = [float(_value(ds, xdim, i)) for i in xi]
    yv = [float(_value(ds, ydim, i)) for i in yi] if ydim is not None else [0.0]
    return {"image": [img.astype(np.float32)], "var": [var], "xdim": [xdim], "ydim": [ydim or ""],
            "xv": [xv], "yv": [yv], "xi": [xi], "yi": [yi], "fixed": [json.dumps(fixed)],
            "reduce": [json.dumps(reduce)]}


# --------------------------------------------------------------------------- the page


_JS_COMMON = r"""
function fmt(v) { return (v === null || v === undefined || !isFinite(v)) ? 'nan'
                  : (Math.abs(v) >= 1e4 || (Math.abs(v) < 1e-3 && v !== 0)) ? v.toExponential(3)
                  : (+v.toPrecision(5)).toString(); }
function geometric(vals) {   // ratios closer to constant than differences: interpolate in log
  const n = vals.length; if (n < 3 || !(vals[0] > 0 && vals[n - 1] > 0)) return false;
  const r = Math.abs(Math.log((vals[1] / vals[0]) / (vals[n - 1] / vals[n - 2])));
  const d = Math.abs(Math.log((vals[1] - vals[0]) / (vals[n - 1] - vals[n - 2])));
  return r < d;
}
function frac(vals, v) {   // fractional index of value v in the monotonic coordinate list vals
  const n = vals.length; if (n < 2) return 0;
  const up = vals[n - 1] >= vals[0], lg = geometric(vals) && v > 0;
  for (let i = 0; i < n - 1; i++) {
    const a = vals[i], b = vals[i + 1];
    if ((up && v >= a && v <= b) || (!up && v <= a && v >= b)) {
      const t = lg ? Math.log(v / a) / Math.log(b / a) : (v - a) / (b - a);
      return i + t;
    }
  }
  return NaN;
}
"""

# Overlays and the line plot: run in the browser on every image update, server or static.
_JS_UPDATE = _JS_COMMON + r"""
const d = img.data; const im = d.image[0];
const xv = d.xv[0], yv = d.yv[0], xdim = d.xdim[0], ydim = d.ydim[0], v = d['var'][0];
const fixed = JSON.parse(d.fixed[0]);
const ny = yv.length, nx = xv.length;
const rows = Array.isArray(im[0]) || ArrayBuffer.isView(im[0]);   // rows, or one flat (ny, nx) ndarray
const get = (r, c) => rows ? im[r][c] : im[r * nx + c];
heat.glyph.dw = nx; heat.glyph.dh = ny;
for (const [dd, w] of Object.entries(sels)) w.disabled = (dd === xdim || dd === ydim);
fig.x_range.start = -0.5; fig.x_range.end = nx - 0.5;
fig.y_range.start = -0.5; fig.y_range.end = ny - 0.5;
xaxis.axis_label = xdim; yaxis.axis_label = ydim;
fig.title.text = v + ' over (' + xdim + (ydim ? ', ' + ydim : '') + ')' +
  Object.entries(fixed).map(([k, u]) => ', ' + k + '=' + fmt(u)).join('') +
  Object.entries(JSON.parse(d.reduce[0])).map(([k, u]) => ', ' + u + ' over ' + k + 's').join('');
let lo = Infinity, hi = -Infinity;
for (let r = 0; r < ny; r++) for (let c = 0; c < nx; c++) {
  const z = get(r, c); if (z !== null && isFinite(z)) { lo = Math.min(lo, z); hi = Math.max(hi, z); } }
if (lo <= hi) { cmap.low = lo; cmap.high = (hi > lo) ? hi : lo + 1; }
// the tapped cell (kept in range) and the line through it
const tx = tap.data.xi[0] < 0 ? Math.floor(nx / 2) : Math.min(tap.data.xi[0], nx - 1);   // no click yet: the centre
const ty = tap.data.yi[0] < 0 ? Math.floor(ny / 2) : Math.min(tap.data.yi[0], ny - 1);
mark.data = {x: [tx], y: [ty]};
const along = (alongsel.value === 'y' && ydim) ? 'y' : 'x';
const lx = [], ly = [];
if (along === 'x') { for (let c = 0; c < nx; c++) { lx.push(c); ly.push(get(ty, c)); } }
else { for (let r = 0; r < ny; r++) { lx.push(r); ly.push(get(r, tx)); } }
line.data = {x: lx, y: ly};
lxaxis.axis_label = along === 'x' ? xdim : ydim;
lyaxis.axis_label = v;
linefig.title.text = v + ' along ' + (along === 'x' ? xdim : ydim) + ' at ' +
  (along === 'x' ? (ydim ? ydim + '=' + fmt(yv[ty]) : '') : xdim + '=' + fmt(xv[tx]));
// overlays: the closed forms where dynsim knows them, and the located optimum
const cfg = meta.config, val = (k) => (k in fixed ? fixed[k] : (k in cfg.fixed ? cfg.fixed[k] : null));
const ox = [], oy = [], fx = [], fy = [], lx2 = [], ly2 = [];
const quad = meta.sa_quadratic && [xdim, ydim].includes('sigma') &&
             ([xdim, ydim].includes('k_eta') || [xdim, ydim].includes('learning_rate'));
const kdim = [xdim, ydim].includes('k_eta') ? 'k_eta' : 'learning_rate';
const mu = quad ? val('momentum') : null;
if (quad && mu !== null) {
  const kv = (xdim === kdim) ? xv : yv, sv = (xdim === 'sigma') ? xv : yv;
  const kscale = (kdim === 'k_eta') ? 1 : (cfg.landscape_params.k || cfg.fixed.k || 1);
  const kmin = Math.min(...kv), kmax = Math.max(...kv), n = 200;
  for (let i = 0; i <= n; i++) {
    const k = kmin * Math.pow(kmax / kmin, i / n), ke = k * kscale;
    const star = (mu - Math.pow(1 - Math.sqrt(ke), 2)) / ke, flip = (1 + mu) / ke - 0.5;
    const ki = frac(kv, k), si = frac(sv, star), fi = frac(sv, flip);
    if (xdim === kdim) { ox.push(ki); oy.push(si); fx.push(ki); fy.push(fi); }
    else { ox.push(si); oy.push(ki); fx.push(fi); fy.push(ki); }
  }
}
// the located optimum: locate.csv rows matching the selection, else the grid optimum
const prefer = meta.kind === 'train' ? ['learning_rate', 'sigma'] : ['sigma', 'learning_rate'];
const over = prefer.find((a) => [xdim, ydim].includes(a)) || null;
const other = over === xdim ? ydim : xdim;
let source = '';
if (over && other && meta.located && (over + '_star') in meta.located) {
  const L = meta.located, key = over + '_star', n = L[key].length;
  for (let i = 0; i < n; i++) {
    let ok = other in L;
    for (const [k, u] of Object.entries(fixed)) if (k in L && Math.abs(L[k][i] - u) > 1e-9 * Math.max(1, Math.abs(u))) ok = false;
    if (!ok) continue;
    const oi = frac(other === xdim ? xv : yv, L[other][i]), si = frac(over === xdim ? xv : yv, L[key][i]);
    if (over === xdim) { lx2.push(si); ly2.push(oi); } else { lx2.push(oi); ly2.push(si); }
  }
  source = 'located (locate.csv)';
}
if (over && other && lx2.length === 0 && v !== 'diverged') {
  const best = (v === 'rate' || v.includes('accuracy')) ? 1 : -1;
  const no = over === xdim ? ny : nx, nv = over === xdim ? nx : ny;
  for (let j = 0; j < no; j++) {
    let bi = -1, bz = -Infinity;
    for (let i = 0; i < nv; i++) {
      const z = over === xdim ? get(j, i) : get(i, j);
      if (z !== null && isFinite(z) && best * z > bz) { bz = best * z; bi = i; }
    }
    if (bi >= 0) { if (over === xdim) { lx2.push(bi); ly2.push(j); } else { lx2.push(j); ly2.push(bi); } }
  }
  source = 'grid optimum along ' + over;
}
exact.data = {x: ox, y: oy}; flipsrc.data = {x: fx, y: fy}; loc.data = {x: lx2, y: ly2};
note.text = (source ? 'dots: ' + source + '. ' : '') +
  (ox.length ? 'dashed: exact σ* = (μ − (1 − √kη)²)/kη; dotted: flip boundary σ = (1+μ)/kη − ½ (μ = ' + fmt(mu) + ').' : '');
"""

_JS_TICKS = _JS_COMMON + r"""
const vals = img.data[axis][0]; const i = Math.round(tick);
return (i >= 0 && i < vals.length && Math.abs(tick - i) < 1e-6) ? fmt(vals[i]) : '';
"""

# The static page slices the embedded arrays itself (the server does this in Python).
_JS_STATIC_SLICE = r"""
const v = varsel.value, A = store.arrays[v];
let xdim = xsel.value, ydim = ysel.value;
const axes = meta.axes[v];
if (cb_obj === varsel) {   // another variable: its own axes
  xsel.options = axes; ysel.options = axes.length > 1 ? axes : [''];
  if (!axes.includes(xdim)) xdim = axes[0];
  if (!axes.includes(ydim) || ydim === xdim) ydim = axes.find((a) => a !== xdim) || '';
  xsel.value = xdim; ysel.value = ydim;
}
if (ydim === xdim) { ydim = axes.find((a) => a !== xdim) || ''; ysel.value = ydim; }
const dims = A.dims, shape = A.shape, data = A.data, st = dims.map((dd) => meta.strides[dd]);
const stride = new Array(dims.length); let acc = 1;
for (let k = dims.length - 1; k >= 0; k--) { stride[k] = acc; acc *= shape[k]; }
const fixed = {}, reduce = {}; let base = 0; const red = [];
for (let k = 0; k < dims.length; k++) {
  const dd = dims[k]; if (dd === xdim || dd === ydim) continue;
  const opts = meta.options[dd], opt = sels[dd] ? sels[dd].value : opts[0];   // a 1-long dim has no selector
  if (dd === 'seed' && ['mean', 'min', 'max'].includes(opt)) { reduce[dd] = opt; red.push(k); continue; }
  const i = opts.indexOf(opt) - (dd === 'seed' ? 3 : 0);   // the options are the embedded values
  base += i * stride[k]; fixed[dd] = meta.coords[dd][i];
}
const kx = dims.indexOf(xdim), ky = ydim ? dims.indexOf(ydim) : -1;
const nx = shape[kx], ny = ky >= 0 ? shape[ky] : 1;
const nred = red.reduce((a, k) => a * shape[k], 1), how = Object.values(reduce)[0];
const image = new Float32Array(nx * ny);
for (let r = 0; r < ny; r++) for (let c = 0; c < nx; c++) {
  const o = base + c * stride[kx] + (ky >= 0 ? r * stride[ky] : 0);
  let s = 0, cnt = 0, mn = Infinity, mx = -Infinity;
  for (let q = 0; q < nred; q++) {
    let off = o, rem = q;
    for (let j = red.length - 1; j >= 0; j--) { const k = red[j]; off += (rem % shape[k]) * stride[k]; rem = Math.floor(rem / shape[k]); }
    const z = data[off]; if (isFinite(z)) { s += z; cnt++; mn = Math.min(mn, z); mx = Math.max(mx, z); }
  }
  image[r * nx + c] = cnt === 0 ? NaN : (how === 'min' ? mn : how === 'max' ? mx : s / cnt);
}
const xi = [], yi = [];
for (let c = 0; c < nx; c++) xi.push(c * st[kx]);
for (let r = 0; r < ny; r++) yi.push(ky >= 0 ? r * st[ky] : 0);
const xv = meta.coords[xdim].slice(0, nx), yv = ky >= 0 ? meta.coords[ydim].slice(0, ny) : [0];
const {ndarray} = Bokeh.require('core/util/ndarray');   // the image glyph takes a 2-D ndarray
img.data = {image: [ndarray(image, {dtype: 'float32', shape: [ny, nx]})], 'var': [v], xdim: [xdim], ydim: [ydim],
            xv: [xv], yv: [yv], xi: [xi], yi: [yi], fixed: [JSON.stringify(fixed)], reduce: [JSON.stringify(reduce)]};
"""

_JS_STATIC_CURVES = r"""
const d = img.data, xdim = d.xdim[0], ydim = d.ydim[0];
if (!store.curves) { pointnote.text = 'Curves of this many models are left out of the static page; run dynsim view DIR.'; return; }
const idx = {};
for (const dd of store.curves.grid) {
  if (dd === xdim) idx[dd] = d.xi[0][tap.data.xi[0]];
  else if (dd === ydim) idx[dd] = d.yi[0][tap.data.yi[0]];
  else idx[dd] = sels[dd] ? meta.options[dd].indexOf(sels[dd].value) * meta.strides[dd] : 0;
}
const key = store.curves.grid.map((dd) => idx[dd]).join(',');
const cols = store.curves.table[key];
if (cols) { curves.data = cols.curves; hessian.data = cols.hessian; for (const f of curvefigs) f.visible = true;
  pointnote.text = 'curves at ' + store.curves.grid.map((dd) => dd + '=' + fmt(meta.coords[dd][idx[dd] / meta.strides[dd]])).join(', '); }
"""


def build(page: PageData, *, live: bool = False):
    """The page's bokeh layout and its named models (``{"layout", "img", "tap", ...}``).

    ``live=False`` makes a static page (the browser slices embedded arrays); ``live=True``
    leaves the slicing and the click panels to the caller's Python callbacks (:func:`serve`).
    """
    from bokeh.layouts import column, row
    from bokeh.models import (ColorBar, ColumnDataSource, CustomJS, CustomJSTickFormatter, Div,
                              LinearColorMapper, Select, TapTool)
    from bokeh.palettes import Viridis256
    from bokeh.plotting import figure

    ds = page.ds
    var = page.default_var()
    xdim, ydim = page.default_axes(var)
    sel0 = page.default_selection()
    if live == page.static:
        raise ValueError("build(live=True) needs a PageData(static=False), and live=False a static one")
    # the static page's first image is the one its JavaScript computes from the embedded arrays
    init = page.slice2d(var, xdim, ydim, sel0)
    store = None if live else page.embedded()
    img = ColumnDataSource(init, name="img")
    tap = ColumnDataSource({"xi": [-1], "yi": [-1]}, name="tap")
    mark = ColumnDataSource({"x": [], "y": []}, name="mark")
    line = ColumnDataSource({"x": [], "y": []}, name="line")
    exact = ColumnDataSource({"x": [], "y": []}, name="exact")
    flipsrc = ColumnDataSource({"x": [], "y": []}, name="flip")
    loc = ColumnDataSource({"x": [], "y": []}, name="located")

    cmap = LinearColorMapper(palette=Viridis256, nan_color="#dddddd")
    nx, ny = len(init["xv"][0]), len(init["yv"][0])
    fig = figure(name="heatmap", width=620, height=520, tools="tap,pan,wheel_zoom,box_zoom,reset,save",
                 toolbar_location="above", x_range=(-0.5, nx - 0.5), y_range=(-0.5, ny - 0.5))
    heat = fig.image(image="image", x=-0.5, y=-0.5, dw=nx, dh=ny, color_mapper=cmap, source=img)
    fig.add_layout(ColorBar(color_mapper=cmap, width=12), "right")
    sa_quad = page.kind == "landscape" and page.config.get("optimizer") in _SA_RULES \
        and page.config.get("landscape") == "quadratic"
    if sa_quad:  # the closed forms exist only there
        fig.line("x", "y", source=exact, color="black", line_dash="dashed", line_width=2, legend_label="exact σ*")
        fig.line("x", "y", source=flipsrc, color="red", line_dash="dotted", line_width=2,
                 legend_label="flip boundary")
    fig.scatter("x", "y", source=loc, color="white", size=5, line_color="black",
                legend_label="located" if page.located is not None else "grid optimum")
    fig.scatter("x", "y", source=mark, marker="cross", color="red", size=16, line_width=3)
    legend = fig.legend[0]
    legend.orientation = "horizontal"
    fig.add_layout(legend, "below")  # beside the data, not over it
    fig.select(TapTool).behavior = "inspect"  # taps report the point; nothing gets "selected"
    fig.xaxis[0].formatter = CustomJSTickFormatter(code=_JS_TICKS, args={"img": img, "axis": "xv"})
    fig.yaxis[0].formatter = CustomJSTickFormatter(code=_JS_TICKS, args={"img": img, "axis": "yv"})

    linefig = figure(name="linefig", width=520, height=300, tools="pan,wheel_zoom,reset,save",
                     toolbar_location="above")
    linefig.line("x", "y", source=line, line_width=2)
    linefig.scatter("x", "y", source=line, size=3)
    linefig.xaxis[0].formatter = CustomJSTickFormatter(code=_JS_TICKS, args={"img": img, "axis": "xv"})

    varsel = Select(title="variable", value=var, options=page.variables, name="sel-var")
    axes = page.axes_of(var)
    xsel = Select(title="x", value=xdim, options=axes, name="sel-x")
    ysel = Select(title="y", value=ydim or "", options=axes if len(axes) > 1 else [""], name="sel-y")
    alongsel = Select(title="line along", value="x", options=["x", "y"], name="sel-along")
    sels = {d: Select(title=d, value=sel0[d], options=page.options[d], name=f"sel-{d}")
            for d in page.dims if ds.sizes[d] > 1 or d == "seed"}
    note = Div(text="", name="note", width=600)
    pointnote = Div(text="Click a cell of the heatmap.", name="pointnote", width=520)

    located = None
    if page.located is not None and len(page.located):
        located = {c: [None if (isinstance(x, float) and not np.isfinite(x)) else x
                       for x in page.located[c].tolist()] for c in page.located.columns}
    meta = {"config": {"fixed": page.config.get("fixed", {}),
                       "landscape_params": page.config.get("landscape_params", {}) or {}},
            "sa_quadratic": bool(sa_quad), "located": located, "kind": page.kind,
            "options": page.options, "axes": {v: page.axes_of(v) for v in page.variables},
            "coords": {d: [float(_value(ds, d, i)) for i in page.indices(d)] for d in page.dims},
            "strides": page.strides}
    update = CustomJS(code=_JS_UPDATE, args=dict(img=img, heat=heat, fig=fig, cmap=cmap, tap=tap, mark=mark,
                                                 line=line, linefig=linefig, alongsel=alongsel, exact=exact,
                                                 flipsrc=flipsrc, loc=loc, note=note, meta=meta, sels=sels,
                                                 xaxis=fig.xaxis[0], yaxis=fig.yaxis[0], lxaxis=linefig.xaxis[0],
                                                 lyaxis=linefig.yaxis[0]))
    img.js_on_change("data", update)
    tap.js_on_change("data", update)
    alongsel.js_on_change("value", update)
    fig.js_on_event("tap", CustomJS(code="tap.data = {xi: [Math.round(cb_obj.x)], yi: [Math.round(cb_obj.y)]};",
                                    args={"tap": tap}))

    # click panels: trajectories (landscape, server only) or curves (training)
    traj_loss = ColumnDataSource({"step": [], "loss": []}, name="traj-loss")
    traj_phase = ColumnDataSource({"x": [], "y": []}, name="traj-phase")
    panels = []
    if page.kind == "landscape":
        f1 = figure(name="trajfig", width=420, height=300, y_axis_type="log", title="loss along the run",
                    x_axis_label="step", y_axis_label="L(θ) − L*", visible=False, toolbar_location="above")
        f1.line("step", "loss", source=traj_loss, line_width=2)
        f2 = figure(name="phasefig", width=420, height=300, title="phase portrait", visible=False,
                    toolbar_location="above")
        f2.line("x", "y", source=traj_phase, line_width=1)
        f2.scatter("x", "y", source=traj_phase, size=2)
        panels = [f1, f2]
        if not live:
            pointnote.text = ("Live trajectories need Python: run <code>dynsim view DIR</code>. "
                              "Clicking a cell moves the line plot here.")
    curves = ColumnDataSource({"step": []}, name="curves")
    hessian = ColumnDataSource({"step": []}, name="hessian")
    curvefigs = []
    if page.kind == "train":
        n_seed = ds.sizes["seed"]
        palette = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"]
        empty = page.curves({d: 0 for d in page.config.get("grid", {}) if d in ds.dims})
        curves.data = {k: v[:0] for k, v in empty["curves"].items()}
        hessian.data = {k: v[:0] for k, v in empty["hessian"].items()}
        for title, src, vs in (("loss", curves, ("train_loss", "test_loss")),
                               ("accuracy", curves, ("train_accuracy", "test_accuracy")),
                               ("sharpness", hessian, ("sharpness",))):
            vs = [v for v in vs if f"{v}_0" in src.data]
            if not vs:
                continue
            f = figure(name=f"curve-{title}", width=420, height=280, title=f"{title} (seed 0 solid, others dashed)",
                       x_axis_label="step", visible=False, toolbar_location="above")
            for j, v in enumerate(vs):
                for s in range(n_seed):
                    f.line("step", f"{v}_{s}", source=src, color=palette[j % len(palette)],
                           line_dash="solid" if s == 0 else "dashed", legend_label=v)
                    if src is hessian:
                        f.scatter("step", f"{v}_{s}", source=src, color=palette[j % len(palette)], size=4)
            if title == "sharpness":
                f.line("step", "threshold", source=hessian, color="black", line_dash="dotted",
                       legend_label="2(1+μ)/(η(1+2σ))")
            f.legend.location = "top_left"
            f.legend.label_text_font_size = "8pt"
            f.legend.background_fill_alpha = 0.5
            curvefigs.append(f)
        panels = curvefigs
    if not live:
        slice_cb = CustomJS(code=_JS_STATIC_SLICE, args=dict(store=store, meta=meta, img=img, varsel=varsel,
                                                             xsel=xsel, ysel=ysel, sels=sels))
        for w in (varsel, xsel, ysel, *sels.values()):
            w.js_on_change("value", slice_cb)
        if page.kind == "train":
            cb = CustomJS(code=_JS_COMMON + _JS_STATIC_CURVES,
                          args=dict(store={"curves": store["curves"]}, meta=meta, img=img, tap=tap, sels=sels,
                                    curves=curves, hessian=hessian, curvefigs=curvefigs, pointnote=pointnote))
            tap.js_on_change("data", cb)

    header = Div(text=_header(page), name="header", width=1100)
    controls = column(varsel, xsel, ysel, alongsel, *sels.values(), width=200)
    layout = column(header, row(controls, column(fig, note), column(linefig, pointnote)), row(*panels))
    models = dict(layout=layout, img=img, tap=tap, fig=fig, varsel=varsel, xsel=xsel, ysel=ysel, sels=sels,
                  traj_loss=traj_loss, traj_phase=traj_phase, panels=panels, pointnote=pointnote, curves=curves,
                  hessian=hessian,
                  update=update)
    return models


def _document(models):
    """A bokeh Document holding the page; the overlays and the line are drawn once it is ready."""
    from bokeh.document import Document

    doc = Document()
    doc.add_root(models["layout"])
    doc.js_on_event("document_ready", models["update"])
    doc.title = "dynsim view"
    return doc


def _header(page: PageData) -> str:
    ds = page.ds
    what = (f"training sweep: {ds.attrs.get('model', '?')} on {ds.attrs.get('dataset', '?')}, "
            f"{ds.attrs.get('optimizer', '?')}" if page.kind == "train"
            else f"landscape sweep: {page.config.get('optimizer', '?')} on {page.config.get('landscape', '?')}, "
                 f"{page.config.get('steps', '?')} steps")
    dims = " × ".join(f"{d} {n}" for d, n in ds.sizes.items())
    fixed = ", ".join(f"{k}={_fmt(v)}" for k, v in page.fixed.items())
    done = "" if ds.attrs.get("complete", True) else " <b>(incomplete: missing chunks show as NaN)</b>"
    return f"<b>dynsim view</b> — {what}; {dims}{'; fixed ' + fixed if fixed else ''}{done}"


# --------------------------------------------------------------------------- entry points


def _open(src):
    """``(dataset, located table or None, label)`` from a store directory or a dataset."""
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


def save_html(src, path, *, title: str | None = None) -> pathlib.Path:
    """Write the static page of a store (or dataset) to ``path``: one file, inline resources, no server.

    The selectors and the line plot work; landscape trajectories are left out (they are
    computed live by :func:`serve`); training curves are embedded when they fit.
    """
    from bokeh.embed import file_html
    from bokeh.resources import INLINE

    ds, located, label = _open(src)
    page = PageData(ds, located, static=True)
    models = build(page, live=False)
    path = pathlib.Path(path)
    html = file_html(_document(models), INLINE, title=title or f"dynsim view: {label}")
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(html, encoding="utf-8")
    tmp.replace(path)
    return path


class _Shown:
    """What :func:`view` returns: displays the static page inline in a notebook."""

    def __init__(self, html: str, models):
        self.html, self.models = html, models

    def _repr_html_(self) -> str:
        import html as _html

        return (f'<iframe srcdoc="{_html.escape(self.html, quote=True)}" '
                'style="width:100%;height:900px;border:0"></iframe>')


def view(src):
    """Show a result in a notebook: ``dynsim.view(ds)`` or ``dynsim.view("DIR")``.

    Returns an object that renders the static page inline (Jupyter calls its
    ``_repr_html_``); its ``models`` are the bokeh models of the page.
    """
    from bokeh.embed import file_html
    from bokeh.resources import INLINE

    ds, located, label = _open(src)
    models = build(PageData(ds, located, static=True), live=False)
    return _Shown(file_html(_document(models), INLINE, title=f"dynsim view: {label}"), models)


def _make_doc(page: PageData):
    """The server's per-browser-tab document builder (Python callbacks)."""

    def make(doc):
        m = build(page, live=True)
        img, tap = m["img"], m["tap"]
        state = {}

        def selection():
            return {d: s.value for d, s in m["sels"].items()}

        def redraw(attr=None, old=None, new=None, who=None):
            var = m["varsel"].value
            axes = page.axes_of(var)
            x, y = m["xsel"].value, m["ysel"].value or None
            if who == "var":
                m["xsel"].options = axes
                m["ysel"].options = axes if len(axes) > 1 else [""]
                if x not in axes:
                    x = axes[0]
                if y not in axes or y == x:
                    y = next((a for a in axes if a != x), None)
            if y == x:
                y = next((a for a in axes if a != x), None)
            state["busy"] = True
            m["xsel"].value, m["ysel"].value = x, y or ""
            state["busy"] = False
            img.data = page.slice2d(var, x, y, selection())

        def on_widget(who):
            def cb(attr, old, new):
                if not state.get("busy"):
                    redraw(who=who)
            return cb

        m["varsel"].on_change("value", on_widget("var"))
        for w in (m["xsel"], m["ysel"], *m["sels"].values()):
            w.on_change("value", on_widget("axis"))

        def on_tap(attr, old, new):
            xi, yi = tap.data["xi"][0], tap.data["yi"][0]
            d = img.data
            xs, ys = d["xi"][0], d["yi"][0]
            if not (0 <= xi < len(xs) and 0 <= yi < len(ys)):
                return
            ydim = d["ydim"][0] or None
            idx = page.point(d["xdim"][0], ydim, xs[xi], ys[yi] if ydim else 0, selection())
            try:
                if page.kind == "landscape":
                    t = page.trajectory(idx)
                    m["traj_loss"].data = t["loss"]
                    m["traj_phase"].data = t["phase"]
                    f1, f2 = m["panels"]
                    f2.xaxis[0].axis_label, f2.yaxis[0].axis_label = t["labels"][:2]
                    m["pointnote"].text = f"trajectory at {t['labels'][2]} (dynsim.simulate, live)"
                else:
                    c = page.curves(idx)
                    m["curves"].data, m["hessian"].data = c["curves"], c["hessian"]
                    m["pointnote"].text = "curves at " + ", ".join(
                        f"{k}={_fmt(_value(page.ds, k, i))}" for k, i in idx.items()
                        if k in page.config.get("grid", {}))
                for f in m["panels"]:
                    f.visible = True
            except Exception as e:  # a point that cannot be rebuilt: say why on the page
                m["pointnote"].text = f"cannot show this point: {type(e).__name__}: {e}"

        tap.on_change("data", on_tap)
        doc.add_root(m["layout"])
        doc.js_on_event("document_ready", m["update"])
        doc.title = "dynsim view"

    return make


def serve(src, *, port: int = 0, address: str = "127.0.0.1", open_browser: bool = True,
          announce=print) -> int:
    """Serve the live page of a store on ``address:port`` (0: a free port) until Ctrl-C.

    Prints the URL through ``announce``; returns 0 after a clean shutdown.
    """
    from bokeh.application import Application
    from bokeh.application.handlers.function import FunctionHandler
    from bokeh.server.server import Server

    ds, located, _ = _open(src)
    page = PageData(ds, located)
    if port == 0:  # a free port, named in the websocket origins (bokeh refuses a wildcard port)
        import socket

        with socket.socket() as sock:
            sock.bind((address, 0))
            port = sock.getsockname()[1]
    try:
        server = Server({"/": Application(FunctionHandler(_make_doc(page)))}, port=port, address=address,
                        allow_websocket_origin=[f"{address}:{port}", f"localhost:{port}"])
    except OSError as e:  # the port is taken, or the address is not this machine's
        raise ValueError(f"cannot listen on {address}:{port} ({e.strerror or e})") from None
    server.start()
    url = f"http://{address}:{server.port}/"
    announce(f"dynsim view: serving {src} at {url} (Ctrl-C stops)")
    if open_browser:
        server.io_loop.add_callback(server.show, "/")
    try:
        server.io_loop.start()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


class _CallableModule(type(json)):
    """``dynsim.view`` is this module and :func:`view` at once: ``dynsim.view(ds)`` in a notebook,
    ``dynsim.view.save_html(...)`` in a script (a submodule import would otherwise shadow the function)."""

    def __call__(self, src):
        return view(src)


import sys as _sys  # noqa: E402

_sys.modules[__name__].__class__ = _CallableModule
