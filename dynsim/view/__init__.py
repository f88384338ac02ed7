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
transports this package uses with the same models: a server with Python callbacks (the live
trajectories, slices read lazily from the store) and a static document with ``CustomJS``
callbacks and inline resources (no network). The same JavaScript draws the overlays and
the line plot in both, so the two pages cannot drift apart. Every model a test needs is
named (``name=``), so a browser test reads the plotted data through ``Bokeh.documents``.

The modules: :mod:`~dynsim.view.page_data` (what the page shows: slices, clicks, embedded
arrays; no bokeh), :mod:`~dynsim.view.js` (the page's JavaScript), :mod:`~dynsim.view.page`
(the bokeh models), :mod:`~dynsim.view.static` (the self-contained file, the notebook view)
and :mod:`~dynsim.view.server` (the live page).
"""
from __future__ import annotations

import sys
import types

from dynsim.view.page import build
from dynsim.view.page_data import (
    MAX_AXIS,
    MAX_CURVE,
    MAX_TRAJ_POINTS,
    MAX_TRAJ_STEPS,
    STATIC_CELLS,
    STATIC_CURVE_BUDGET,
    PageData,
)
from dynsim.view.server import serve
from dynsim.view.static import save_html, view

__all__ = ["view", "build", "save_html", "serve", "PageData", "MAX_AXIS", "STATIC_CELLS", "MAX_CURVE",
           "STATIC_CURVE_BUDGET", "MAX_TRAJ_STEPS", "MAX_TRAJ_POINTS"]


class _CallableModule(types.ModuleType):
    """``dynsim.view`` is this package and :func:`view` at once: ``dynsim.view(ds)`` in a notebook,
    ``dynsim.view.save_html(...)`` in a script (a submodule import would otherwise shadow the function)."""

    def __call__(self, src):
        return view(src)


sys.modules[__name__].__class__ = _CallableModule
