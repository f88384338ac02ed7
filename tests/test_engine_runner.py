"""dynsim.engine.runner: a sweep runs every point as a direct run would, on any devices; it resumes bit-identically."""
import json

import jax
import jax.numpy as jnp
import numpy as np
import processes
import pytest

import dynsim
from dynsim import analysis, landscapes, optim
from dynsim import engine as sw
from dynsim.metrics import MetricConfig, run_metrics

SMALL = {"k_eta": np.array([0.01, 0.1]), "momentum": 0.9, "sigma": np.linspace(0.0, 12.0, 13)}




KILL_CONFIG = """
optimizer = "super_accelerated"
landscape = "quadratic"
steps = 6144
metrics = ["rate", "timescale", "overshoot", "diverged"]
chunk_size = 8

[grid]
k_eta = 0.02
momentum = [0.5, 0.9]
sigma = {linspace = [-5.0, 15.0, 96]}
"""


_MULTIHOST_WORKER = """
import os, sys
pid, n, port, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"
import jax
jax.distributed.initialize(coordinator_address=f"localhost:{port}", num_processes=n, process_id=pid)
from jax.experimental import multihost_utils
import numpy as np
from dynsim import engine as sw
grid = {"k_eta": np.geomspace(0.01, 0.5, 6), "momentum": np.array([0.5, 0.9]), "sigma": np.linspace(-1, 9, 11)}
kw = dict(metrics=["rate", "timescale", "diverged"], progress=False, chunk_size=22, out=out)
if jax.process_index() == 0:
    sw.sweep("sa", "quadratic", grid, 384, chunks=slice(0, 0), **kw)  # create the store
multihost_utils.sync_global_devices("store created")
sw.sweep("sa", "quadratic", grid, 384, chunks=slice(jax.process_index(), None, jax.process_count()), **kw)
print("devices", len(jax.devices()), len(jax.local_devices()), flush=True)
multihost_utils.sync_global_devices("done")
jax.distributed.shutdown()
"""


def test_dataset_layout_and_provenance():
    ds = dynsim.sweep("super_accelerated", "quadratic", SMALL, 512, ["rate", "rho", "diverged"], progress=False)
    assert ds.rate.dims == ("k_eta", "sigma") and ds.rate.shape == (2, 13)
    np.testing.assert_array_equal(ds.sigma.values, SMALL["sigma"])
    assert ds.rate.dtype == np.float32 and ds.diverged.dtype == bool
    for key in ("rule", "landscape", "steps", "dtype", "device", "dynsim_version", "seed", "config"):
        assert key in ds.attrs
    assert ds.attrs["rule"] == "super_accelerated" and ds.attrs["steps"] == 512
    assert json.loads(ds.attrs["fixed"]) == {"momentum": 0.9}


@pytest.mark.slow
def test_matches_direct_run_metrics_per_point():
    """Each grid point equals run_metrics on that point alone (float64)."""
    ds = dynsim.sweep("sa", "quadratic", SMALL, 512, ["rate", "timescale", "steps_to_eps"],
                      dtype="float64", progress=False)
    ke, sg = np.meshgrid(SMALL["k_eta"], SMALL["sigma"], indexing="ij")
    hp = {"learning_rate": jnp.asarray(ke.ravel()), "momentum": jnp.full(ke.size, 0.9),
          "sigma": jnp.asarray(sg.ravel())}
    ref = run_metrics(optim.super_accelerated, hp, landscapes.quadratic, {}, jnp.ones((ke.size, 1)), 512,
                      metrics=("rate", "timescale", "steps_to_eps"), options=MetricConfig(every=64))
    for k in ref:
        np.testing.assert_allclose(ds[k].values.ravel(), np.asarray(ref[k]), rtol=1e-12)


def test_sweeping_landscape_parameter_and_k_eta_product():
    """k_eta = kη: sweeping k with learning_rate fixed gives the same numbers as k_eta."""
    a = dynsim.sweep("sa", "quadratic", {"k_eta": np.array([0.02, 0.05]), "momentum": 0.9, "sigma": 2.0},
                     1024, ["rate"], dtype="float64", progress=False)
    b = dynsim.sweep("sa", "quadratic", {"k": np.array([2.0, 5.0]), "learning_rate": 0.01, "momentum": 0.9,
                                         "sigma": 2.0}, 1024, ["rate"], dtype="float64", progress=False)
    np.testing.assert_allclose(a.rate.values, b.rate.values, rtol=1e-9)


def test_nonlinear_landscape_and_adaptive_rule():
    ds = dynsim.sweep("rmsprop_sa", "nakerst2d", {"learning_rate": np.array([1e-3, 1e-2]), "momentum": 0.9,
                                                  "sigma": np.array([0.0, 2.0, 4.0])}, 600,
                      ["final_distance", "steps_to_eps", "diverged"], progress=False)
    assert ds.attrs["options"] and not json.loads(ds.attrs["options"])["renormalise"]
    assert np.all(np.isfinite(ds.final_distance.values))
    assert ds.final_distance.sel(learning_rate=1e-2, sigma=2.0) < ds.final_distance.sel(learning_rate=1e-3, sigma=2.0)


def test_sharding_over_8_devices_equals_one_device():
    assert len(jax.devices()) == 8
    kw = dict(metrics=["rate", "timescale", "overshoot", "diverged"], progress=False, chunk_size=40)
    a = dynsim.sweep("sa", "quadratic", SMALL, 512, devices=8, **kw)
    b = dynsim.sweep("sa", "quadratic", SMALL, 512, devices=1, **kw)
    processes.assert_same_dataset(a, b)
    c = dynsim.sweep("sa", "quadratic", SMALL, 512, devices=1, block_size=16, **kw)  # lax.map over blocks
    processes.assert_same_dataset(a, c)


def test_store_roundtrip_and_resume_after_interruption(tmp_path):
    kw = dict(metrics=["rate", "steps_to_eps", "diverged"], progress=False, chunk_size=5)
    mem = dynsim.sweep("sa", "quadratic", SMALL, 512, **kw)
    part = processes.stopped_sweep("sa", "quadratic", SMALL, 512, out=tmp_path / "d", stop_after=2, **kw)
    assert not part.attrs["complete"]
    assert np.isnan(part.rate.values).sum() > 0  # unfinished chunks read as fill values
    assert len((tmp_path / "d" / "progress.log").read_text().split()) == 2
    full = dynsim.sweep("sa", "quadratic", SMALL, 512, out=tmp_path / "d", **kw)  # same config: resumes
    assert full.attrs["complete"]
    processes.assert_same_dataset(mem, full)
    assert len((tmp_path / "d" / "progress.log").read_text().split()) == 6  # nothing computed twice
    processes.assert_same_dataset(full, sw.open_result(tmp_path / "d").load())


@pytest.mark.slow
def test_multi_process_sweep_equals_single_process(tmp_path):
    """The module docstring's multi-host recipe, as 2 jax.distributed processes on this host."""
    script = tmp_path / "worker.py"
    script.write_text(_MULTIHOST_WORKER)
    out = tmp_path / "out"
    logs = processes.distributed(script, 2, out)
    assert all("devices 4 2" in log for log in logs)  # 2 processes x 2 local devices
    done = [sorted(int(x) for x in (out / f"progress-{i}.log").read_text().split()) for i in range(2)]
    assert done == [[0, 2, 4], [1, 3, 5]]  # disjoint chunks, each computed once
    grid = {"k_eta": np.geomspace(0.01, 0.5, 6), "momentum": np.array([0.5, 0.9]), "sigma": np.linspace(-1, 9, 11)}
    one = dynsim.sweep("sa", "quadratic", grid, 384, ["rate", "timescale", "diverged"], progress=False, chunk_size=22,
                       dtype="float32")
    processes.assert_same_dataset(sw.open_result(out), one)


@pytest.mark.slow
def test_resume_after_sigkill_is_bit_identical(tmp_path):
    cfg_path = tmp_path / "kill.toml"
    cfg_path.write_text(KILL_CONFIG)
    d = tmp_path / "killed"
    log = d / "progress.log"
    n_done = processes.kill_when_logged(processes.DYNSIM + ["sweep", str(cfg_path), "--out", str(d), "--no-progress"],
                                        log, 3)
    assert 3 <= n_done < 24, n_done  # killed part-way (24 chunks)
    processes.run(processes.DYNSIM + ["sweep", "--resume", str(d), "--no-progress"])
    lines = log.read_text().split()
    assert sorted(map(int, lines)) == list(range(24))  # no chunk lost, none computed twice
    cfg, _ = sw.load_config(cfg_path)
    ref, _ = sw.run_config(cfg, tmp_path / "ref", progress=False)
    processes.assert_same_dataset(sw.open_result(d).load(), ref)


def test_a_list_of_points_is_one_config_dim_equal_to_each_point_alone(tmp_path):
    """Points vary together along ``config`` (never an outer product), each as its own one-point sweep."""
    pts = [{"k_eta": 0.1, "momentum": 0.9, "sigma": 1.0}, {"k_eta": 0.02, "momentum": 0.5, "sigma": 3.0},
           {"k_eta": 0.3, "momentum": 0.5, "sigma": 0.0}, {"k_eta": 0.05, "momentum": 0.95, "sigma": 9.0}]
    kw = dict(metrics=["rate", "final_loss", "diverged"], progress=False, dtype="float64")
    ds = dynsim.sweep("super_accelerated", "quadratic", pts, 4096, chunk_size=3, out=tmp_path / "p", **kw)
    assert dict(ds.sizes) == {"config": 4} and ds.attrs["complete"]
    np.testing.assert_array_equal(ds.config.values, np.arange(4))
    for i, p in enumerate(pts):
        assert {k: float(ds[k][i]) for k in p} == p  # each hyperparameter is a coordinate along config
        one = dynsim.sweep("super_accelerated", "quadratic", p, 4096, **kw)  # the point alone
        for m in ("rate", "final_loss", "diverged"):
            assert float(ds[m][i]) == float(one[m]), (i, m)
        # and the closed form of the map (Nakerst eq. (4) on kθ²/2): the rate is -ln ρ
        rho = float(analysis.spectral_radius(p["k_eta"], p["momentum"], p["sigma"]))
        np.testing.assert_allclose(float(ds.rate[i]), -np.log(rho), rtol=1e-3)
    reopened = dynsim.open_result(tmp_path / "p")  # the store holds the points as coordinates too
    np.testing.assert_array_equal(reopened.sigma.values, [p["sigma"] for p in pts])
    again = dynsim.sweep("super_accelerated", "quadratic", pts, 4096, chunk_size=3, out=tmp_path / "p", **kw)
    processes.assert_same_dataset(again, ds)  # the same sweep: resumed (nothing left), not refused

