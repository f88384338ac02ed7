"""The one entry point to every dataset: :func:`load`, reading local files or a prepared
tensorflow_datasets folder (the two backends give the same arrays, bit for bit).
"""
from __future__ import annotations

import os

from dynsim.data.dataset import Dataset
from dynsim.data.paths import canonical_name
from dynsim.data.sources import load_files
from dynsim.data.tfds import load_tfds

__all__ = ["load"]


def load(name: str, data_dir: str | os.PathLike | None = None, backend: str = "files") -> Dataset:
    """Load dataset ``name`` (mnist, fashion_mnist, cifar10, digits) as a :class:`~dynsim.data.Dataset`.

    ``backend="files"`` reads local files (see :mod:`dynsim.data.sources`); ``"tfds"``
    reads a prepared tensorflow_datasets folder (see :func:`~dynsim.data.tfds.tfds_dir`,
    :func:`~dynsim.data.tfds.prepare_tfds`) offline and returns exactly the same arrays.

    >>> load("digits").x_train.shape
    (1500, 8, 8, 1)
    """
    name = canonical_name(name)
    if backend == "tfds":
        return load_tfds(name, data_dir)
    if backend != "files":
        raise ValueError(f"unknown backend {backend!r}; choose 'files' or 'tfds'")
    return load_files(name, data_dir)
