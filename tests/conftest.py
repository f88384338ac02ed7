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


# ---- the set-ups of the dynsim.data tests (tests/test_data_*.py, tests/test_cli_data.py); see tests/datafiles.py


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """dynsim.data's default search locations point into tmp_path only."""
    import datafiles

    return datafiles.isolate(tmp_path, monkeypatch)


@pytest.fixture
def fake_npm(tmp_path, monkeypatch):
    """npm replaced by a local tarball of tiny IDX files; checksums patched to match."""
    import datafiles

    return datafiles.install_fake_npm(tmp_path, monkeypatch)


@pytest.fixture
def tfds():
    return pytest.importorskip("tensorflow_datasets")


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to resolve a host or open a connection fails the test."""
    import datafiles

    attempts = datafiles.block_network(monkeypatch)
    yield attempts
    assert attempts == [], f"tried to reach the network: {attempts}"


@pytest.fixture
def tfds_home(tmp_path, monkeypatch, tfds, no_network):
    """$TFDS_DATA_DIR and dynsim.data's default locations inside tmp_path."""
    import datafiles

    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path / "tensorflow_datasets"))
    return datafiles.isolate(tmp_path, monkeypatch)


# ---- the set-ups of the dynsim.view tests (tests/test_view_*.py, tests/test_cli_view.py); see tests/viewpages.py


@pytest.fixture(scope="session")
def land_store(tmp_path_factory):
    """A (kη, μ, σ) super-acceleration sweep on the quadratic, with its locate.csv."""
    import viewpages

    return viewpages.make_land_store(tmp_path_factory.mktemp("view") / "land")


@pytest.fixture(scope="session")
def train_store(tmp_path_factory):
    """A (η, σ) × 2 seeds training sweep of a tiny MLP on sklearn's digits, with its sharpness."""
    import viewpages

    return viewpages.make_train_store(tmp_path_factory.mktemp("view") / "train")


@pytest.fixture
def browser(tmp_path):
    """Debian's chromium, headless, driven by selenium; quit after the test."""
    import viewpages

    driver = viewpages.new_browser(tmp_path)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def tiny():
    """120 train / 40 test images of sklearn's 8x8 digits (no download): the training tests' small problem."""
    from dynsim import data

    d = data.load("digits")
    return d._replace(x_train=d.x_train[:120], y_train=d.y_train[:120], x_test=d.x_test[:40], y_test=d.y_test[:40])
