"""The readers of each dataset from its local files, checked on the way in.

* ``mnist`` -- the four IDX files (raw or ``.gz``); ``dynsim data get mnist`` fetches them
  (:mod:`dynsim.data.fetch`).
* ``fashion_mnist`` -- same IDX layout; Debian ships it as the package
  ``dataset-fashion-mnist`` (``/usr/share/datasets/fashion-mnist/*.gz``).
* ``cifar10`` -- the ``cifar-10-batches-py`` pickles, read by an unpickler that can build
  nothing but what they hold; cannot be fetched here, the user puts them in place.
* ``digits`` -- scikit-learn's bundled 8x8 digits (no download at all).

Images come back float32 in [0, 1], NHWC; labels int32. Missing or corrupt data raises
:class:`~dynsim.data.DataError` saying which file and how to get a good copy.
"""
from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from dynsim.data.dataset import DataError, Dataset, unit_float
from dynsim.data.fetch import FASHION_MNIST_SHA256, MNIST_SHA256
from dynsim.data.idx import content_sha256, read_idx
from dynsim.data.paths import (
    CIFAR_FILES,
    GET_HINT,
    IDX_FILES,
    canonical_name,
    find_dir,
    idx_path,
)

__all__ = ["load_mnist", "load_fashion_mnist", "load_cifar10", "load_digits", "load_files", "idx_uint8",
           "cifar_uint8", "DIGITS_N_TRAIN"]

# ------------------------------------------------------------------ MNIST-likes

def _check_not_swapped(name: str, labels_path: Path) -> None:
    """MNIST and Fashion-MNIST share file names: refuse the other one's known files."""
    other, ref = (("fashion_mnist", FASHION_MNIST_SHA256) if name == "mnist" else ("mnist", MNIST_SHA256))
    if content_sha256(labels_path) == ref["train-labels-idx1-ubyte"]:
        raise DataError(f"{labels_path} is the {other} training-label file, not {name}; "
                        f"the folder {labels_path.parent} holds {other} -- point {name} at its own folder")


def idx_uint8(name: str, data_dir: str | os.PathLike | None) -> tuple[Path, dict[str, tuple[np.ndarray, np.ndarray]]]:
    """The folder used and ``{"train": (x, y), "test": (x, y)}`` as checked uint8 arrays, x (N, H, W)."""
    d = find_dir(name, data_dir)
    hint = GET_HINT[name]
    paths = {}
    for s in IDX_FILES:
        p = idx_path(d, s)
        assert p is not None  # find_dir returns a folder holding every file
        paths[s] = p
    _check_not_swapped(name, paths["train-labels-idx1-ubyte"])
    arrays = {s: read_idx(p, hint=hint) for s, p in paths.items()}
    split = {}
    for part, prefix in (("train", "train"), ("test", "t10k")):
        xp, yp = paths[f"{prefix}-images-idx3-ubyte"], paths[f"{prefix}-labels-idx1-ubyte"]
        x, y = arrays[f"{prefix}-images-idx3-ubyte"], arrays[f"{prefix}-labels-idx1-ubyte"]
        if x.ndim != 3 or x.dtype != np.uint8:
            raise DataError(f"{xp}: expected a uint8 array (N, H, W), got {x.dtype} {x.shape}; {hint}")
        if y.ndim != 1 or y.dtype != np.uint8:
            raise DataError(f"{yp}: expected a uint8 vector of labels, got {y.dtype} {y.shape}; {hint}")
        if len(x) != len(y):
            raise DataError(f"{xp} has {len(x)} images but {yp} has {len(y)} labels; {hint}")
        if y.size and y.max() >= 10:
            raise DataError(f"{yp}: label {int(y.max())} outside [0, 10); {hint}")
        split[part] = (x, y)
    if split["train"][0].shape[1:] != split["test"][0].shape[1:]:
        raise DataError(f"{d}: train images {split['train'][0].shape[1:]} and test images "
                        f"{split['test'][0].shape[1:]} differ in size; {hint}")
    return d, split


def _load_idx_dataset(name: str, data_dir: str | os.PathLike | None) -> Dataset:
    _, split = idx_uint8(name, data_dir)
    return Dataset(*(unit_float(split["train"][0][..., None]), split["train"][1].astype(np.int32)),
                   *(unit_float(split["test"][0][..., None]), split["test"][1].astype(np.int32)),
                   name=name, num_classes=10)


def load_mnist(data_dir: str | os.PathLike | None = None) -> Dataset:
    """MNIST, 60000/10000 images of 28x28x1, from the four IDX files (see :func:`~dynsim.data.paths.search_dirs`)."""
    return _load_idx_dataset("mnist", data_dir)


def load_fashion_mnist(data_dir: str | os.PathLike | None = None) -> Dataset:
    """Fashion-MNIST, same layout as MNIST; also found in Debian's install location."""
    return _load_idx_dataset("fashion_mnist", data_dir)


# ------------------------------------------------------------------------ CIFAR-10

class _CifarUnpickler(pickle.Unpickler):
    """Unpickler that can build only what CIFAR batches contain (dicts, lists,
    bytes, numpy arrays): a pickle from elsewhere cannot run code on load."""

    def find_class(self, module: str, name: str) -> Any:
        if module in ("numpy.core.multiarray", "numpy._core.multiarray") and name in ("_reconstruct", "scalar"):
            core = getattr(np, "_core", None) or np.core
            return getattr(core.multiarray, name)
        if module == "numpy" and name in ("ndarray", "dtype"):
            return getattr(np, name)
        if (module, name) == ("_codecs", "encode"):  # bytes in protocol-2 pickles
            import codecs

            return codecs.encode
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


def _read_cifar_batch(path: Path, hint: str) -> tuple[np.ndarray, np.ndarray]:
    try:
        with open(path, "rb") as f:
            obj = _CifarUnpickler(f, encoding="bytes").load()
    except Exception as e:  # any unpickling failure means a corrupt/foreign file
        raise DataError(f"{path}: not a readable CIFAR-10 batch pickle ({type(e).__name__}: {e}); {hint}") from e
    if not isinstance(obj, dict):
        raise DataError(f"{path}: expected a dict, got {type(obj).__name__}; {hint}")
    obj = {k.encode() if isinstance(k, str) else k: v for k, v in obj.items()}
    missing = [k for k in (b"data", b"labels") if k not in obj]
    if missing:
        raise DataError(f"{path}: missing key(s) {missing} (has {sorted(obj)}); {hint}")
    data = obj[b"data"]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        desc = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise DataError(f"{path}: b'data' must be uint8 of shape (N, 3072), got {desc}; {hint}")
    try:
        labels = np.asarray(obj[b"labels"], dtype=np.int64)
    except (TypeError, ValueError) as e:
        raise DataError(f"{path}: b'labels' is not a list of integers; {hint}") from e
    if labels.shape != (len(data),):
        raise DataError(f"{path}: {len(data)} images but b'labels' has shape {labels.shape}; {hint}")
    if labels.size and (labels.min() < 0 or labels.max() >= 10):
        raise DataError(f"{path}: labels outside [0, 10) (range {labels.min()}..{labels.max()}); {hint}")
    # Rows are channel-major: 1024 red, 1024 green, 1024 blue, each 32x32 row-major.
    x = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return x, labels.astype(np.int32)


def load_cifar10(data_dir: str | os.PathLike | None = None) -> Dataset:
    """CIFAR-10 (50000/10000 images of 32x32x3) from the ``cifar-10-batches-py`` pickles.

    ``data_dir`` may be the ``cifar-10-batches-py`` folder or its parent. Images
    are returned NHWC (the pickles store them channel-major).
    """
    _, split = cifar_uint8(data_dir)
    (xtr, ytr), (xte, yte) = split["train"], split["test"]
    return Dataset(unit_float(xtr), ytr, unit_float(xte), yte, name="cifar10", num_classes=10)


def cifar_uint8(data_dir: str | os.PathLike | None) -> tuple[Path, dict[str, tuple[np.ndarray, np.ndarray]]]:
    """The folder used and ``{"train": (x, y), "test": (x, y)}``, x uint8 NHWC, y int32."""
    d = find_dir("cifar10", data_dir)
    hint = f"replace {d} with a fresh copy: {GET_HINT['cifar10']}"
    parts = [_read_cifar_batch(d / f, hint) for f in CIFAR_FILES]
    train = (np.concatenate([p[0] for p in parts[:5]]), np.concatenate([p[1] for p in parts[:5]]))
    return d, {"train": train, "test": parts[5]}


# -------------------------------------------------------------------------- digits

DIGITS_N_TRAIN = 1500


def load_digits() -> Dataset:
    """scikit-learn's 1797 8x8 digits: first 1500 train, last 297 test, scaled to [0, 1].

    Bundled with scikit-learn, so it is the dataset for offline smoke tests. The
    split is positional (deterministic, no RNG); raw values are 0..16.
    """
    try:
        from sklearn.datasets import load_digits as sk_load_digits
    except ImportError as e:
        raise DataError("digits needs scikit-learn: pip install 'dynsim[train]'") from e
    b = sk_load_digits()
    x = (np.asarray(b.images, np.float32) / np.float32(16.0))[..., None]
    y = np.asarray(b.target, np.int32)
    n = DIGITS_N_TRAIN
    return Dataset(x[:n], y[:n], x[n:], y[n:], name="digits", num_classes=10)


# ----------------------------------------------------------------------- dispatch

_LOADERS = {"mnist": load_mnist, "fashion_mnist": load_fashion_mnist, "cifar10": load_cifar10}


def load_files(name: str, data_dir: str | os.PathLike | None = None) -> Dataset:
    """Dataset ``name`` read from local files (``backend="files"`` of :func:`dynsim.data.load`).

    >>> load_files("digits").x_train.shape
    (1500, 8, 8, 1)
    """
    name = canonical_name(name)
    if name == "digits":
        return load_digits()
    return _LOADERS[name](data_dir)
