"""Quick run of quadratic-spectrum: the exact optimum beats σ ± δ in real runs; the sign theorem holds."""
import pytest
from figure_smoke import read_csv, run_quick


@pytest.mark.slow
def test_quadratic_spectrum_quick(tmp_path):
    out, notes = run_quick("quadratic-spectrum", tmp_path)
    sim = read_csv(out / "quadratic-spectrum-simulation.csv")
    assert all(float(e) < 1e-2 for e in sim["rel_err_opt"])
    assert "0 (two-point) and 0 (log-uniform) mismatches" in notes
