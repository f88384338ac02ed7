"""Small writers shared by every figure: config, CSV, notes, PNG; a number format and a loss contour."""
from __future__ import annotations

import contextlib
import csv
import datetime
import functools
import json
import pathlib
from typing import Any, Mapping, Sequence

import numpy as np


def _jsonable(x: Any) -> Any:
    if isinstance(x, Mapping):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, pathlib.Path):
        return str(x)
    return x


def save_config(out: pathlib.Path, name: str, config: Mapping[str, Any]) -> None:
    """Write ``config.json`` with the figure's parameters and provenance."""
    import jax

    from dynsim import provenance
    from dynsim.numerics import x64_enabled

    meta = {
        "figure": name,
        "quick": bool(_RUN.get("quick", False)),
        **provenance.revision(),
        "jax_version": jax.__version__,
        "device": str(jax.devices()[0]),
        "x64": x64_enabled(),
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "config": _jsonable(dict(config)),
    }
    (out / "config.json").write_text(json.dumps(meta, indent=2) + "\n")


def save_csv(path: pathlib.Path, columns: Mapping[str, Sequence[Any] | np.ndarray]) -> None:
    """Write equal-length columns to CSV (floats with full precision)."""
    names = list(columns)
    cols = [np.asarray(columns[n]) for n in names]
    n = {len(c) for c in cols}
    if len(n) != 1:
        raise ValueError(f"columns of unequal length: { {k: len(c) for k, c in zip(names, cols)} }")
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(names)
        for row in zip(*cols):
            w.writerow([repr(float(v)) if isinstance(v, (float, np.floating)) else v for v in row])


# the figure being run (set by dynsim.figures.run): its name and whether it is a --quick run
_RUN: dict = {}


@contextlib.contextmanager
def running(name: str, quick: bool):
    """While figure ``name`` runs: NOTES and config.json say whether it was a ``--quick`` run."""
    _RUN.update(name=name, quick=bool(quick))
    try:
        yield
    finally:
        _RUN.clear()


def save_notes(out: pathlib.Path, title: str, body: str) -> None:
    """Write ``NOTES.md``: what the paper reports beside what we get.

    A ``--quick`` run's notes say so at the top, and the command they quote is the one
    that made them (``dynsim figure NAME --quick``), not the full run's.
    """
    body = body.strip()
    if _RUN.get("quick"):
        name = _RUN["name"]
        body = body.replace(f"`dynsim figure {name}`", f"`dynsim figure {name} --quick`")
        body = (f"> Made by `dynsim figure {name} --quick`: a reduced run for smoke tests. Its numbers are "
                f"not the figure's; `dynsim figure {name}` makes those.\n\n{body}")
    (out / "NOTES.md").write_text(f"# {title}\n\n{body}\n")


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    def fmt(v):
        if isinstance(v, (float, np.floating)):
            return f"{float(v):.6g}"
        return str(v)

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(fmt(v) for v in r) + " |" for r in rows]
    return "\n".join(lines)


def pyplot():
    """matplotlib.pyplot on the headless Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: pathlib.Path, dpi: int = 130) -> None:
    """Lay out, write and close a figure (closing frees it: figure runs draw dozens)."""
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    pyplot().close(fig)


def label(ax, xlabel: str, ylabel: str, title: str, *, legend: float | None = 7, title_size: float = 10) -> None:
    """Name a panel's axes and title, and draw its legend (``legend``: the font size; None: no legend)."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=title_size)
    if legend is not None:
        ax.legend(fontsize=legend)


def fmt(x, p: int = 4) -> str:
    """``x`` to ``p`` significant digits; ``"nan"`` for None, NaN or inf."""
    return "nan" if x is None or not np.isfinite(x) else f"{x:.{p}g}"


@functools.lru_cache(maxsize=8)
def _batched(loss):
    import jax

    return jax.jit(jax.vmap(loss))


def loss_contour(ax, loss, xlim: Sequence[float], ylim: Sequence[float], n: int = 240) -> None:
    """Grey contours of ``log10(L − min L + 0.01)`` of a 2-D ``loss`` on ``xlim × ylim`` (``n × n`` points)."""
    import jax.numpy as jnp

    xs = np.linspace(xlim[0], xlim[1], n)
    ys = np.linspace(ylim[0], ylim[1], n)
    X, Y = np.meshgrid(xs, ys)
    Z = np.asarray(_batched(loss)(jnp.stack([X.ravel(), Y.ravel()], -1))).reshape(X.shape)
    ax.contour(X, Y, np.log10(Z - Z.min() + 1e-2), levels=18, colors="0.75", linewidths=0.6)
