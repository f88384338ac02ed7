"""The live page: a bokeh server on 127.0.0.1 whose Python callbacks read each slice lazily
from the store and run a clicked landscape point with :func:`dynsim.simulate`.
"""
from __future__ import annotations

from dynsim.view.page import build
from dynsim.view.page_data import PageData, coord_value, fmt, open_source

__all__ = ["serve"]


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
                        f"{k}={fmt(coord_value(page.ds, k, i))}" for k, i in idx.items()
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

    ds, located, _ = open_source(src)
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
