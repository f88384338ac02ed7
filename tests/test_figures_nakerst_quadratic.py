"""Quick runs of nakerst-fig1 and nakerst-fig2a produce their files with sensible content."""
import json

import numpy as np
import pandas as pd

from dynsim import analysis, figures
from dynsim.figures import nakerst_quadratic  # direct import: independent of the other figure modules


def test_registered():
    assert figures._REGISTRY["nakerst-fig1"].fn is nakerst_quadratic.fig1
    assert figures._REGISTRY["nakerst-fig2a"].fn is nakerst_quadratic.fig2a


def test_fig1_quick(tmp_path):
    out = tmp_path / "f1"
    out.mkdir()
    nakerst_quadratic.fig1(out, quick=True)
    for name in ("nakerst-fig1.png", "sigma_star.csv", "locate.csv", "T_vs_sigma.csv", "config.json", "NOTES.md"):
        assert (out / name).exists(), name
    df = pd.read_csv(out / "sigma_star.csv")
    assert list(df.columns) == ["k_eta", "momentum", "sigma_star_sweep", "sigma_star_exact", "sigma_star_ode12",
                                "sigma_star_ode13", "sigma_star_ode14"]
    exact = (df.momentum - (1 - np.sqrt(df.k_eta)) ** 2) / df.k_eta  # float64 oracle
    np.testing.assert_allclose(df.sigma_star_exact, exact, rtol=1e-12)
    np.testing.assert_allclose(df.sigma_star_ode12, exact + 1, rtol=1e-12)
    # quick mode refines with 2^14 steps: σ* to ~1e-3 (absolute near the zero crossing)
    assert np.all(np.abs(df.sigma_star_sweep - exact) <= 1e-3 * np.maximum(np.abs(exact), 3))
    assert json.loads((out / "config.json").read_text())["figure"] == "nakerst-fig1"
    assert "0.0026334" in (out / "NOTES.md").read_text()


def test_fig2a_quick(tmp_path):
    out = tmp_path / "f2"
    out.mkdir()
    nakerst_quadratic.fig2a(out, quick=True)
    for name in ("nakerst-fig2a.png", "trajectories.csv", "fits.csv", "config.json", "NOTES.md"):
        assert (out / name).exists(), name
    fits = pd.read_csv(out / "fits.csv")
    assert list(fits.regime_exact) == ["underdamped", "critical", "overdamped"]
    under = fits.iloc[0]
    # with an amplitude the under-damped fit recovers the exact rate and frequency
    np.testing.assert_allclose(under.T_fit4, float(analysis.timescale(0.01, 0.9, 0.9)), rtol=1e-3)
    np.testing.assert_allclose(under.omega_fit4, under.omega_exact, rtol=1e-3)
    assert np.all(fits.rms_residual < 0.05)
