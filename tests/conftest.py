"""Tests compare against closed forms in float64; float32 tests opt in explicitly.

Tolerances are per dtype: ``TOL[dtype]``.
"""
import os

# Several CPU devices, so sharding code paths are exercised without a GPU.
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("MPLBACKEND", "Agg")

import jax  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

jax.config.update("jax_enable_x64", True)

TOL = {np.float64: 1e-12, np.float32: 1e-5}


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture(scope="module")
def tiny():
    """120 train / 40 test images of sklearn's 8x8 digits (no download): the training tests' small problem."""
    from dynsim import data

    d = data.load("digits")
    return d._replace(x_train=d.x_train[:120], y_train=d.y_train[:120], x_test=d.x_test[:40], y_test=d.y_test[:40])
