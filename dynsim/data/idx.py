"""The IDX file format (MNIST's): read it, raw or gzip-compressed, with every header field
checked, and write it.

An IDX file is two zero bytes, a dtype code, the number of dimensions, each dimension as a
big-endian uint32, then the values big-endian in C order.
"""
from __future__ import annotations

import gzip
import hashlib
import os
import zlib
from pathlib import Path

import numpy as np

from dynsim.data.dataset import DataError

__all__ = ["read_idx", "idx_bytes", "content_sha256", "idx_sha256"]

_IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

_DEFAULT_IDX_HINT = ("the file is corrupt or not an IDX file; delete it and fetch it again "
                     "(e.g. `dynsim data get mnist`)")


def _read_bytes(path: Path) -> bytes:
    """Whole file content, gunzipped when the file starts with the gzip magic."""
    try:
        with open(path, "rb") as f:
            head = f.read(2)
            f.seek(0)
            if head == b"\x1f\x8b":
                with gzip.GzipFile(fileobj=f) as g:
                    return g.read()
            return f.read()
    except (OSError, EOFError, zlib.error) as e:  # BadGzipFile is an OSError
        raise DataError(f"{path}: cannot read ({type(e).__name__}: {e})") from e


def content_sha256(path: Path) -> str:
    """sha256 of the uncompressed content, so ``x`` and ``x.gz`` compare equal."""
    return hashlib.sha256(_read_bytes(path)).hexdigest()


def _parse_idx(buf: bytes, path: Path, hint: str) -> np.ndarray:
    def bad(what: str) -> DataError:
        return DataError(f"{path}: {what}; {hint}")

    if len(buf) < 4:
        raise bad(f"only {len(buf)} bytes, too short for an IDX header")
    if buf[0] != 0 or buf[1] != 0:
        raise bad(f"bad magic number 0x{buf[:4].hex()} (an IDX file starts with two zero bytes)")
    code, ndim = buf[2], buf[3]
    if code not in _IDX_DTYPES:
        raise bad(f"unknown IDX dtype code 0x{code:02x} (expected one of "
                  + ", ".join(f"0x{c:02x}" for c in _IDX_DTYPES) + ")")
    if ndim == 0:
        raise bad("IDX header declares 0 dimensions")
    header = 4 + 4 * ndim
    if len(buf) < header:
        raise bad(f"header declares {ndim} dimensions but the file has only {len(buf)} bytes")
    dims = tuple(int(d) for d in np.frombuffer(buf, ">u4", count=ndim, offset=4))
    dtype = _IDX_DTYPES[code]
    expected = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    got = len(buf) - header
    if got != expected:
        kind = "truncated" if got < expected else "has trailing bytes"
        raise bad(f"payload {kind}: dims {dims} of {dtype.name} need {expected} bytes, found {got}")
    arr = np.frombuffer(buf, dtype, offset=header).reshape(dims)
    return arr.astype(dtype.newbyteorder("="), copy=True)


def read_idx(path: str | os.PathLike, *, hint: str | None = None) -> np.ndarray:
    """Read an IDX file (the MNIST format), raw or gzip-compressed.

    Checks the magic number, dtype code, dimensions and that the payload size is
    exactly what the header declares, because a truncated download otherwise
    turns into silently wrong images. Returns a native-endian array.
    ``hint`` is appended to error messages (how to get a good copy).
    """
    p = Path(path)
    return _parse_idx(_read_bytes(p), p, hint or _DEFAULT_IDX_HINT)


def idx_bytes(arr: np.ndarray) -> bytes:
    """``arr`` as an uncompressed IDX file: the header (two zero bytes, dtype code, ndim, each
    dimension as a big-endian uint32), then the values big-endian in C order (the inverse of
    :func:`read_idx`).

    >>> idx_bytes(np.array([[1, 2]], np.uint8)).hex()
    '0000080200000001000000020102'
    """
    arr = np.asarray(arr)
    codes = {dt: code for code, dt in _IDX_DTYPES.items()}
    big = arr.dtype.newbyteorder(">")
    if big not in codes:
        raise ValueError(f"arr: dtype {arr.dtype} has no IDX code (uint8, int8, int16, int32, float32, float64)")
    header = bytes([0, 0, codes[big], arr.ndim]) + np.array(arr.shape, ">u4").tobytes()
    return header + np.ascontiguousarray(arr, big).tobytes()


def idx_sha256(arr: np.ndarray) -> str:
    """sha256 of ``arr`` written as an uncompressed uint8 IDX file (to compare with the references)."""
    return hashlib.sha256(idx_bytes(np.asarray(arr, np.uint8))).hexdigest()
