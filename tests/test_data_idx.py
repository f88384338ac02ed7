"""dynsim.data.idx: the IDX reader on files written here by an independent writer, its
error messages on corrupt files, and the writer read back."""
import gzip
import hashlib

import numpy as np
import pytest
from datafiles import idx_bytes, write_idx

from dynsim import data
from dynsim.data import DataError, idx


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("arr", [
    np.arange(24, dtype=np.uint8).reshape(2, 3, 4),
    np.array([0, 9, 3], np.uint8),
    np.array([[-5, 7], [300, -1]], np.int16),
    np.array([1.5, -2.25], np.float32),
    np.array([1e300], np.float64),
], ids=["u8-3d", "u8-1d", "i16", "f32", "f64"])
def test_read_idx_roundtrip(tmp_path, arr, gz):
    p = write_idx(tmp_path / "a-idx", arr, gz=gz)
    out = data.read_idx(p)
    assert out.dtype == arr.dtype and out.dtype.isnative
    np.testing.assert_array_equal(out, arr)


@pytest.mark.parametrize("corrupt, msg", [
    (lambda b: b"\x08\x03" + b[2:], "magic"),
    (lambda b: b[:2] + b"\x07" + b[3:], "dtype code"),
    (lambda b: b[:-5], "truncated"),
    (lambda b: b + b"\x00", "trailing"),
    (lambda b: b[:10], "header"),
    (lambda b: b[:2], "too short"),
], ids=["magic", "dtype", "truncated", "trailing", "short-header", "tiny"])
@pytest.mark.parametrize("gz", [False, True])
def test_read_idx_corrupt_names_file(tmp_path, corrupt, msg, gz):
    raw = corrupt(idx_bytes(np.zeros((2, 3, 4), np.uint8)))
    p = tmp_path / ("bad-idx.gz" if gz else "bad-idx")
    p.write_bytes(gzip.compress(raw) if gz else raw)
    with pytest.raises(DataError, match=msg) as e:
        data.read_idx(p)
    assert str(p) in str(e.value) and "dynsim data get" in str(e.value)


def test_read_idx_broken_gzip(tmp_path):
    p = tmp_path / "x.gz"
    p.write_bytes(gzip.compress(idx_bytes(np.zeros(100, np.uint8)))[:-12])
    with pytest.raises(DataError, match=str(p)):
        data.read_idx(p)


@pytest.mark.parametrize("arr", [
    np.arange(24, dtype=np.uint8).reshape(2, 3, 4),
    np.array([[-5, 7], [300, -1]], np.int16),
    np.array([1.5, -2.25], np.float32),
    np.array([1e300], np.float64),
], ids=["u8-3d", "i16", "f32", "f64"])
def test_idx_bytes_matches_an_independent_writer(tmp_path, arr):
    assert idx.idx_bytes(arr) == idx_bytes(arr)
    p = tmp_path / "w-idx"
    p.write_bytes(idx.idx_bytes(arr))
    np.testing.assert_array_equal(data.read_idx(p), arr)
    with pytest.raises(ValueError, match="arr: dtype int64 has no IDX code"):
        idx.idx_bytes(np.zeros(2, np.int64))


def test_idx_sha256_is_the_sha256_of_the_uint8_file():
    labels = np.array([3, 1, 4], np.int64)  # labels read back from tfds are int64
    assert idx.idx_sha256(labels) == hashlib.sha256(idx_bytes(labels.astype(np.uint8))).hexdigest()
