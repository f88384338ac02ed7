"""dynsim.data.tfds: the tensorflow_datasets backend.

tensorflow-datasets without TensorFlow (pip install 'dynsim[tfds]'): the folder is
written by tfds's own builder class in the array_record format and read back
through tfds.builder_from_directory; the arrays must equal the IDX backend's
bit for bit. Every test here runs with the network cut off.
"""
import io
from pathlib import Path

import numpy as np
import pytest
from datafiles import (
    assert_bitwise_equal,
    make_idx28,
    make_mnist_dir,
    real_mnist_dir,
    write_cifar,
)

from dynsim import data
from dynsim.data import DataError, fetch, idx, paths
from dynsim.data import tfds as dtfds


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
    if not dtfds.have_module("tensorflow"):
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
    if not dtfds.have_module("tensorflow"):
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


@pytest.mark.skipif(not dtfds.have_module("tensorflow"), reason="tfrecord folders need TensorFlow")
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
        monkeypatch.setitem(fetch.MNIST_SHA256, stem, idx.content_sha256(paths.idx_path(tmp, stem)))
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
        monkeypatch.setitem(fetch.MNIST_SHA256, "t10k-labels-idx1-ubyte", "0" * 64)
    with pytest.raises(DataError, match=msg) as e:
        data.load("mnist", out, backend="tfds")
    assert str(out) in str(e.value) and "\n" not in str(e.value)


REAL_MNIST = real_mnist_dir()  # found before any fixture moves the default locations


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
@pytest.mark.skipif(paths.missing_in("fashion_mnist", paths.SYSTEM_FASHION_DIR) != [],
                    reason="Debian's dataset-fashion-mnist not installed")
def test_tfds_real_fashion_mnist_bitwise(tmp_path, tfds, no_network, monkeypatch):
    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path / "t"))
    out = data.prepare_tfds("fashion_mnist", source_dir=paths.SYSTEM_FASHION_DIR)
    assert out == tmp_path / "t" / "fashion_mnist" / "3.0.1"
    assert_bitwise_equal(data.load("fashion_mnist", backend="tfds"),
                         data.load("fashion_mnist", paths.SYSTEM_FASHION_DIR))
