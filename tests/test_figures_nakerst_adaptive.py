"""Quick runs of nakerst-fig7, nakerst-fig8 and adam-sa (Nakerst §5 and Adam-SA)."""
import numpy as np
import pytest
from figure_smoke import read_csv, run_quick


@pytest.mark.slow
def test_fig7_quick(tmp_path):
    out, notes = run_quick("nakerst-fig7", tmp_path)
    r = read_csv(out / "nakerst-fig7.csv")
    s = dict(zip((round(float(e), 6) for e in r["eta"]), (float(v) for v in r["sigma_star"])))
    assert 1.0 < s[0.01] < 4.0 and s[0.001] > s[0.01]  # σ* well above g, larger at smaller η
    assert "| quantity | paper" in notes


@pytest.mark.slow
def test_fig8_quick(tmp_path):
    out, notes = run_quick("nakerst-fig8", tmp_path)
    d = read_csv(out / "nakerst-fig8.csv")
    d0, d2 = float(d["eta0.01_sigma0_distance"][-1]), float(d["eta0.01_sigma2_distance"][-1])
    assert np.isfinite(d0) and d2 < d0  # super-acceleration speeds RMSProp up at η = 0.01
    assert "| paper (§5.2) | ours |" in notes


@pytest.mark.slow
def test_adam_sa_quick(tmp_path):
    out, notes = run_quick("adam-sa", tmp_path)
    r = read_csv(out / "adam-sa.csv")
    s = dict(zip((round(float(e), 6) for e in r["eta"]), (float(v) for v in r["sigma_star"])))
    assert np.isnan(s[0.001])  # |θ| does not decay within the quick run: σ* undefined, not made up
    assert 1.0 < s[0.1] < 10.0
    assert "MNIST part skipped" in notes
