"""dynsim.data.paths: where files are looked for (explicit folder, $DYNSIM_DATA_DIR, Debian's
folder) and the message naming every place tried when a dataset is missing."""
import pytest
from datafiles import make_mnist_dir, write_cifar

from dynsim import data
from dynsim.data import DataError, paths


def test_load_from_root_and_env(isolated, monkeypatch):
    make_mnist_dir(isolated / "root" / "mnist")
    assert data.load_mnist().x_train.shape[0] == 5  # $DYNSIM_DATA_DIR/mnist
    assert data.load("mnist", isolated / "root").x_test.shape[0] == 3  # explicit root -> root/mnist


def test_fashion_found_in_system_dir(isolated):
    make_mnist_dir(paths.SYSTEM_FASHION_DIR, gz=(True,) * 4)
    ds = data.load("fashion-mnist")
    assert ds.name == "fashion_mnist" and ds.x_train.shape == (5, 4, 3, 1)


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
    assert str(paths.SYSTEM_FASHION_DIR) in str(e.value)


def test_cifar_missing(tmp_path):
    d = write_cifar(tmp_path)
    (d / "test_batch").unlink()
    (d / "cifar-10-python.tar.gz").write_bytes(b"")
    with pytest.raises(DataError, match="missing test_batch.*extract it") as e:
        data.load_cifar10(d)
    assert "cs.toronto.edu" in str(e.value)
