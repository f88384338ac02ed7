"""dynsim.data.sources: the MNIST-like, CIFAR-10 and digits readers on tiny hand-written files
(values checked pixel by pixel), their checks of inconsistent or foreign files, and real MNIST
if it is already on disk."""
import hashlib
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
from datafiles import cifar_batch, idx_bytes, make_mnist_dir, real_mnist_dir, write_cifar, write_idx

from dynsim import data
from dynsim.data import DataError, fetch


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


def test_idx_dataset_inconsistent(tmp_path):
    make_mnist_dir(tmp_path)
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros(4, np.uint8))  # 5 images, 4 labels
    with pytest.raises(DataError, match="5 images but .* 4 labels"):
        data.load_mnist(tmp_path)
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.array([0, 1, 2, 3, 12], np.uint8))
    with pytest.raises(DataError, match="label 12"):
        data.load_mnist(tmp_path)


def test_mnist_fashion_swap_refused(tmp_path, monkeypatch):
    arrays = make_mnist_dir(tmp_path)
    sha = hashlib.sha256(idx_bytes(arrays["train-labels-idx1-ubyte"])).hexdigest()
    monkeypatch.setitem(fetch.MNIST_SHA256, "train-labels-idx1-ubyte", sha)
    data.load_mnist(tmp_path)
    with pytest.raises(DataError, match="is the mnist training-label file"):
        data.load_fashion_mnist(tmp_path)


@pytest.mark.skipif(real_mnist_dir() is None, reason="real MNIST not on disk (dynsim data get mnist)")
def test_real_mnist():
    ds = data.load_mnist()
    assert ds.x_train.shape == (60000, 28, 28, 1) and ds.x_test.shape == (10000, 28, 28, 1)
    assert ds.y_train.min() == 0 and ds.y_train.max() == 9 and ds.y_test.max() == 9
    assert np.bincount(ds.y_train, minlength=10).min() > 5000
    assert 0.0 == ds.x_train.min() and ds.x_train.max() == 1.0


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


def test_digits():
    ds = data.load("digits")
    assert ds.x_train.shape == (1500, 8, 8, 1) and ds.x_test.shape == (297, 8, 8, 1)
    assert ds.x_train.dtype == np.float32 and ds.y_train.dtype == np.int32
    assert ds.x_train.min() == 0.0 and ds.x_train.max() == 1.0
    assert set(np.unique(ds.y_test)) == set(range(10))
    np.testing.assert_array_equal(data.load_digits().y_train, ds.y_train)  # deterministic
