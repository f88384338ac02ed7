"""Shared by the figure smoke tests (``tests/test_figures_*.py``): run one figure in quick mode."""
import csv
import json

from dynsim import figures


def run_quick(name, tmp_path, stem=None):
    """``dynsim figure NAME --quick`` into ``tmp_path``; checks the files every figure writes.

    Returns ``(out, notes)``: the output folder and the text of its ``NOTES.md``.
    """
    out = figures.run(name, tmp_path / name, quick=True)
    stem = stem or name
    for f in (f"{stem}.png", f"{stem}.csv", "config.json", "NOTES.md"):
        assert (out / f).is_file() and (out / f).stat().st_size > 0, f
    assert (out / f"{stem}.png").read_bytes()[:4] == b"\x89PNG"
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["figure"] == name and cfg["config"]["quick"] is True
    notes = (out / "NOTES.md").read_text()
    assert notes.startswith("# ") and "| " in notes  # a title and at least one table
    return out, notes


def read_csv(path):
    """A CSV file as ``{column: [str, ...]}``."""
    with open(path) as f:
        rows = list(csv.DictReader(f))
    return {k: [r[k] for r in rows] for k in rows[0]}

