"""dynsim bench: the numpy reference is the same computation; the CLI writes its JSON."""
import argparse
import json

import numpy as np

import dynsim
from dynsim import bench


def test_numpy_reference_matches_the_sweep_and_closed_form():
    grid = bench.sweep_grid(600)
    KE, MU, SG = np.meshgrid(grid["k_eta"], grid["momentum"], grid["sigma"], indexing="ij")
    ref = bench.numpy_reference(KE, MU, SG, 512)
    ds = dynsim.sweep("super_accelerated", "quadratic", grid, 512, list(bench.SIGMA_STAR_METRICS), progress=False)
    ok = ~ref["diverged"] & np.isfinite(ref["rate"])
    assert ok.sum() > 100
    assert ref["rate"].dtype == np.float32
    np.testing.assert_allclose(ref["rate"][ok], ds.rate.values.ravel()[ok], rtol=1e-4, atol=1e-6)
    np.testing.assert_array_equal(ref["diverged"], ds.diverged.values.ravel())


def test_bench_cli_writes_json(tmp_path, capsys):
    out = tmp_path / "b.json"
    args = argparse.Namespace(train=False, points=3000, steps=256, repeats=2, out=str(out))
    assert bench.cli(args) == 0
    res = json.loads(out.read_text())
    for key in ("device", "sigma_star_metrics", "sigma_star_metrics_fit_every_128", "all_metrics", "numpy_reference",
                "ratio_jax_over_numpy", "ratio_jax_over_numpy_per_cpu_s"):
        assert key in res
    assert res["sigma_star_metrics"]["point_steps_per_s"] > 0 and len(res["sigma_star_metrics"]["times_s"]) == 2
    assert res["numpy_reference"]["max_abs_rate_difference_vs_jax"] < 1e-4
    assert "ratio jax / numpy" in capsys.readouterr().out


def test_bench_train_calls_dynsim_train_or_says_why(monkeypatch, capsys):
    import sys
    import types

    calls = {}
    fake = types.ModuleType("dynsim.training")
    fake.benchmark = lambda **kw: calls.setdefault("kw", kw) or {"models_per_s": 1.0}
    monkeypatch.setitem(sys.modules, "dynsim.training", fake)
    monkeypatch.setattr(dynsim, "training", fake, raising=False)
    args = argparse.Namespace(train=True, points=4, steps=3, repeats=2, out=None)
    assert bench.cli(args) == 0
    assert calls["kw"] == {"n_models": 4, "steps": 3, "repeats": 2}
    del fake.benchmark
    assert bench.cli(args) == 1
    assert "benchmark" in capsys.readouterr().out
