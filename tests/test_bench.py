"""dynsim bench: the numpy reference is the same computation; the CLI writes its JSON."""
import json

import jax
import numpy as np
import pytest

import dynsim
from dynsim import bench, cli, data


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


@pytest.mark.slow
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


def test_bench_train_prints_text_and_writes_json(monkeypatch, tmp_path, capsys):
    from dynsim.bench import training

    calls = {}
    result = {"n_models": 4, "model": "m", "steps": 3, "n_train": 10, "data": "random", "device_kind": "cpu",
              "platform": "cpu", "repeats": 2, "load_average_1min_start": 0.5, "vmapped_model_steps_per_s": 100.0,
              "sequential_model_steps_per_s": 10.0, "sequential_models_timed": 2, "speedup": 10.0,
              "flop_per_model_step": 1e3, "fraction_of_matmul_rate": 0.01, "matmul_flops_per_s": 1e7,
              "store_and_shard": {"store_cost": 0.1, "store_and_shard_cost": -0.2}}
    monkeypatch.setattr(training, "benchmark", lambda **kw: (calls.update(kw=kw), result)[1])
    out = tmp_path / "t.json"
    assert cli.main(["bench", "--train", "--points", "4", "--steps", "3", "--repeats", "2", "--out", str(out)]) == 0
    assert calls["kw"] == {"n_models": 4, "steps": 3, "repeats": 2}
    assert json.loads(out.read_text()) == result
    text = capsys.readouterr().out
    assert "speed-up: 10.0x" in text and "model-steps/s" in text and not text.lstrip().startswith("{")
    assert cli.main(["bench", "--train", "--points", "4", "--steps", "3", "--repeats", "2", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == result


@pytest.mark.slow
def test_benchmark_reports_both_rates():
    from dynsim.bench import training

    d = data.load("digits")
    tiny = d._replace(x_train=d.x_train[:120], y_train=d.y_train[:120], x_test=d.x_test[:40], y_test=d.y_test[:40])
    res = training.benchmark(n_models=4, steps=2, repeats=1, n_train=100, sequential_models=2,
                             hidden=(4,), dataset=tiny.flatten()._replace(
                                 x_train=np.tile(tiny.flatten().x_train, (1, 13))[:, :784],
                                 x_test=np.tile(tiny.flatten().x_test, (1, 13))[:, :784]))
    assert res["n_models"] == 4 and res["steps"] == 2 and res["n_train"] == 100
    assert res["vmapped_model_steps_per_s"] > 0 and res["sequential_model_steps_per_s"] > 0
    np.testing.assert_allclose(res["speedup"],
                               res["vmapped_model_steps_per_s"] / res["sequential_model_steps_per_s"])
    assert res["platform"] == jax.devices()[0].platform
