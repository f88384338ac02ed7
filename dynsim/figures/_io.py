"""Small writers shared by every figure: config, CSV, notes, PNG; a number format and a loss contour."""
from __future__ import annotations

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

    import dynsim

    meta = {
        "figure": name,
        "dynsim_version": dynsim.__version__,
        "jax_version": jax.__version__,
        "device": str(jax.devices()[0]),
        "x64": bool(jax.config.jax_enable_x64),
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "config": _jsonable(dict(config)),
    }
    (out / "config.json").write_text(json.dumps(meta, indent=2) + "\n")


def save_csv(path: pathlib.Path, columns: Mapping[str, Sequence[Any]]) -> None:
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


def save_notes(out: pathlib.Path, title: str, body: str) -> None:
    """Write ``NOTES.md``: what the paper reports beside what we get."""
    (out / "NOTES.md").write_text(f"# {title}\n\n{body.strip()}\n")


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


def fmt(x, p: int = 4) -> str:
    """``x`` to ``p`` significant digits; ``"nan"`` for None, NaN or inf."""
    return "nan" if x is None or not np.isfinite(x) else f"{x:.{p}g}"


@functools.lru_cache(maxsize=8)
def _batched(loss):
    import jax

    return jax.jit(jax.vmap(loss))


def loss_contour(ax, loss, xlim, ylim, n: int = 240) -> None:
    """Grey contours of ``log10(L − min L + 0.01)`` of a 2-D ``loss`` on ``xlim × ylim`` (``n × n`` points)."""
    import jax.numpy as jnp

    xs = np.linspace(*xlim, n)
    ys = np.linspace(*ylim, n)
    X, Y = np.meshgrid(xs, ys)
    Z = np.asarray(_batched(loss)(jnp.stack([X.ravel(), Y.ravel()], -1))).reshape(X.shape)
    ax.contour(X, Y, np.log10(Z - Z.min() + 1e-2), levels=18, colors="0.75", linewidths=0.6)
