"""Quick run of nakerst-fig2bc: the ODE coefficients (9)-(11), the exact σ* and the brute-force minimiser."""
import numpy as np
import pytest
from figure_smoke import read_csv, run_quick


@pytest.mark.slow
def test_fig2bc_quick(tmp_path):
    out, notes = run_quick("nakerst-fig2bc", tmp_path)
    k, g, s = 0.01, 0.9, 1.0
    alpha = g - k * s - 1  # Nakerst eq. (6)
    d = read_csv(out / "nakerst-fig2bc.csv")
    A = [float(v) for v in d["A"]]
    B = [float(v) for v in d["B"]]
    np.testing.assert_allclose(A, [-alpha, -alpha / (1 + alpha), -alpha / (1 + alpha / 2)], rtol=1e-12)
    np.testing.assert_allclose(B, [k, k / (1 + alpha), k / (1 + alpha / 2)], rtol=1e-12)
    # eq. (12) is the exact σ* plus one, at every kη
    assert abs(float(d["sigma_star_max_abs_err"][0]) - 1.0) < 1e-9
    # ODE (11) has the map's decay rate and frequency to ≈ 0.1 % (paper: (11) is best)
    assert max(float(d["decay_rate_rel_err"][2]), float(d["frequency_rel_err"][2])) < 2e-3
    assert float(d["decay_rate_rel_err"][2]) < min(float(v) for v in d["decay_rate_rel_err"][:2])
    c = read_csv(out / "nakerst-fig2c.csv")
    ke = np.array(c["k_eta"], float)
    np.testing.assert_allclose(np.array(c["sigma_star_exact"], float), (g - (1 - np.sqrt(ke)) ** 2) / ke, rtol=1e-12)
    bf = read_csv(out / "nakerst-fig2c_bruteforce.csv")
    step = 41.0 / 20000  # the quick σ grid
    assert np.max(np.abs(np.array(bf["sigma_argmin_rho"], float) - np.array(bf["sigma_star_exact"], float))) <= step
    assert "ODE (11)" in notes
