"""The page itself: bokeh models of the heatmap, the line plot, the selectors and the click
panels, wired to the JavaScript of :mod:`dynsim.view.js`; the same models for the server's
page and the static one.

Every model a test needs is named (``name=``), so a browser test reads the plotted data
through ``Bokeh.documents``.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from dynsim.view.js import JS_COMMON, JS_STATIC_CURVES, JS_STATIC_SLICE, JS_TICKS, JS_UPDATE
from dynsim.view.page_data import SA_RULES, PageData, coord_value, fmt

__all__ = ["build", "document", "header"]

_PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"]


def _heatmap(page: PageData, src: dict[str, Any], nx: int, ny: int, sa_quad: bool):
    """The heatmap figure with its colour bar, overlays and tap marker; ``(fig, heat, cmap)``."""
    from bokeh.models import CustomJSTickFormatter, LinearColorMapper, TapTool
    from bokeh.models.annotations import ColorBar  # the same class; bokeh.models' stubs omit it
    from bokeh.palettes import Viridis256
    from bokeh.plotting import figure

    cmap = LinearColorMapper(palette=Viridis256, nan_color="#dddddd")
    # bokeh's stubs are narrower than bokeh: ranges may be (start, end) tuples, image() takes a colour mapper
    fig = figure(name="heatmap", width=620, height=520, tools="tap,pan,wheel_zoom,box_zoom,reset,save",
                 toolbar_location="above",
                 x_range=(-0.5, nx - 0.5), y_range=(-0.5, ny - 0.5))  # type: ignore[arg-type]
    heat = fig.image(image="image", x=-0.5, y=-0.5, dw=nx, dh=ny,
                     color_mapper=cmap, source=src["img"])  # type: ignore[call-arg]
    fig.add_layout(ColorBar(color_mapper=cmap, width=12), "right")
    if sa_quad:  # the closed forms exist only there
        fig.line("x", "y", source=src["exact"], color="black", line_dash="dashed", line_width=2,
                 legend_label="exact σ*")
        fig.line("x", "y", source=src["flipsrc"], color="red", line_dash="dotted", line_width=2,
                 legend_label="flip boundary")
    fig.scatter("x", "y", source=src["loc"], color="white", size=5, line_color="black",
                legend_label="located" if page.located is not None else "grid optimum")
    fig.scatter("x", "y", source=src["mark"], marker="cross", color="red", size=16, line_width=3)
    legend = fig.legend[0]
    legend.orientation = "horizontal"
    fig.add_layout(legend, "below")  # beside the data, not over it
    for tool in fig.select(TapTool):
        assert isinstance(tool, TapTool)
        tool.behavior = "inspect"  # taps report the point; nothing gets "selected"
    fig.xaxis[0].formatter = CustomJSTickFormatter(code=JS_TICKS, args={"img": src["img"], "axis": "xv"})
    fig.yaxis[0].formatter = CustomJSTickFormatter(code=JS_TICKS, args={"img": src["img"], "axis": "yv"})
    return fig, heat, cmap


def _line_figure(src: dict[str, Any]):
    """The line plot through the tapped cell, along either heatmap axis."""
    from bokeh.models import CustomJSTickFormatter
    from bokeh.plotting import figure

    linefig = figure(name="linefig", width=520, height=300, tools="pan,wheel_zoom,reset,save",
                     toolbar_location="above")
    linefig.line("x", "y", source=src["line"], line_width=2)
    linefig.scatter("x", "y", source=src["line"], size=3)
    linefig.xaxis[0].formatter = CustomJSTickFormatter(code=JS_TICKS, args={"img": src["img"], "axis": "xv"})
    return linefig


def _options(values) -> list[str | tuple[Any, str]]:
    """``values`` as a Select's options: a list of the element type bokeh's stubs name."""
    return list(values)


def _widgets(page: PageData, var: str, xdim: str, ydim: str | None) -> dict[str, Any]:
    """The selectors (variable, axes, line direction, one per other dimension) and the two notes."""
    from bokeh.models.widgets import Div, Select  # the same classes; bokeh.models' stubs omit them

    sel0 = page.default_selection()
    axes = page.axes_of(var)
    return {
        "varsel": Select(title="variable", value=var, options=_options(page.variables), name="sel-var"),
        "xsel": Select(title="x", value=xdim, options=_options(axes), name="sel-x"),
        "ysel": Select(title="y", value=ydim or "", options=_options(axes if len(axes) > 1 else [""]), name="sel-y"),
        "alongsel": Select(title="line along", value="x", options=_options(["x", "y"]), name="sel-along"),
        "sels": {d: Select(title=d, value=sel0[d], options=_options(page.options[d]), name=f"sel-{d}")
                 for d in page.dims if page.ds.sizes[d] > 1 or d == "seed"},
        "note": Div(text="", name="note", width=600),
        "pointnote": Div(text="Click a cell of the heatmap.", name="pointnote", width=520),
    }


def _meta(page: PageData, sa_quad: bool) -> dict[str, Any]:
    """What the page's JavaScript needs to know of the result, as JSON-able values."""
    located = None
    if page.located is not None and len(page.located):
        located = {c: [None if (isinstance(x, float) and not np.isfinite(x)) else x
                       for x in page.located[c].tolist()] for c in page.located.columns}
    return {"config": {"fixed": page.config.get("fixed", {}),
                       "landscape_params": page.config.get("landscape_params", {}) or {}},
            "sa_quadratic": bool(sa_quad), "located": located, "kind": page.kind,
            "options": page.options, "axes": {v: page.axes_of(v) for v in page.variables},
            "coords": {d: [float(coord_value(page.ds, d, i)) for i in page.indices(d)] for d in page.dims},
            "strides": page.strides}


def _trajectory_panels(src: dict[str, Any], live: bool, pointnote) -> list:
    """A landscape point's panels: its loss along the run and its phase portrait (filled live)."""
    from bokeh.plotting import figure

    f1 = figure(name="trajfig", width=420, height=300, y_axis_type="log", title="loss along the run",
                x_axis_label="step", y_axis_label="L(θ) − L*", visible=False, toolbar_location="above")
    f1.line("step", "loss", source=src["traj_loss"], line_width=2)
    f2 = figure(name="phasefig", width=420, height=300, title="phase portrait", visible=False,
                toolbar_location="above")
    f2.line("x", "y", source=src["traj_phase"], line_width=1)
    f2.scatter("x", "y", source=src["traj_phase"], size=2)
    if not live:
        pointnote.text = ("Live trajectories need Python: run <code>dynsim view DIR</code>. "
                          "Clicking a cell moves the line plot here.")
    return [f1, f2]


def _curve_panels(page: PageData, curves, hessian) -> list:
    """A training point's panels: losses, accuracies and sharpness over steps, one line per seed."""
    from bokeh.plotting import figure

    ds = page.ds
    n_seed = ds.sizes["seed"]
    empty = page.curves({d: 0 for d in page.config.get("grid", {}) if d in ds.dims})
    curves.data = {k: v[:0] for k, v in empty["curves"].items()}
    hessian.data = {k: v[:0] for k, v in empty["hessian"].items()}
    curvefigs = []
    for title, src, names in (("loss", curves, ("train_loss", "test_loss")),
                           ("accuracy", curves, ("train_accuracy", "test_accuracy")),
                           ("sharpness", hessian, ("sharpness",))):
        vs = [v for v in names if f"{v}_0" in src.data]
        if not vs:
            continue
        f = figure(name=f"curve-{title}", width=420, height=280, title=f"{title} (seed 0 solid, others dashed)",
                   x_axis_label="step", visible=False, toolbar_location="above")
        for j, v in enumerate(vs):
            for s in range(n_seed):
                f.line("step", f"{v}_{s}", source=src, color=_PALETTE[j % len(_PALETTE)],
                       line_dash="solid" if s == 0 else "dashed", legend_label=v)
                if src is hessian:
                    f.scatter("step", f"{v}_{s}", source=src, color=_PALETTE[j % len(_PALETTE)], size=4)
        if title == "sharpness":
            f.line("step", "threshold", source=hessian, color="black", line_dash="dotted",
                   legend_label="2(1+μ)/(η(1+2σ))")
        f.legend.location = "top_left"
        f.legend.label_text_font_size = "8pt"
        f.legend.background_fill_alpha = 0.5
        curvefigs.append(f)
    return curvefigs


def build(page: PageData, *, live: bool = False):
    """The page's bokeh layout and its named models (``{"layout", "img", "tap", ...}``).

    ``live=False`` makes a static page (the browser slices embedded arrays); ``live=True``
    leaves the slicing and the click panels to the caller's Python callbacks
    (:func:`dynsim.view.serve`).
    """
    from bokeh.layouts import column, row
    from bokeh.models import ColumnDataSource, CustomJS
    from bokeh.models.widgets import Div  # the same class; bokeh.models' stubs omit it

    if live == page.static:
        raise ValueError("build(live=True) needs a PageData(static=False), and live=False a static one")
    var = page.default_var()
    xdim, ydim = page.default_axes(var)
    # the static page's first image is the one its JavaScript computes from the embedded arrays
    init = page.slice2d(var, xdim, ydim, page.default_selection())
    store = None if live else page.embedded()
    src = {"img": ColumnDataSource(init, name="img"), "tap": ColumnDataSource({"xi": [-1], "yi": [-1]}, name="tap")}
    for key, name in (("mark", "mark"), ("line", "line"), ("exact", "exact"), ("flipsrc", "flip"), ("loc", "located")):
        src[key] = ColumnDataSource({"x": [], "y": []}, name=name)
    img, tap = src["img"], src["tap"]
    sa_quad = page.kind == "landscape" and page.config.get("optimizer") in SA_RULES \
        and page.config.get("landscape") == "quadratic"
    fig, heat, cmap = _heatmap(page, src, len(init["xv"][0]), len(init["yv"][0]), sa_quad)
    linefig = _line_figure(src)
    w = _widgets(page, var, xdim, ydim)
    sels = w["sels"]
    meta = _meta(page, sa_quad)
    update = CustomJS(code=JS_UPDATE, args=dict(
        img=img, heat=heat, fig=fig, cmap=cmap, tap=tap, mark=src["mark"], line=src["line"], linefig=linefig,
        alongsel=w["alongsel"], exact=src["exact"], flipsrc=src["flipsrc"], loc=src["loc"], note=w["note"],
        meta=meta, sels=sels, xaxis=fig.xaxis[0], yaxis=fig.yaxis[0], lxaxis=linefig.xaxis[0],
        lyaxis=linefig.yaxis[0]))
    img.js_on_change("data", update)
    tap.js_on_change("data", update)
    w["alongsel"].js_on_change("value", update)
    fig.js_on_event("tap", CustomJS(code="tap.data = {xi: [Math.round(cb_obj.x)], yi: [Math.round(cb_obj.y)]};",
                                    args={"tap": tap}))

    # click panels: trajectories (landscape, server only) or curves (training)
    traj = {"traj_loss": ColumnDataSource({"step": [], "loss": []}, name="traj-loss"),
            "traj_phase": ColumnDataSource({"x": [], "y": []}, name="traj-phase")}
    panels = _trajectory_panels(traj, live, w["pointnote"]) if page.kind == "landscape" else []
    curves = ColumnDataSource({"step": []}, name="curves")
    hessian = ColumnDataSource({"step": []}, name="hessian")
    curvefigs = _curve_panels(page, curves, hessian) if page.kind == "train" else []
    if page.kind == "train":
        panels = curvefigs
    if not live:
        assert store is not None  # page.embedded() above
        slice_cb = CustomJS(code=JS_STATIC_SLICE, args=dict(store=store, meta=meta, img=img, varsel=w["varsel"],
                                                            xsel=w["xsel"], ysel=w["ysel"], sels=sels))
        for widget in (w["varsel"], w["xsel"], w["ysel"], *sels.values()):
            widget.js_on_change("value", slice_cb)
        if page.kind == "train":
            cb = CustomJS(code=JS_COMMON + JS_STATIC_CURVES,
                          args=dict(store={"curves": store["curves"]}, meta=meta, img=img, tap=tap, sels=sels,
                                    curves=curves, hessian=hessian, curvefigs=curvefigs, pointnote=w["pointnote"]))
            tap.js_on_change("data", cb)

    head = Div(text=header(page), name="header", width=1100)
    controls = column(w["varsel"], w["xsel"], w["ysel"], w["alongsel"], *sels.values(), width=200)
    layout = column(head, row(controls, column(fig, w["note"]), column(linefig, w["pointnote"])), row(*panels))
    return dict(layout=layout, img=img, tap=tap, fig=fig, varsel=w["varsel"], xsel=w["xsel"], ysel=w["ysel"],
                sels=sels, traj_loss=traj["traj_loss"], traj_phase=traj["traj_phase"], panels=panels,
                pointnote=w["pointnote"], curves=curves, hessian=hessian, update=update)


def document(models):
    """A bokeh Document holding the page; the overlays and the line are drawn once it is ready."""
    from bokeh.document import Document

    doc = Document()
    doc.add_root(models["layout"])
    doc.js_on_event("document_ready", models["update"])
    doc.title = "dynsim view"
    return doc


def header(page: PageData) -> str:
    """The line above the page: what was swept, over which dimensions, and what was held fixed."""
    ds = page.ds
    what = (f"training sweep: {ds.attrs.get('model', '?')} on {ds.attrs.get('dataset', '?')}, "
            f"{ds.attrs.get('optimizer', '?')}" if page.kind == "train"
            else f"landscape sweep: {page.config.get('optimizer', '?')} on {page.config.get('landscape', '?')}, "
                 f"{page.config.get('steps', '?')} steps")
    dims = " × ".join(f"{d} {n}" for d, n in ds.sizes.items())
    fixed = ", ".join(f"{k}={fmt(v)}" for k, v in page.fixed.items())
    done = "" if ds.attrs.get("complete", True) else " <b>(incomplete: missing chunks show as NaN)</b>"
    return f"<b>dynsim view</b> — {what}; {dims}{'; fixed ' + fixed if fixed else ''}{done}"
