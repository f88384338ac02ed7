"""Quick runs of the edge-of-stability figures write their PNG, CSV, config.json and NOTES.md."""
import csv
import json

import numpy as np
import pytest

from dynsim import analysis, figures


def test_eos_figures_are_registered():
    figs = figures.available()
    for name in ("eos-sa", "eos-adam-sa"):
        assert name in figs and figs[name].fn.__module__ == "dynsim.figures.eos"


@pytest.mark.slow
@pytest.mark.parametrize("name, stem", [("eos-sa", "eos_sa"), ("eos-adam-sa", "eos_adam_sa")])
def test_quick_run_writes_all_outputs(name, stem, tmp_path):
    out = figures.run(name, tmp_path / name, quick=True)
    png = out / f"{stem}.png"
    assert png.stat().st_size > 10_000 and png.read_bytes()[:4] == b"\x89PNG"
    with open(out / f"{stem}.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) > 10
    # every row's threshold is the analysis formula for its hyperparameters
    for r in rows:
        eta, mu, s = float(r["learning_rate"]), float(r["momentum"]), float(r["sigma"])
        want = (analysis.preconditioned_stability_threshold(eta, mu, s, ema=True) if name == "eos-adam-sa"
                else analysis.stability_threshold(eta, mu, s))
        assert float(r["threshold"]) == pytest.approx(float(want), rel=1e-9)
        if r["sharpness"] not in ("nan", ""):
            assert float(r["sharpness_over_threshold"]) == pytest.approx(
                float(r["sharpness"]) / float(r["threshold"]), rel=1e-6)  # float32 sharpness
    assert np.isfinite([float(r["sharpness"]) for r in rows if r["step"] == "0"
                        and name == "eos-sa"]).all()
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["figure"] == name and "digits" in cfg["config"]["dataset"]
    notes = (out / "NOTES.md").read_text()
    assert "QUICK" in notes and "| " in notes and "Cohen" in notes
    if name == "eos-sa":
        assert {r["panel"] for r in rows} == {"a", "b", "c"}
        assert {"GD", "σ=0 (heavy ball)", "σ=0.9 (Nesterov)", "σ=2", "σ=4", "σ=20"} <= {r["label"] for r in rows}
