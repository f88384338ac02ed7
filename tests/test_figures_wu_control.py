"""Quick runs of wu-fig2, wu-fig3, wu-fig5 and wu-table1 (Wu et al. §3) against the closed-loop formulas."""
import json
import math

import numpy as np
import pytest
from figure_smoke import read_csv, run_quick

K0, MU = 100.0, 0.9



def _overshoot_pct(zeta):
    return 100 * math.exp(-math.pi * zeta / math.sqrt(1 - zeta * zeta))


def test_wu_fig2_quick(tmp_path):
    """SGD, K0 r/(s + K0 r): y = 1 − e^{−K0 r t}, so no overshoot and t_s(2%) = ln 50/(K0 r)."""
    out, notes = run_quick("wu-fig2", tmp_path)
    d = read_csv(out / "wu-fig2.csv")
    dt = 50 / 2000  # the quick time grid
    for r, ts, ov in zip(d["r"], d["settling_time_2pct"], d["overshoot_pct"]):
        assert abs(float(ts) - math.log(50) / (K0 * float(r))) <= dt and float(ov) == 0.0
    assert "3/(K0 r)" in notes


def test_wu_fig3_quick(tmp_path):
    """Momentum, K0 r/(μs² + s + K0 r): ζ = 1/(2√(K0 r μ)); under-damped overshoot e^{−πζ/√(1−ζ²)}."""
    out, _ = run_quick("wu-fig3", tmp_path)
    d = read_csv(out / "wu-fig3.csv")
    n_under = 0
    for r, mu, zeta, ov in zip(d["r"], d["mu"], d["damping_ratio"], d["overshoot_pct"]):
        z = 1 / (2 * math.sqrt(K0 * float(r) * float(mu)))
        assert float(zeta) == pytest.approx(z, rel=1e-9)
        if z < 0.9:
            n_under += 1
            assert float(ov) == pytest.approx(_overshoot_pct(z), abs=0.05)
    assert n_under >= 2


def test_wu_fig5_quick(tmp_path):
    """NAG: ξ = (1 + K0rμ)/(2√(K0αrμ)); no overshoot for α ≤ 1; the solved α gives the paper's peak 1.35."""
    out, notes = run_quick("wu-fig5", tmp_path)
    alpha = json.loads((out / "config.json").read_text())["config"]["alpha"]
    d = read_csv(out / "wu-fig5.csv")
    for r, mu, zeta in zip(d["r"], d["mu"], d["damping_ratio"]):
        r, mu = float(r), float(mu)
        xi = (1 + K0 * r * mu) / (2 * math.sqrt(K0 * alpha * r * mu))
        if xi < 1:  # under-damped: the poles' damping ratio is the formula's
            assert float(zeta) == pytest.approx(xi, rel=1e-9)
    p = read_csv(out / "wu-fig5_peak_vs_alpha.csv")
    a, peak = np.array(p["alpha"], float), np.array(p["peak"], float)
    assert np.all(peak[a <= 1] <= 1 + 1e-6)
    assert np.all(np.diff(peak[a > 1.5]) > 0)  # monotone beyond α ≈ 1
    assert np.interp(math.log(alpha), np.log(a), peak) == pytest.approx(1.35, abs=5e-3)
    assert "| NAG peak, same parameters | 1.35 |" in notes


def test_wu_table1_quick(tmp_path):
    out, _ = run_quick("wu-table1", tmp_path)
    d = read_csv(out / "wu-table1.csv")
    row = {m: i for i, m in enumerate(d["model"])}
    r = 0.1
    assert abs(float(d["settling_time_2pct"][row["SGD"]]) - math.log(50) / (K0 * r)) <= 0.01
    z = 1 / (2 * math.sqrt(K0 * r * MU))
    i = row["SGD momentum"]
    assert float(d["zeta"][i]) == pytest.approx(z, rel=1e-9)
    assert float(d["overshoot_pct"][i]) == pytest.approx(_overshoot_pct(z), abs=0.05)
    nag = next(m for m in d["model"] if "peak 1.35" in m)
    assert float(d["peak"][row[nag]]) == pytest.approx(1.35, abs=2e-3)  # sampled every 0.01 s in quick mode
