"""The static page: one self-contained HTML file (inline resources, no server), written by
:func:`save_html` or shown inline in a notebook by :func:`view`.

The browser slices the embedded arrays itself; landscape trajectories need Python and are
left out; training curves are embedded when they fit.
"""
from __future__ import annotations

import pathlib

from dynsim.view.page import build, document
from dynsim.view.page_data import PageData, open_source

__all__ = ["save_html", "view"]


def save_html(src, path, *, title: str | None = None) -> pathlib.Path:
    """Write the static page of a store (or dataset) to ``path``: one file, inline resources, no server.

    The selectors and the line plot work; landscape trajectories are left out (they are
    computed live by :func:`dynsim.view.serve`); training curves are embedded when they fit.
    """
    from bokeh.embed import file_html
    from bokeh.resources import INLINE

    ds, located, label = open_source(src)
    page = PageData(ds, located, static=True)
    models = build(page, live=False)
    path = pathlib.Path(path)
    html = file_html(document(models), INLINE, title=title or f"dynsim view: {label}")
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

    ds, located, label = open_source(src)
    models = build(PageData(ds, located, static=True), live=False)
    return _Shown(file_html(document(models), INLINE, title=f"dynsim view: {label}"), models)
