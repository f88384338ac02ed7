"""Quick runs of nakerst-fig3 and nakerst-fig4 (Nakerst §3): files written, key numbers as in the paper."""
import pytest
from figure_smoke import read_csv, run_quick


@pytest.mark.slow
def test_fig3_quick(tmp_path):
    out, notes = run_quick("nakerst-fig3", tmp_path)
    cyc = read_csv(out / "nakerst-fig3-cycles.csv")
    assert set(cyc["period"]) == {"2"} and max(float(v) for v in cyc["max_abs_multiplier"]) < 1
    d = read_csv(out / "nakerst-fig3.csv")
    # paper: σ = 3-4 best of the set, GD and heavy ball far from θ* after 180 steps
    assert float(d["sigma4_distance"][-1]) < 0.01 and float(d["sigma3_distance"][-1]) < 0.01
    assert float(d["gd_distance"][-1]) > 0.3 and float(d["sigma0_distance"][-1]) > 0.3
    assert "period 2" in notes and "| quantity | paper" in notes


@pytest.mark.slow
def test_fig4_quick(tmp_path):
    out, notes = run_quick("nakerst-fig4", tmp_path)
    r = read_csv(out / "nakerst-fig4-rates.csv")
    for m, err in zip(r["method"], r["rel_err"]):
        if m != "gd":  # GD's fit window starts beyond the quick run
            assert float(err) < 1e-6, m
    assert "| paper (§3.2) | ours |" in notes
