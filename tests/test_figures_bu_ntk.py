"""Quick run of bu-hb-vs-nag: heavy ball exponential and fastest, NAG between it and GD."""
import pytest
from figure_smoke import read_csv, run_quick


@pytest.mark.slow
def test_bu_quick(tmp_path):
    out, notes = run_quick("bu-hb-vs-nag", tmp_path)
    d = read_csv(out / "bu-hb-vs-nag.csv")
    hb = [float(v) for v in d["HB_loss"]]
    gd = [float(v) for v in d["GD_loss"]]
    nag = [float(v) for v in d["NAG_gamma3_loss"]]
    assert hb[-1] < 1e-8 * hb[0] and hb[-1] < nag[-1] < gd[-1]
    assert "| paper (Bu et al.) | ours |" in notes
