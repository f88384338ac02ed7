"""Quick runs of the training figures write their PNG, CSV, config.json and NOTES.md."""
import csv
import json

import pytest

from dynsim import figures

FIGS = {
    "nakerst-fig5": "nakerst_fig5",
    "nakerst-fig6": "nakerst_fig6",
    "wu-table2": "wu_table2",
    "wu-table3": "wu_table3",
}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(FIGS))
def test_quick_run_writes_all_outputs(name, tmp_path):
    out = figures.run(name, tmp_path / name, quick=True)
    stem = FIGS[name]
    png = out / f"{stem}.png"
    assert png.stat().st_size > 10_000 and png.read_bytes()[:4] == b"\x89PNG"
    with open(out / f"{stem}.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) > 10
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["figure"] == name and "digits" in cfg["config"]["dataset"]
    notes = (out / "NOTES.md").read_text()
    assert "QUICK" in notes and "| " in notes  # labelled as a smoke run, with a paper-vs-ours table
    if name.startswith("nakerst"):
        # every legend entry trained, on the paper's σ set
        labels = {r["label"] for r in rows}
        assert {"GD", "σ=0 (heavy ball)", "σ=0.9 (Nesterov)", "σ=2", "σ=4", "σ=20"} <= labels
        assert all(r["test_accuracy"] not in ("", "nan") for r in rows)
    else:
        assert {r["optimizer"] for r in rows} == {"SGD", "Momentum", "NAG"}
        assert "K₀" in notes


def test_training_figures_are_registered():
    figs = figures.available()
    for name in FIGS:
        assert name in figs and figs[name].fn.__module__ == "dynsim.figures.training"
