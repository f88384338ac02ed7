"""The results store reads as carefully as it writes; the accelerator defaults run on CPU."""
import hashlib
import json
import pathlib
import shlex

import numpy as np
import processes
import pytest

import dynsim
from dynsim import cli
from dynsim.engine import layout as layout_mod
from dynsim.engine import platform as platform_mod
from dynsim.engine.store import CorruptStoreError

SMALL = {"k_eta": np.array([0.01, 0.1]), "momentum": 0.9, "sigma": np.linspace(0.0, 12.0, 13)}


def test_lazy_read_of_a_damaged_chunk_is_a_clear_corrupt_error(tmp_path):
    d = tmp_path / "d"
    full = dynsim.sweep("sa", "quadratic", SMALL, 256, ["rate", "diverged"], progress=False, out=d, chunk_size=13)
    chunks = sorted(p for p in (d / "results.zarr" / "rate").rglob("*") if p.is_file() and p.name != "zarr.json")
    chunks[1].write_bytes(b"\x28\xb5\x2f\xfd garbage that is not zstd")
    ds = dynsim.open_result(d)  # opening is lazy: nothing read yet
    np.testing.assert_array_equal(ds.rate.isel(k_eta=0).values, full.rate.isel(k_eta=0).values)  # intact chunk
    with pytest.raises(CorruptStoreError, match=r"result store .* is corrupt: variable 'rate' cannot be read"):
        _ = ds.rate.values
    with pytest.raises(ValueError, match="corrupt"):  # the same error class the CLI reports
        ds.rate.isel(k_eta=1).load()
    np.testing.assert_array_equal(ds.diverged.values, full.diverged.values)  # other variables still read


def test_open_result_reports_completion_and_missing_pieces(tmp_path):
    d = tmp_path / "p"
    processes.stopped_sweep("sa", "quadratic", SMALL, 256, ["rate"], out=d, chunk_size=13, stop_after=1)
    ds = dynsim.open_result(d)
    assert ds.attrs["complete"] is False
    assert np.isnan(ds.rate.isel(k_eta=1).values).all()  # not run yet: the fill value
    with pytest.raises(FileNotFoundError, match="no sweep result directory"):
        dynsim.open_result(tmp_path / "nothing")
    (d / "config.json").write_text("[]")
    with pytest.raises(CorruptStoreError, match="config.json is unreadable"):
        dynsim.open_result(d)


CONFIG = """
optimizer = "sa"
landscape = "quadratic"
steps = 256
metrics = ["rate"]
[grid]
k_eta = [0.01, 0.1]
momentum = 0.9
sigma = {linspace = [0, 10, 11]}
"""


def test_resume_of_a_sweep_killed_before_its_store_existed_starts_it_as_it_was_started(tmp_path, capsys, monkeypatch):
    cfg = tmp_path / "c.toml"
    cfg.write_text(CONFIG)
    out = tmp_path / "o"
    assert cli.main(["sweep", str(cfg), "--out", str(out), "--set", "steps=128", "--no-progress"]) == 0
    first = dynsim.open_result(out).load()
    # what a kill between writing config.toml and creating the store leaves behind
    for p in ("config.json", "progress.log"):
        (out / p).unlink()
    import shutil

    shutil.rmtree(out / "results.zarr")
    header = (out / "config.toml").read_text().split("\n")[0]
    assert shlex.split(header[len("# started as: "):]) == ["dynsim", "sweep", str(cfg), "--out", str(out), "--set",
                                                          "steps=128"]
    cfg.write_text(CONFIG.replace("steps = 256", "steps = 512"))  # the source file changed since: not used
    monkeypatch.chdir(tmp_path.parent)  # from another folder
    capsys.readouterr()
    assert cli.main(["sweep", "--resume", str(out), "--no-progress"]) == 0
    assert "complete" in capsys.readouterr().out
    again = dynsim.open_result(out).load()
    assert again.attrs["steps"] == 128  # the stored config, with its --set
    for k in first.data_vars:
        np.testing.assert_array_equal(again[k].values, first[k].values)
    # with nothing there at all, resume says so in one line
    assert cli.main(["sweep", "--resume", str(tmp_path / "none")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no sweep there" in err


def test_accelerator_defaults_forced_on_cpu_give_the_same_results(monkeypatch):
    """unroll 32, one block per local chunk, memory-based chunk sizing: the GPU path, run on CPU."""
    grid = {"k_eta": np.geomspace(0.01, 0.3, 40), "momentum": np.array([0.5, 0.9]), "sigma": np.linspace(-2, 12, 201)}
    metrics = ["rate", "timescale", "overshoot", "final_loss", "diverged"]
    cpu = dynsim.sweep("sa", "quadratic", grid, 512, metrics, progress=False)
    assert json.loads(cpu.attrs["config"])["options"]["unroll"] == 4

    monkeypatch.setattr(platform_mod, "platform", lambda: "gpu")
    mem = 10240 * 8 * 8 * (4 * 1 + 4 * len(metrics) + 16)  # room for 10240 points (with the 8x margin)
    monkeypatch.setattr(platform_mod, "device_memory_bytes", lambda n_devices=1: mem)
    n = int(np.prod([len(v) for v in grid.values()]))
    cs = layout_mod.default_chunk_size(n, 512, 1, len(metrics), 8)
    assert cs == 10240  # the memory bound (the time bound is far larger on an accelerator)
    made = []
    real = layout_mod.make_layout
    monkeypatch.setattr(layout_mod, "make_layout", lambda *a, **k: made.append(real(*a, **k)) or made[-1])
    acc = dynsim.sweep("sa", "quadratic", grid, 512, metrics, progress=False)
    cfg = json.loads(acc.attrs["config"])
    assert cfg["options"]["unroll"] == 32 and cfg["chunk_size"] == cs
    lay = made[-1]
    assert lay.n_blocks == 1 and lay.block_points >= lay.local  # the whole local chunk in one vmapped scan
    assert lay.n_chunks > 1
    for k in metrics:  # same numbers: the longer unrolled body changes speed, not arithmetic
        np.testing.assert_allclose(acc[k].values, cpu[k].values, rtol=2e-6, err_msg=k)


def _tree_hash(path: pathlib.Path) -> str:
    h = hashlib.sha256()
    for p in sorted(path.rglob("*")):
        h.update(str(p.relative_to(path)).encode())
        if p.is_file():
            h.update(p.read_bytes())
    return h.hexdigest()


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
