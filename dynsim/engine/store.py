r"""The results store: a directory that survives any kill and is read as carefully as written.

``DIR/config.json``
    the normalised sweep config and chunk layout, written last at creation (its presence
    marks a fully created store); a resume must match it exactly.
``DIR/results.zarr``
    one variable per metric, zarr chunks aligned with sweep chunks, written by region as
    each chunk finishes (every chunk is written, even one equal to the fill value, so a
    logged chunk always has a file and a missing file is detectable corruption).
``DIR/progress*.log``
    one line per completed chunk, appended and fsync'ed after its data is written (one log
    per process under ``jax.distributed``; completion is their union). A last line cut
    short by a kill is dropped and that chunk is recomputed.

Damage is reported as :class:`CorruptStoreError` (a ``ValueError``) naming the store and
what is wrong, at open time and, for lazily read data, at read time.
"""
from __future__ import annotations

import json
import os
import pathlib
import shutil
from typing import Any, Mapping, NamedTuple

import numpy as np

from dynsim import metrics as _metrics

__all__ = ["CorruptStoreError", "CONFIG", "STORE", "open_result", "read_config", "read_done", "create",
           "open_group", "check_chunks", "drop_partial_line", "diff", "prepare", "Writer"]

CONFIG = "config.json"
STORE = "results.zarr"
LOG_PREFIX = "progress"
SOURCE = "config.toml"


class CorruptStoreError(ValueError):
    """A result store that cannot be read as written (damaged, truncated or edited)."""


def _corrupt(out, msg) -> CorruptStoreError:
    return CorruptStoreError(f"result store {out} is corrupt: {msg}")


def read_config(out: pathlib.Path) -> dict:
    try:
        cfg = json.loads((out / CONFIG).read_text())
        cfg["sweep"]
    except FileNotFoundError:
        raise _corrupt(out, f"{CONFIG} is missing") from None
    except (json.JSONDecodeError, KeyError, TypeError, UnicodeDecodeError) as e:
        raise _corrupt(out, f"{CONFIG} is unreadable ({e})") from None
    return cfg


def read_done(out: pathlib.Path, n_chunks: int) -> set[int]:
    """Chunks logged as complete by any process (only newline-terminated lines count)."""
    done: set[int] = set()
    for log in sorted(out.glob(LOG_PREFIX + "*.log")):
        lines = log.read_text(errors="replace").split("\n")
        for k, line in enumerate(lines[:-1]):
            try:
                i = int(line)
            except ValueError:
                raise _corrupt(out, f"{log.name} line {k + 1} is not a chunk index: {line!r}") from None
            if not 0 <= i < n_chunks:
                raise _corrupt(out, f"{log.name} names chunk {i}, but the sweep has {n_chunks}")
            done.add(i)
    return done


def drop_partial_line(path: pathlib.Path) -> None:
    """Cut a last line left without its newline by a kill (that chunk is recomputed)."""
    if not path.exists():
        return
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        with open(path, "r+b") as f:
            f.truncate(data.rfind(b"\n") + 1)
            f.flush()
            os.fsync(f.fileno())


def diff(a: Mapping, b: Mapping, prefix="") -> list[str]:
    """Human-readable differences between two configs (``stored X, requested Y``)."""
    out = []
    for k in sorted(set(a) | set(b)):
        va, vb = a.get(k, "<absent>"), b.get(k, "<absent>")
        if isinstance(va, Mapping) and isinstance(vb, Mapping):
            out += diff(va, vb, prefix + k + ".")
        elif va != vb:
            sa, sb = json.dumps(va), json.dumps(vb)
            sa = sa[:37] + "..." if len(sa) > 40 else sa
            sb = sb[:37] + "..." if len(sb) > 40 else sb
            out.append(f"{prefix}{k}: stored {sa}, requested {sb}")
    return out


class Variable(NamedTuple):
    """A stored variable: its dims (the grid's, then its own trailing ones), dtype, fill, attrs."""

    name: str
    dims: tuple[str, ...]
    dtype: str
    fill: Any = np.nan
    attrs: Mapping[str, Any] = {}


def metric_variables(dims, metrics, dtype) -> list[Variable]:
    """The variables of a metrics sweep: one per metric over the grid dims."""
    return [Variable(m, tuple(dims), "bool" if m == "diverged" else dtype, False if m == "diverged" else np.nan,
                     {"description": _metrics.METRICS[m]}) for m in metrics]


def create(out: pathlib.Path, coords: Mapping[str, tuple[tuple[str, ...], np.ndarray]], grid_dims, variables,
           zarr_chunks, attrs: dict, meta: dict) -> None:
    """Create the store: ``coords`` (name -> (dims, values)) and empty ``variables``.

    Each variable's zarr chunks are the grid's (``zarr_chunks``, aligned with sweep chunks)
    followed by its whole trailing dims. ``config.json`` (``meta``) is written last.
    """
    import zarr

    sizes = {}
    for name, (dims, values) in coords.items():
        if len(dims) == 1 and dims[0] == name:
            sizes[name] = len(values)
    g = zarr.open_group(str(out / STORE), mode="w-", attributes=attrs, zarr_format=3)
    for name, (dims, values) in coords.items():
        values = np.asarray(values)
        a = g.create_array(name, shape=values.shape, dtype=values.dtype.str, chunks=values.shape or (1,),
                           dimension_names=list(dims))
        a[...] = values
    for v in variables:
        extra = v.dims[len(grid_dims):]
        shape = tuple(sizes[d] for d in grid_dims) + tuple(sizes[d] for d in extra)
        g.create_array(v.name, shape=shape, dtype=v.dtype, chunks=tuple(zarr_chunks) + shape[len(grid_dims):],
                       dimension_names=list(v.dims), fill_value=v.fill, attributes=dict(v.attrs))
    meta = {**meta, "variables": {v.name: list(v.dims) for v in variables},
            "coords": {k: list(d) for k, (d, _) in coords.items()}}
    # the config is written last: its presence marks a fully created store
    tmp = out / (CONFIG + ".tmp")
    tmp.write_text(json.dumps(meta, indent=1) + "\n")
    os.replace(tmp, out / CONFIG)


def open_group(out: pathlib.Path, mode: str = "r+"):
    import zarr

    try:
        return zarr.open_group(str(out / STORE), mode=mode)
    except Exception as e:  # zarr raises several types for a damaged store
        raise _corrupt(out, f"{STORE} cannot be opened ({type(e).__name__}: {e})") from None


def check_chunks(out: pathlib.Path, g, metrics, n_done: int) -> None:
    """Every chunk logged as done must exist on disk for every metric."""
    for m in metrics:
        try:
            stored = g[m].nchunks_initialized
        except Exception as e:
            raise _corrupt(out, f"variable {m!r} cannot be listed ({type(e).__name__}: {e})") from None
        if stored < n_done:
            raise _corrupt(out, f"{n_done} chunks are logged as done but only {stored} are stored for {m!r}")


def prepare(out: pathlib.Path, config: dict, layout_meta: dict, *, resume_only: bool = False,
            source_text: str | None = None):
    """Check ``out`` for a resume, or make it ready for a new store.

    Returns the set of completed chunks (empty for a new store). A directory holding a
    different sweep, or something else, is refused and left untouched.
    """
    if (out / CONFIG).exists():
        stored = read_config(out)
        want = json.loads(json.dumps(config))
        if stored.get("sweep") != want or stored.get("layout") != layout_meta:
            diffs = diff(stored.get("sweep", {}), want) + diff({"layout": stored.get("layout")},
                                                               {"layout": layout_meta})
            if all(d.startswith("fingerprint:") for d in diffs):
                raise ValueError(
                    f"out={str(out)!r} holds a sweep of the same names, but the optimizer or loss code differs "
                    "(its fingerprint, a hash of the loss and of one optimizer step, does not match); "
                    "use the same functions or another directory. Nothing was changed.")
            raise ValueError(f"out={str(out)!r} holds a different sweep ({'; '.join(diffs[:4])}"
                             f"{'; ...' if len(diffs) > 4 else ''}); choose another directory. Nothing was changed.")
        if not (out / STORE).exists():
            raise _corrupt(out, f"{STORE} is missing")
        return None  # the caller reads the done set once it knows the chunk count
    if resume_only:
        if (out / SOURCE).exists():
            first = (out / SOURCE).read_text().split("\n", 1)[0]
            cmd = first[len("# started as: "):] if first.startswith("# started as: ") else \
                f"dynsim sweep {out / SOURCE} --out {out}"
            raise FileNotFoundError(
                f"--resume {out}: the sweep was stopped before its store was created, so nothing was computed; "
                f"start it again with: {cmd}")
        raise FileNotFoundError(f"--resume {out}: no sweep there ({CONFIG} missing)")
    present = {p.name for p in out.iterdir()} if out.exists() else set()
    if present - {STORE, SOURCE, CONFIG + ".tmp"}:
        raise ValueError(f"out={str(out)!r} exists and is not a sweep result directory; refusing to write into it")
    out.mkdir(parents=True, exist_ok=True)
    if (out / STORE).exists():  # only our own files from a creation interrupted before config.json
        shutil.rmtree(out / STORE)
    if source_text is not None:
        (out / SOURCE).write_text(source_text)
    return None


class Writer:
    """Writes finished chunks into the store and logs them (fsync'ed, after the data)."""

    def __init__(self, out: pathlib.Path, metrics, process_index: int | None):
        g = open_group(out)
        self.arrays = {m: g[m].with_config({"write_empty_chunks": True}) for m in metrics}
        name = LOG_PREFIX + (f"-{process_index}" if process_index is not None else "") + ".log"
        drop_partial_line(out / name)
        self.log = open(out / name, "ab")

    def __call__(self, i: int, region, values: Mapping[str, np.ndarray]) -> None:
        """Write chunk ``i``: ``values[name]`` is ``(points, *trailing)``, ``region`` the grid slices."""
        rshape = tuple(s.stop - s.start for s in region)
        for m, v in values.items():
            v = np.asarray(v)
            self.arrays[m][region] = v.reshape(rshape + v.shape[1:])
        self.log.write(f"{i}\n".encode())
        self.log.flush()
        os.fsync(self.log.fileno())

    def close(self) -> None:
        self.log.close()


# --------------------------------------------------------------------------- careful reading


def _careful_variable(out, name, arr, dims, attrs):
    """An xarray variable over a zarr array whose reads turn decode errors into CorruptStoreError."""
    from xarray.backends import BackendArray
    from xarray.core import indexing

    class _Careful(BackendArray):
        def __init__(self):
            self.shape = tuple(arr.shape)
            self.dtype = np.dtype(arr.dtype.to_native_dtype() if hasattr(arr.dtype, "to_native_dtype")
                                  else arr.dtype)

        def __getitem__(self, key):
            return indexing.explicit_indexing_adapter(key, self.shape, indexing.IndexingSupport.BASIC, self._raw)

        def _raw(self, key):
            try:
                return np.asarray(arr[key])
            except Exception as e:
                raise _corrupt(out, f"variable {name!r} cannot be read at {key} "
                                    f"({type(e).__name__}: {e})") from None

    import xarray as xr

    return xr.Variable(dims, indexing.LazilyIndexedArray(_Careful()), attrs)


def open_result(out):
    """Open a finished (or partial) sweep directory as an :class:`xarray.Dataset` (lazy).

    Data is read when used; a damaged chunk raises :class:`CorruptStoreError` then, with
    the store and the variable named. ``attrs["complete"]`` tells whether every chunk is in.
    """
    import xarray as xr

    out = pathlib.Path(out)
    if not out.is_dir():
        raise FileNotFoundError(f"no sweep result directory {out}")
    meta = read_config(out)
    g = open_group(out, mode="r")
    grid = list(meta["sweep"].get("grid", {}))
    variables = meta.get("variables") or {m: grid for m in meta["sweep"]["metrics"]}
    coord_dims = meta.get("coords") or {d: [d] for d in grid}
    try:
        attrs = dict(g.attrs)
        coords = {k: (tuple(d), np.asarray(g[k][...])) for k, d in coord_dims.items()}
        data_vars = {m: _careful_variable(out, m, g[m], tuple(d), dict(g[m].attrs)) for m, d in variables.items()}
    except CorruptStoreError:
        raise
    except Exception as e:
        raise _corrupt(out, f"{STORE} cannot be read ({type(e).__name__}: {e})") from None
    ds = xr.Dataset(data_vars, coords=coords, attrs=attrs)
    n_chunks = meta.get("layout", {}).get("n_chunks")
    if n_chunks is not None:
        ds.attrs["complete"] = len(read_done(out, n_chunks)) == n_chunks
    return ds

