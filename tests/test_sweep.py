"""The sweep engine: grids, chunking, sharding, the zarr store, resume, locate, CLI."""
import hashlib
import json
import os
import pathlib
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import processes
import pytest

import dynsim
from dynsim import analysis, cli, landscapes, optim
from dynsim import engine as sw
from dynsim.engine.layout import make_layout
from dynsim.metrics import MetricConfig, fit_times, run_metrics

SMALL = {"k_eta": np.array([0.01, 0.1]), "momentum": 0.9, "sigma": np.linspace(0.0, 12.0, 13)}


def _equal(a, b):
    assert set(a.data_vars) == set(b.data_vars)
    for k in a.data_vars:
        np.testing.assert_array_equal(a[k].values, b[k].values, err_msg=k)
    for d in a.dims:
        np.testing.assert_array_equal(a[d].values, b[d].values)


def _tree_hash(path: pathlib.Path) -> str:
    h = hashlib.sha256()
    for p in sorted(path.rglob("*")):
        h.update(str(p.relative_to(path)).encode())
        if p.is_file():
            h.update(p.read_bytes())
    return h.hexdigest()


# --------------------------------------------------------------------------- results


def test_dataset_layout_and_provenance():
    ds = dynsim.sweep("super_accelerated", "quadratic", SMALL, 512, ["rate", "rho", "diverged"], progress=False)
    assert ds.rate.dims == ("k_eta", "sigma") and ds.rate.shape == (2, 13)
    np.testing.assert_array_equal(ds.sigma.values, SMALL["sigma"])
    assert ds.rate.dtype == np.float32 and ds.diverged.dtype == bool
    for key in ("rule", "landscape", "steps", "dtype", "device", "dynsim_version", "seed", "config"):
        assert key in ds.attrs
    assert ds.attrs["rule"] == "super_accelerated" and ds.attrs["steps"] == 512
    assert json.loads(ds.attrs["fixed"]) == {"momentum": 0.9}


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


# --------------------------------------------------------------------------- execution


def test_sharding_over_8_devices_equals_one_device():
    assert len(jax.devices()) == 8
    kw = dict(metrics=["rate", "timescale", "overshoot", "diverged"], progress=False, chunk_size=40)
    a = dynsim.sweep("sa", "quadratic", SMALL, 512, devices=8, **kw)
    b = dynsim.sweep("sa", "quadratic", SMALL, 512, devices=1, **kw)
    _equal(a, b)
    c = dynsim.sweep("sa", "quadratic", SMALL, 512, devices=1, block_size=16, **kw)  # lax.map over blocks
    _equal(a, c)


def test_chunking_and_padding_equal_one_chunk_and_compile_once():
    grid = {"k_eta": np.geomspace(0.01, 0.5, 5), "momentum": np.array([0.5, 0.9]), "sigma": np.linspace(-1, 9, 7)}
    one = dynsim.sweep("sa", "quadratic", grid, 384, ["rate", "steps_to_eps", "diverged"], progress=False,
                       chunk_size=10_000)
    before = sw.trace_count()
    many = dynsim.sweep("sa", "quadratic", grid, 384, ["rate", "steps_to_eps", "diverged"], progress=False,
                        chunk_size=9)  # 9 does not divide 7 (sigma): padded, masked chunks
    assert sw.trace_count() - before == 1  # one compile for all 10 chunks
    _equal(one, many)
    before = sw.trace_count()
    dynsim.sweep("sa", "quadratic", {**grid, "sigma": grid["sigma"] + 0.5}, 384, ["rate", "steps_to_eps", "diverged"],
                 progress=False, chunk_size=9)
    assert sw.trace_count() == before  # new values, same shapes: no recompilation


def test_layout_chunks_are_rectangular_and_cover_the_grid():
    lay = make_layout((3, 4, 5), 9, n_devices=2, block_size=4096)
    seen = np.zeros((3, 4, 5), int)
    for i in range(lay.n_chunks):
        start, n, region = lay.chunk(i)
        seen[region] += 1
        idx = np.arange(start, start + n)
        np.testing.assert_array_equal(np.ravel_multi_index(np.nonzero(np.ones((3, 4, 5))), (3, 4, 5))[idx], idx)
        assert int(np.prod([s.stop - s.start for s in region])) == n
    assert np.all(seen == 1)


@pytest.mark.parametrize("block_size", [1 << 18, 65536, 4096, 8])
def test_layout_blocks_are_evened_out(block_size):
    """Blocks split a device's points evenly: padding under 8 points per block, never a whole block."""
    lay = make_layout((37, 3, 2362), 10**6, n_devices=2, block_size=block_size)
    raw = -(-37 * 3 * 2362 // 2)
    assert lay.block_points % 8 == 0 and lay.block_points <= max(block_size, 8)
    assert lay.local == lay.n_blocks * lay.block_points
    assert raw <= lay.local < raw + 8 * lay.n_blocks


# --------------------------------------------------------------------------- locating sigma*


KE_TEST = np.geomspace(0.003, 0.6, 12)
MU_TEST = np.array([0.5, 0.9, 0.99])
SIG_TEST = np.linspace(-140.0, 40.0, 181)  # σ* spans [-131, 32] here (negative below kη = (1-√g)²)


@pytest.mark.slow
def test_locate_sigma_star_matches_exact_critical_sigma():
    """σ* (argmin ρ) to 1e-4 relative of the exact (g − (1 − √kη)²)/kη, and the stable interval."""
    dtype = "float64"
    ke, mu, sig = KE_TEST, MU_TEST, SIG_TEST
    ds = dynsim.sweep("sa", "quadratic", {"k_eta": ke, "momentum": mu, "sigma": sig}, 1024, ["rate", "timescale"],
                      dtype=dtype, progress=False)
    loc = sw.locate(ds, "sigma")
    exact = np.asarray(analysis.critical_sigma(ke[:, None], mu[None, :]))
    assert not loc.at_edge.any()
    rel = np.abs(loc.sigma_star.values - exact) / np.abs(exact)
    assert rel.max() < 1e-4, rel.max()
    # ρ(σ*) = |1 − √kη| for every momentum. Past the kink ρ rises like √(σ − σ*), so ρ at a
    # σ* located to 5e-5 can differ by ~1e-4 relative.
    rho_min = np.asarray(analysis.min_spectral_radius(ke))[:, None] * np.ones((1, 3))
    np.testing.assert_allclose(loc.rho_star.values, rho_min, rtol=1e-3)
    assert np.all(loc.rho_star.values >= rho_min * (1 - 1e-6))
    lo, hi = (np.asarray(v) for v in analysis.stable_sigma_interval(ke[:, None], mu[None, :]))
    inside_lo = lo > sig[0]
    np.testing.assert_allclose(loc.sigma_stable_lo.values[inside_lo], lo[inside_lo], rtol=1e-4)
    assert np.all(np.isnan(loc.sigma_stable_lo.values[~inside_lo]))
    inside_hi = hi < sig[-1]
    np.testing.assert_allclose(loc.sigma_stable_hi.values[inside_hi], hi[inside_hi], rtol=1e-4)
    # T: a separate minimiser (of the whole-run envelope fit, at the sweep's own steps).
    # Oracle: the same definition in a float64 numpy loop.
    steps, every = 1024, json.loads(ds.attrs["options"])["every"]
    times = fit_times(steps, every, True, False)
    KE, MU = np.meshgrid(ke, mu, indexing="ij")

    def T_oracle(s, k=KE.ravel(), g=MU.ravel()):
        th, m, logs = np.ones_like(s), np.zeros_like(s), np.zeros_like(s)
        y = [np.zeros_like(s)]
        for t in range(1, steps + 1):
            m = g * m - k * (th + s * m)
            th = th + m
            n = np.hypot(th, m)
            logs, th, m = logs + np.log(n), th / n, m / n
            if t in times:
                y.append(logs.copy())
        return -1.0 / np.polyfit(times, np.array(y), 1)[0]

    sT = loc.sigma_star_T.values.ravel()
    T_found = T_oracle(sT)
    np.testing.assert_allclose(loc.T_star.values.ravel(), T_found, rtol=1e-9)
    # T(σ) of a finite run ripples (the envelope fit sees few oscillation periods; ~0.2%
    # in T), so σ*_T is a local minimiser near the coarse argmin, defined up to the ripple:
    assert np.all(loc.T_star.values <= np.nanmin(ds.timescale.values, axis=-1) * (1 + 1e-6))
    coarse = loc.sigma_star_T_coarse.values.ravel()
    scan = coarse[:, None] + np.linspace(-1, 1, 201)[None, :] * (sig[1] - sig[0])
    T_scan = T_oracle(scan.ravel(), np.repeat(KE.ravel(), 201), np.repeat(MU.ravel(), 201)).reshape(scan.shape)
    T_scan = np.where(T_scan > 0, T_scan, np.inf)  # T < 0: growth (unstable)
    assert np.all(T_found <= T_scan.min(axis=1) * 1.01)


@pytest.mark.slow
def test_locate_from_a_float32_sweep():
    """Coarse sweep in float32 (fast, biased near the kink); refinement in float64 (default)."""
    ke = KE_TEST[::3]  # (the float64 test covers the full kη range)
    ds = dynsim.sweep("sa", "quadratic", {"k_eta": ke, "momentum": MU_TEST, "sigma": SIG_TEST}, 1024,
                      ["rate"], progress=False)
    assert ds.rate.dtype == np.float32
    loc = sw.locate(ds, "sigma", boundary=False)
    assert loc.attrs["refine_dtype"] == "float64"
    exact = np.asarray(analysis.critical_sigma(ke[:, None], MU_TEST[None, :]))
    rel = np.abs(loc.sigma_star.values - exact) / np.abs(exact)
    assert rel.max() < 1e-4, rel.max()
    # the refinement is what gets there: the coarse grid argmax is far off
    assert np.max(np.abs(loc.sigma_star_coarse.values - exact) / np.abs(exact)) > 1e-2


def test_locate_flags_edges():
    ds = dynsim.sweep("sa", "quadratic", {"k_eta": 0.01, "momentum": 0.9, "sigma": np.linspace(0, 5, 6)}, 512,
                      ["rate"], progress=False)
    loc = sw.locate(ds, "sigma", refine=False, boundary=False)
    assert bool(loc.at_edge) and np.isnan(float(loc.sigma_star))  # σ* = 9 lies beyond the grid


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(optimizer="adamw"), "optimizer"),
        (dict(landscape="himmelblau"), "landscape"),
        (dict(metrics=["speed"]), "metrics"),
        (dict(grid={"k_eta": np.array([-0.1, 0.1]), "momentum": 0.9, "sigma": 1.0}), r"grid\['k_eta'\]"),
        (dict(grid={"learning_rate": np.array([0.1, -0.1]), "momentum": 0.9, "sigma": 1.0}),
         r"grid\['learning_rate'\]"),
        (dict(grid={}), "grid"),
        (dict(grid={"k_eta": 0.1, "momentum": 0.9, "sigma": 1.0}), None),  # numbers only: one point
        (dict(steps=100.0), "steps=100.0 must be an integer"),
        (dict(grid={"k_eta": np.array([]), "momentum": 0.9, "sigma": 1.0}), r"grid\['k_eta'\]"),
        (dict(grid={"k_eta": np.ones((2, 2)), "momentum": 0.9, "sigma": 1.0}), r"grid\['k_eta'\]"),
        (dict(grid={"k_eta": np.array([0.1]), "momentum": 0.9, "speed": 1.0}), r"grid\['speed'\]"),
        (dict(grid={"k_eta": np.array([0.1]), "momentum": 0.9}), "sigma"),
        (dict(theta0=[1.0, 2.0], landscape="nakerst2d", grid={"learning_rate": np.array([0.1]), "momentum": 0.9,
                                                              "sigma": 1.0}), None),
        (dict(theta0=[1.0, 2.0, 3.0], landscape="nakerst2d", grid={"learning_rate": np.array([0.1]),
                                                                   "momentum": 0.9, "sigma": 1.0}), "theta0"),
        (dict(theta0=[0.0]), "theta0"),
        (dict(steps=0), "steps"),
        (dict(dtype="float16"), "dtype"),
    ],
)
def test_bad_input_one_clear_value_error(kwargs, match):
    args = dict(optimizer="sa", landscape="quadratic",
                grid={"k_eta": np.array([0.1]), "momentum": 0.9, "sigma": 1.0}, steps=128)
    args.update(kwargs)
    args.setdefault("metrics", ["final_distance"])  # (a cheap compile for the one valid case)
    call = lambda: dynsim.sweep(args.pop("optimizer"), args.pop("landscape"), args.pop("grid"), args.pop("steps"),
                                progress=False, **args)
    if match is None:
        call()  # a valid call among the invalid ones
        return
    with pytest.raises(ValueError, match=match) as e:
        call()
    assert "\n" not in str(e.value)


# --------------------------------------------------------------------------- store and resume


def test_store_roundtrip_and_resume_after_interruption(tmp_path):
    kw = dict(metrics=["rate", "steps_to_eps", "diverged"], progress=False, chunk_size=5)
    mem = dynsim.sweep("sa", "quadratic", SMALL, 512, **kw)
    part = dynsim.sweep("sa", "quadratic", SMALL, 512, out=tmp_path / "d", _stop_after=2, **kw)
    assert not part.attrs["complete"]
    assert np.isnan(part.rate.values).sum() > 0  # unfinished chunks read as fill values
    assert len((tmp_path / "d" / "progress.log").read_text().split()) == 2
    full = dynsim.sweep("sa", "quadratic", SMALL, 512, out=tmp_path / "d", **kw)  # same config: resumes
    assert full.attrs["complete"]
    _equal(mem, full)
    assert len((tmp_path / "d" / "progress.log").read_text().split()) == 6  # nothing computed twice
    _equal(full, sw.open_result(tmp_path / "d").load())


def test_refuses_a_directory_holding_a_different_sweep(tmp_path):
    d = tmp_path / "d"
    dynsim.sweep("sa", "quadratic", SMALL, 256, ["rate"], progress=False, out=d)
    before = _tree_hash(d)
    with pytest.raises(ValueError, match="different sweep.*steps"):
        dynsim.sweep("sa", "quadratic", SMALL, 512, ["rate"], progress=False, out=d)
    with pytest.raises(ValueError, match="different sweep.*momentum"):
        dynsim.sweep("sa", "quadratic", {**SMALL, "momentum": 0.5}, 256, ["rate"], progress=False, out=d)
    assert _tree_hash(d) == before  # nothing overwritten
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="not a sweep result"):
        dynsim.sweep("sa", "quadratic", SMALL, 256, ["rate"], progress=False, out=tmp_path / "other")


def test_corrupt_store_gives_a_clear_error(tmp_path):
    d = tmp_path / "d"
    dynsim.sweep("sa", "quadratic", SMALL, 256, ["rate"], progress=False, out=d, chunk_size=13)
    log = d / "progress.log"
    good_log = log.read_text()
    log.write_text(good_log + "banana\n")
    with pytest.raises(ValueError, match="corrupt.*progress.log"):
        dynsim.sweep("sa", "quadratic", SMALL, 256, ["rate"], progress=False, out=d, chunk_size=13)
    log.write_text(good_log + "1")  # a line cut short by a kill is not corruption...
    dynsim.sweep("sa", "quadratic", SMALL, 256, ["rate"], progress=False, out=d, chunk_size=13)
    assert log.read_text() == good_log  # ...and is dropped before anything is appended
    chunks = sorted(p for p in (d / "results.zarr" / "rate").rglob("*") if p.is_file() and p.name != "zarr.json")
    assert len(chunks) == 2  # 26 points in chunks of 13
    chunks[0].write_bytes(b"\x00garbage")
    with pytest.raises(ValueError, match="corrupt"):
        dynsim.sweep("sa", "quadratic", SMALL, 256, ["rate"], progress=False, out=d, chunk_size=13)
    chunks[0].unlink()  # a logged chunk whose file is gone
    with pytest.raises(ValueError, match="corrupt.*logged as done"):
        dynsim.sweep("sa", "quadratic", SMALL, 256, ["rate"], progress=False, out=d, chunk_size=13)
    (d / "config.json").write_text("{ not json")
    with pytest.raises(ValueError, match="corrupt.*config.json"):
        dynsim.sweep("sa", "quadratic", SMALL, 256, ["rate"], progress=False, out=d, chunk_size=13)


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


_WIDTH_WORKER = """
import os, sys
os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2 " + sys.argv[1]
import numpy as np
from dynsim import engine as sw
grid = {"k_eta": np.geomspace(0.003, 0.6, 7), "momentum": np.array([0.5, 0.9, 0.99]),
        "sigma": np.linspace(-60, 40, 101)}
ds = sw.sweep("super_accelerated", "quadratic", grid, 1024, progress=False)
np.savez(sys.argv[2], **{k: ds[k].values for k in ds.data_vars})
"""


@pytest.mark.slow
def test_cli_xla_flags_leave_results_bit_identical(tmp_path):
    """The CLI's XLA:CPU flags (one device per core; 512-bit vectors on AVX-512) change speed only."""
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    code = ("import os; from dynsim.engine.platform import configure_xla_cpu, cpu_has_avx512; "
            "configure_xla_cpu(); print(os.environ.get('XLA_FLAGS', ''), cpu_has_avx512())")
    flags, avx512 = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                                   check=True).stdout.rsplit(" ", 1)
    assert ("--xla_cpu_prefer_vector_width=512" in flags) == (avx512.strip() == "True")
    user = subprocess.run([sys.executable, "-c", code], env={**env, "XLA_FLAGS": "--xla_cpu_prefer_vector_width=256"},
                          capture_output=True, text=True, check=True).stdout
    assert "=512" not in user  # a user's own setting wins
    script = tmp_path / "w.py"
    script.write_text(_WIDTH_WORKER)
    for width, name in (("", "a"), ("--xla_cpu_prefer_vector_width=512", "b")):
        subprocess.run([sys.executable, str(script), width, str(tmp_path / name)], env=env, check=True)
    a, b = np.load(tmp_path / "a.npz"), np.load(tmp_path / "b.npz")
    assert a.files == b.files and len(a.files) == len(dynsim.metrics.DEFAULT_METRICS)
    for k in a.files:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


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
    _equal(sw.open_result(out), one)


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
    _equal(sw.open_result(d).load(), ref)


# --------------------------------------------------------------------------- CLI


def test_cli_bad_input_exits_2_with_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text('optimizer = "sa"\nlandscape = "quadratic"\nsteps = 128\n[grid]\nk_eta = [-0.1, 0.1]\n'
                   'momentum = 0.9\nsigma = 1.0\n')
    for argv in (["sweep", str(bad), "--out", str(tmp_path / "o")],
                 ["sweep", str(tmp_path / "missing.toml"), "--out", str(tmp_path / "o")],
                 ["sweep", "--resume", str(tmp_path / "nothing")],
                 ["sweep", str(bad)]):
        assert cli.main(argv) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("dynsim sweep: error:"), err


def test_cli_runs_config_with_overrides_and_progress(tmp_path, capsys):
    cfgp = tmp_path / "c.toml"
    cfgp.write_text('optimizer = "sa"\nlandscape = "quadratic"\nsteps = 4096\nmetrics = ["rate"]\n'
                    '[grid]\nk_eta = [0.01, 0.1]\nmomentum = 0.9\nsigma = {linspace = [0, 10, 11]}\n')
    assert cli.main(["sweep", str(cfgp), "--out", str(tmp_path / "o"), "--set", "steps=256",
                     "--set", "grid.momentum=0.5", "--chunk-size", "7"]) == 0
    captured = capsys.readouterr()
    assert "point-steps/s" in captured.err  # the progress bar
    ds = sw.open_result(tmp_path / "o")
    assert ds.attrs["steps"] == 256 and json.loads(ds.attrs["fixed"])["momentum"] == 0.5
    assert (tmp_path / "o" / "config.toml").exists() and (tmp_path / "o" / "config.json").exists()
    assert cli.main(["sweep", "--resume", str(tmp_path / "o"), "--no-progress"]) == 0
    assert cli.main(["sweep", "--resume", str(tmp_path / "o"), "--chunk-size", "3"]) == 2
