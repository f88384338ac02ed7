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
``DIR/.lock``, ``DIR/.lock-<slice>``
    advisory locks (``fcntl.flock``) held while a process writes (:func:`writing`). The
    kernel drops them when the process ends, however it ends, so a SIGKILL leaves no stale
    lock. A process running the whole sweep holds ``.lock`` exclusively; a process running
    a slice of the chunks (``chunks=``: a ``jax.distributed`` process, or one of several
    independent jobs) holds ``.lock`` *shared* plus its own ``.lock-<slice>`` exclusively,
    so slices run side by side while a whole-sweep writer, or a second writer of the same
    slice, is refused at once with :class:`StoreBusyError`. Store creation is serialised by
    a short blocking lock on ``.lock-create``. The holder's process id, host and start
    time are written into the lock file it holds, for the refusal message.

A write that fails (a full disk, a directory made read-only) raises
:class:`StoreWriteError`, an ``OSError`` naming the directory, how many chunks are
stored and the resume command; the store is left resumable (the chunk being written is
not logged). Chunk writes run inside :func:`critical`: a signal handler that honours it
(the CLI's) lets the chunk finish before the process ends.

Damage is reported as :class:`CorruptStoreError` (a ``ValueError``) naming the store and
what is wrong, at open time and, for lazily read data, at read time.
"""
from __future__ import annotations

import contextlib
import datetime
import json
import os
import pathlib
import shlex
import shutil
import socket
import time
from typing import Any, Literal, Mapping, NamedTuple

try:
    import fcntl
except ImportError:  # not POSIX: no advisory locks (documented in the module docstring)
    fcntl = None  # type: ignore[assignment]  # the optional-module idiom: None where not POSIX

import numpy as np

from dynsim import provenance

__all__ = ["CorruptStoreError", "StoreBusyError", "StoreWriteError", "writing", "creating", "critical",
           "in_critical", "defer", "live", "count_done", "write_failed", "write_source", "check_writable_target",
           "resume_command", "CONFIG", "STORE", "open_result", "read_config", "read_done", "create",
           "open_group", "check_chunks", "drop_partial_line", "diff", "prepare", "Writer"]

CONFIG = "config.json"
STORE = "results.zarr"
LOG_PREFIX = "progress"
SOURCE = "config.toml"
LOCK = ".lock"


def _metrics():
    """dynsim.metrics, imported when a store is created: reading one needs no JAX (dynsim view)."""
    from dynsim import metrics

    return metrics


class CorruptStoreError(ValueError):
    """A result store that cannot be read as written (damaged, truncated or edited)."""


def _corrupt(out, msg) -> CorruptStoreError:
    return CorruptStoreError(f"result store {out} is corrupt: {msg}")


class StoreBusyError(BlockingIOError):
    """Another live process is writing this result directory (its advisory lock is held)."""

    def __str__(self):
        return self.args[0] if self.args else ""


class StoreWriteError(OSError):
    """Writing the store failed (disk full, unwritable): names the directory and how to resume."""

    def __str__(self):
        return self.message

    def __init__(self, errno_, message):
        super().__init__(errno_, message)
        self.message = message


def resume_command(out) -> str:
    return f"dynsim sweep --resume {shlex.quote(str(out))}"


# --------------------------------------------------------------------------- locks


_HELD: dict = {}  # (realpath, lock name) -> [fd, count, exclusive]: a process re-entering its own lock


def _holder_text() -> str:
    since = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    return f"{os.getpid()} {socket.gethostname()} {since}\n"


def _busy(out, path: pathlib.Path) -> StoreBusyError:
    info = ""
    for _ in range(50):  # the holder writes its name just after it takes the lock
        try:
            info = path.read_text().strip()
        except OSError:
            info = ""
        if info:
            break
        time.sleep(0.01)
    parts = info.split(" ", 2)
    if len(parts) == 3:
        who = f"process {parts[0]} on {parts[1]} since {parts[2]}"
    else:
        who = "another process"
    return StoreBusyError(f"{out} is being written by {who}; wait for it or choose another directory")


def _flock(path: pathlib.Path, mode, *, blocking=False):
    """Open ``path`` and flock it; the fd, or ``None`` if it is held elsewhere."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, mode | (0 if blocking else fcntl.LOCK_NB))
    except BlockingIOError:
        os.close(fd)
        return None
    except BaseException:
        os.close(fd)
        raise
    return fd


def _write_holder(fd) -> None:
    os.ftruncate(fd, 0)
    os.pwrite(fd, _holder_text().encode(), 0)


def _held_slice(out: pathlib.Path):
    """A ``.lock-<slice>`` file that some live process holds (for the refusal message)."""
    for p in sorted(out.glob(LOCK + "-*")):
        if p.name == LOCK + "-create":
            continue
        fd = _flock(p, fcntl.LOCK_SH)
        if fd is None:
            return p
        os.close(fd)
    return None


def check_writable_target(out: pathlib.Path) -> None:
    """Refuse a path that is a file, or a directory holding something other than a sweep."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"out={str(out)!r} is a file, not a result directory")
    if out.is_dir() and not (out / CONFIG).exists():
        present = {p.name for p in out.iterdir()}
        ours = {n for n in present if n.startswith(LOCK) or (n.startswith(SOURCE + ".") and n.endswith(".tmp"))}
        if present - ours - {STORE, SOURCE, CONFIG + ".tmp"}:
            raise ValueError(f"out={str(out)!r} exists and is not a sweep result directory; refusing to write into it")


@contextlib.contextmanager
def writing(out, key: str | None = None):
    """Hold the advisory lock of result directory ``out`` while writing it.

    ``key=None``: this process writes the whole sweep (exclusive). ``key="<slice>"``: it
    writes only that slice of the chunks (shared with other slices, exclusive per slice).
    Raises :class:`StoreBusyError` at once when another live process holds a conflicting
    lock. Re-entrant within one process (the CLI takes it before the engine does).
    """
    out = pathlib.Path(out)
    if fcntl is None:
        yield
        return
    check_writable_target(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise write_failed(out, None, e) from None
    real = os.path.realpath(out)
    taken = []
    try:
        for name, mode in ((LOCK, fcntl.LOCK_EX if key is None else fcntl.LOCK_SH),
                           *(((f"{LOCK}-{key}", fcntl.LOCK_EX),) if key is not None else ())):
            held = _HELD.get((real, name))
            if held is not None:
                held[1] += 1
                taken.append((real, name))
                continue
            try:
                fd = _flock(out / name, mode)
            except OSError as e:
                raise write_failed(out, None, e) from None
            if fd is None:
                holder = (_held_slice(out) if name == LOCK else None) or out / name
                raise _busy(out, holder)
            if mode == fcntl.LOCK_EX:
                _write_holder(fd)
            _HELD[(real, name)] = [fd, 1, mode == fcntl.LOCK_EX]
            taken.append((real, name))
        yield
    finally:
        for k in reversed(taken):
            held = _HELD[k]
            held[1] -= 1
            if held[1] == 0:
                del _HELD[k]
                try:
                    if held[2]:  # leave the lock file as found: empty (a refused writer changes nothing)
                        os.ftruncate(held[0], 0)
                except OSError:
                    pass
                os.close(held[0])  # closing the last fd drops the flock


@contextlib.contextmanager
def creating(out):
    """Serialise store creation between processes sharing ``out`` (a short, blocking lock)."""
    if fcntl is None:
        yield
        return
    fd = _flock(pathlib.Path(out) / (LOCK + "-create"), fcntl.LOCK_EX, blocking=True)
    try:
        yield
    finally:
        os.close(fd)


# --------------------------------------------------------------------------- signals, progress


_CRITICAL: dict[str, Any] = {"depth": 0, "pending": []}
#: The store being written by this process: ``{"out": path, "n_chunks": n}`` (for interrupt messages).
_LIVE: dict = {}


@contextlib.contextmanager
def critical():
    """A section a signal must not cut (a chunk's data and its log line).

    A handler that sees :func:`in_critical` records its signal with :func:`defer`; the
    signal is raised again when the outermost section ends.
    """
    _CRITICAL["depth"] += 1
    try:
        yield
    finally:
        _CRITICAL["depth"] -= 1
        if _CRITICAL["depth"] == 0 and _CRITICAL["pending"]:
            import signal

            sig = _CRITICAL["pending"].pop()
            _CRITICAL["pending"].clear()
            signal.raise_signal(sig)


def in_critical() -> bool:
    return _CRITICAL["depth"] > 0


def defer(signum) -> None:
    _CRITICAL["pending"].append(signum)


def live() -> dict:
    """``{"out", "n_chunks"}`` of the store this process is writing (empty when none)."""
    return dict(_LIVE)


def count_done(out: pathlib.Path, n_chunks: int) -> int:
    try:
        return len(read_done(pathlib.Path(out), n_chunks))
    except (OSError, ValueError):
        return 0


def write_failed(out: pathlib.Path, n_chunks: int | None, e: OSError) -> StoreWriteError:
    """The one-line error of a failed write (disk full, unwritable directory)."""
    why = e.strerror or str(e)
    if n_chunks is None:
        try:
            n_chunks = int(json.loads((out / CONFIG).read_text())["layout"]["n_chunks"])
        except (OSError, ValueError, KeyError, TypeError):
            n_chunks = None
    if n_chunks is None:
        return StoreWriteError(e.errno, f"cannot write to {out}: {why}; nothing was stored; fix the directory "
                                        "(or choose another) and start again")
    k = count_done(out, n_chunks)
    return StoreWriteError(e.errno, f"cannot write to {out}: {why}; {k} of {n_chunks} chunks stored; "
                                    f"free space or fix the directory, then resume with: {resume_command(out)}")


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
                     {"description": _metrics().METRICS[m]}) for m in metrics]


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
    code = provenance.revision()
    attrs = {**attrs, "git_commit": code["git_commit"] or "", "git_dirty": bool(code["git_dirty"])}
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
            "coords": {k: list(d) for k, (d, _) in coords.items()}, "code": provenance.revision()}
    # the config is written last: its presence marks a fully created store
    tmp = out / (CONFIG + ".tmp")
    tmp.write_text(json.dumps(meta, indent=1) + "\n")
    os.replace(tmp, out / CONFIG)


def open_group(out: pathlib.Path, mode: Literal["r", "r+", "a", "w", "w-"] = "r+"):
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
    check_writable_target(out)
    out.mkdir(parents=True, exist_ok=True)
    if (out / STORE).exists():  # only our own files from a creation interrupted before config.json
        shutil.rmtree(out / STORE)
    if source_text is not None:
        write_source(out, source_text)
    return None


def write_source(out: pathlib.Path, text: str) -> None:
    """``DIR/config.toml``, replaced atomically (a kill never leaves half a config)."""
    if (out / SOURCE).exists() and (out / SOURCE).read_text() == text:
        return
    tmp = out / (SOURCE + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, out / SOURCE)


class Writer:
    """Writes finished chunks into the store and logs them (fsync'ed, after the data)."""

    def __init__(self, out: pathlib.Path, metrics, process_index: int | None, n_chunks: int):
        self.out, self.n_chunks = out, n_chunks
        g = open_group(out)
        self.arrays = {m: g[m].with_config({"write_empty_chunks": True}) for m in metrics}
        name = LOG_PREFIX + (f"-{process_index}" if process_index is not None else "") + ".log"
        try:
            drop_partial_line(out / name)
            self.log = open(out / name, "ab", buffering=0)  # one write() per line, nothing buffered
        except OSError as e:
            raise write_failed(out, n_chunks, e) from None

    def __call__(self, i: int, region, values: Mapping[str, np.ndarray]) -> None:
        """Write chunk ``i``: ``values[name]`` is ``(points, *trailing)``, ``region`` the grid slices.

        The log line follows the data and is one ``write``: a chunk is logged only once
        all of it is on disk. A failed write raises :class:`StoreWriteError` (not logged).
        """
        rshape = tuple(s.stop - s.start for s in region)
        with critical():
            try:
                for m, v in values.items():
                    v = np.asarray(v)
                    self.arrays[m][region] = v.reshape(rshape + v.shape[1:])
                self.log.write(f"{i}\n".encode())
                os.fsync(self.log.fileno())
            except OSError as e:
                raise write_failed(self.out, self.n_chunks, e) from None

    def close(self) -> None:
        try:
            self.log.close()
        except OSError:  # a full disk can fail the final flush too; every logged line was fsync'ed
            pass


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
    if meta["sweep"].get("kind") == "train" and "epoch" in ds.dims:
        ds = _training_steps_layout(ds)
    ds = squeeze_point(ds, meta["sweep"])
    n_chunks = meta.get("layout", {}).get("n_chunks")
    if n_chunks is not None:
        ds.attrs["complete"] = len(read_done(out, n_chunks)) == n_chunks
    return ds


def _training_steps_layout(ds):
    """A training store written before results had one time dimension (minibatch runs: dim
    ``epoch``, ``epochs_to_*`` in epochs), read in today's layout: dim ``step`` with ``epoch``
    a coordinate along it, ``steps_to_*`` in steps."""
    ds = ds.swap_dims({"epoch": "step"})
    per_epoch = ds.attrs["steps_per_epoch"]
    for k in [k for k in ds.data_vars if k.startswith("epochs_to_")]:
        new = "steps_to_" + k[len("epochs_to_"):]
        ds[new] = ds[k] * per_epoch
        ds[new].attrs = {"description": ds[k].attrs.get("description", "").replace("first epoch", "first step")}
        ds = ds.drop_vars(k)
    return ds


def squeeze_point(ds, config: Mapping):
    """A one-point grid (numbers only) ran along a 1-long axis of its first number: that axis
    becomes a scalar coordinate, so the result has no grid dimension (``config["squeeze"]``)."""
    names = [d for d in config.get("squeeze", ()) if d in ds.dims]
    return ds.squeeze(names) if names else ds
