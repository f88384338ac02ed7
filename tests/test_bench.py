"""dynsim bench: the numpy reference is the same computation; the CLI writes its JSON."""
import json

import numpy as np

import dynsim
from dynsim import bench, cli


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
    assert cli.main(["bench", "--points", "3000", "--steps", "256", "--repeats", "2", "--out", str(out)]) == 0
    res = json.loads(out.read_text())
    for key in ("device", "sigma_star_metrics", "sigma_star_metrics_fit_every_128", "all_metrics", "numpy_reference",
                "ratio_jax_over_numpy", "ratio_jax_over_numpy_per_cpu_s", "ceiling", "fraction_of_ceiling",
                "flops_per_point_step", "user_code_optax_adam"):
        assert key in res
    assert res["sigma_star_metrics"]["point_steps_per_s"] > 0 and len(res["sigma_star_metrics"]["times_s"]) == 2
    assert res["numpy_reference"]["max_abs_rate_difference_vs_jax"] < 1e-4
    assert res["ceiling"]["flops_per_s"] > 0 and 0 < res["fraction_of_ceiling"]
    uc = res["user_code_optax_adam"]
    assert uc["point_steps_per_s"] > 0 and uc["python_loop"]["point_steps_per_s"] > 0
    text = capsys.readouterr().out
    assert "ratio jax / numpy" in text and "of the ceiling" in text and "optax.adam" in text


def test_step_flops_counts_the_map():
    """One SA step on kθ²/2 is a handful of FLOPs per point (mul/add of θ, u, σ, η, μ, k)."""
    assert 4 <= bench.step_flops() <= 12


def test_bench_train_calls_dynsim_training_benchmark(monkeypatch, tmp_path):
    from dynsim import training

    calls = {}
    monkeypatch.setattr(training, "benchmark", lambda **kw: (calls.update(kw=kw), {"models_per_s": 1.0})[1])
    out = tmp_path / "t.json"
    assert cli.main(["bench", "--train", "--points", "4", "--steps", "3", "--repeats", "2", "--out", str(out)]) == 0
    assert calls["kw"] == {"n_models": 4, "steps": 3, "repeats": 2}
    assert json.loads(out.read_text()) == {"models_per_s": 1.0}
