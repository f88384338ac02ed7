"""Smoke test of the sweeps/ scripts: run sigma_star.py on a tiny grid."""
import json
import pathlib
import runpy

import numpy as np
import pandas as pd

from dynsim import analysis
from dynsim import engine as sw
from dynsim.engine.plot import exact_sigma_star

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_sigma_star_script_tiny(tmp_path, capsys):
    script = runpy.run_path(str(ROOT / "sweeps" / "sigma_star.py"), run_name="sweeps_sigma_star")
    out = tmp_path / "s"
    rc = script["main"]([
        "--out", str(out), "--no-progress",
        "--set", "steps=512",
        "--set", "grid.k_eta={geomspace = [0.01, 0.1, 3]}",
        "--set", "grid.momentum=[0.9]",
        "--set", "grid.sigma={linspace = [0.0, 12.0, 25]}",
        "--set", "locate.refine_steps=16384",
        "--set", "locate.T_scan=4",
    ])
    assert rc == 0
    for name in ("config.toml", "config.json", "results.zarr", "progress.log", "locate.csv", "locate.png"):
        assert (out / name).exists(), name
    meta = json.loads((out / "config.json").read_text())
    assert meta["sweep"]["steps"] == 512 and meta["source"]["locate"]["refine_steps"] == 16384
    ds = sw.open_result(out)
    assert ds.rate.shape == (3, 1, 25)
    loc = pd.read_csv(out / "locate.csv")
    exact = np.asarray(analysis.critical_sigma(loc.k_eta.values, loc.momentum.values))
    np.testing.assert_allclose(loc.sigma_star.values, exact, rtol=2e-3)
    # the plot's overlay is the same closed form, on the located dataset's own dims
    located = sw.locate(ds, refine=False)
    np.testing.assert_allclose(exact_sigma_star(located).values[:, 0], exact, rtol=1e-12)
    # bad input: one line, exit 2
    capsys.readouterr()
    assert script["main"](["--out", str(tmp_path / "x"), "--set", "grid.k_eta=[-1.0, 0.1]"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "k_eta" in err
