"""The in-memory dataset type every loader returns, its error, and small helpers on it.

Full-batch gradient descent needs the whole training set at once, so a :class:`Dataset`
holds plain numpy arrays (images float32 in [0, 1], NHWC; labels int32) and nothing is
streamed.
"""
from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

__all__ = ["DataError", "Dataset", "one_hot", "validation_split", "unit_float"]


class DataError(ValueError):
    """Missing, corrupt or mismatched dataset files; the message says how to fix it."""


class Dataset(NamedTuple):
    """Train/test arrays of one dataset, all held in memory for full-batch training.

    Images are float32 in [0, 1] with layout (N, H, W, C); labels are int32 in
    ``[0, num_classes)``. A NamedTuple so it unpacks, pickles and passes through
    ``jax.tree_util`` untouched (``name``/``num_classes`` are leaves too, so pass
    the arrays, not the tuple, into jitted code).
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    name: str
    num_classes: int

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one example, e.g. ``(28, 28, 1)``."""
        return tuple(self.x_train.shape[1:])

    def flatten(self) -> "Dataset":
        """Same data with each image flattened to a vector (N, H*W*C), for MLPs.

        >>> ds = Dataset(np.zeros((4, 2, 3, 1), np.float32), np.zeros(4, np.int32),
        ...              np.zeros((2, 2, 3, 1), np.float32), np.zeros(2, np.int32), "toy", 10)
        >>> ds.flatten().x_train.shape, ds.flatten().x_test.shape
        ((4, 6), (2, 6))
        """
        return self._replace(
            x_train=self.x_train.reshape(len(self.x_train), -1),
            x_test=self.x_test.reshape(len(self.x_test), -1),
        )

    def __repr__(self) -> str:  # the default would print every pixel
        return (f"Dataset(name={self.name!r}, num_classes={self.num_classes}, "
                f"x_train={self.x_train.shape} {self.x_train.dtype}, y_train={self.y_train.shape}, "
                f"x_test={self.x_test.shape} {self.x_test.dtype}, y_test={self.y_test.shape})")


def one_hot(y: Any, n: int) -> np.ndarray:
    """Float32 one-hot rows for integer labels ``y`` in ``[0, n)`` (MSE-loss targets).

    Out-of-range labels raise instead of producing an all-zero row.

    >>> one_hot(np.array([0, 2]), 3)
    array([[1., 0., 0.],
           [0., 0., 1.]], dtype=float32)
    """
    y = np.asarray(y)
    if y.size and (y.min() < 0 or y.max() >= n):
        raise ValueError(f"one_hot: labels must lie in [0, {n}), got range [{y.min()}, {y.max()}]")
    return np.eye(n, dtype=np.float32)[y.astype(np.int64)]


def validation_split(ds: Dataset, n_valid: int, seed: int = 0) -> Dataset:
    """Hold out ``n_valid`` random training examples as the "test" set.

    Tuning on the real test set leaks it into the hyperparameters; this keeps the
    same :class:`Dataset` interface so training code needs no change. The split is
    a deterministic function of ``seed``; the original test set is dropped.

    >>> ds = Dataset(np.arange(10.0).reshape(10, 1), np.arange(10), np.zeros((1, 1)), np.zeros(1), "toy", 10)
    >>> v = validation_split(ds, 3, seed=0)
    >>> v.x_train.shape, v.x_test.shape, v.name
    ((7, 1), (3, 1), 'toy/valid')
    >>> sorted(np.concatenate([v.y_train, v.y_test]).tolist()) == list(range(10))
    True
    """
    n = len(ds.x_train)
    if not 0 < int(n_valid) < n:
        raise ValueError(f"validation_split: n_valid must be in [1, {n - 1}] for {n} training examples, got {n_valid}")
    perm = np.random.default_rng(seed).permutation(n)
    va, tr = np.sort(perm[:n_valid]), np.sort(perm[n_valid:])
    return ds._replace(x_train=ds.x_train[tr], y_train=ds.y_train[tr],
                       x_test=ds.x_train[va], y_test=ds.y_train[va], name=f"{ds.name}/valid")


def unit_float(x: np.ndarray) -> np.ndarray:
    """uint8 pixels -> float32 in [0, 1], dividing in place to avoid a second full copy."""
    out = np.asarray(x).astype(np.float32)
    out /= np.float32(255.0)
    return out

