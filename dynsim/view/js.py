"""The page's JavaScript: run in the browser, by the server's page and the static one alike.

``JS_UPDATE`` draws the overlays and the line plot on every image update, in both pages, so
the two cannot drift apart; ``JS_TICKS`` labels the heatmap's axes with coordinates; the
static page alone slices its embedded arrays (``JS_STATIC_SLICE``, the server does this in
Python) and looks up a clicked point's curves (``JS_STATIC_CURVES``).
"""

__all__ = ["JS_COMMON", "JS_UPDATE", "JS_TICKS", "JS_STATIC_SLICE", "JS_STATIC_CURVES"]

# Shared helpers: number formatting, and a value's fractional index along a coordinate list.
JS_COMMON = r"""
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
JS_UPDATE = JS_COMMON + r"""
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
    for (const [k, u] of Object.entries(fixed))
      if (k in L && Math.abs(L[k][i] - u) > 1e-9 * Math.max(1, Math.abs(u))) ok = false;
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
  (ox.length ? 'dashed: exact σ* = (μ − (1 − √kη)²)/kη; dotted: flip boundary σ = (1+μ)/kη − ½ (μ = ' +
               fmt(mu) + ').' : '');
"""

JS_TICKS = JS_COMMON + r"""
const vals = img.data[axis][0]; const i = Math.round(tick);
return (i >= 0 && i < vals.length && Math.abs(tick - i) < 1e-6) ? fmt(vals[i]) : '';
"""

# The static page slices the embedded arrays itself (the server does this in Python).
JS_STATIC_SLICE = r"""
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
    for (let j = red.length - 1; j >= 0; j--) {
      const k = red[j]; off += (rem % shape[k]) * stride[k]; rem = Math.floor(rem / shape[k]);
    }
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

JS_STATIC_CURVES = r"""
const d = img.data, xdim = d.xdim[0], ydim = d.ydim[0];
if (!store.curves) {
  pointnote.text = 'Curves of this many models are left out of the static page; run dynsim view DIR.'; return;
}
const idx = {};
for (const dd of store.curves.grid) {
  if (dd === xdim) idx[dd] = d.xi[0][tap.data.xi[0]];
  else if (dd === ydim) idx[dd] = d.yi[0][tap.data.yi[0]];
  else idx[dd] = sels[dd] ? meta.options[dd].indexOf(sels[dd].value) * meta.strides[dd] : 0;
}
const key = store.curves.grid.map((dd) => idx[dd]).join(',');
const cols = store.curves.table[key];
if (cols) { curves.data = cols.curves; hessian.data = cols.hessian; for (const f of curvefigs) f.visible = true;
  pointnote.text = 'curves at ' +
    store.curves.grid.map((dd) => dd + '=' + fmt(meta.coords[dd][idx[dd] / meta.strides[dd]])).join(', '); }
"""

