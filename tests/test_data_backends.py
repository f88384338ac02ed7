"""dynsim.data.backends: load's choice of dataset name and backend."""
import pytest

from dynsim import data
from dynsim.data import DataError


def test_load_bad_name_and_backend(monkeypatch):
    with pytest.raises(ValueError, match="unknown dataset"):
        data.load("imagenet")
    with pytest.raises(ValueError, match="unknown backend"):
        data.load("digits", backend="torch")
    monkeypatch.setitem(__import__("sys").modules, "tensorflow_datasets", None)  # import fails
    with pytest.raises(DataError, match=r"pip install 'dynsim\[tfds\]'"):
        data.load("mnist", backend="tfds")
