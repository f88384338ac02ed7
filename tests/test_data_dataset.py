"""dynsim.data.dataset: the Dataset type (shape, flatten, repr), one_hot and validation_split."""
import numpy as np
import pytest

from dynsim import data


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
