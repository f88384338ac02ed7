"""Faults a user meets: two writers, Ctrl-C, a full disk, an early kill, absurd sizes, a wrong cause.

Each one ends in one line naming the cause and a nonzero exit (an exception from Python);
no store is lost, mixed or left unresumable, and a resumed store is bit-identical to a
clean run.
"""
import errno
import json
import re
import signal
import socket
import subprocess
import sys
import time

import jax.numpy as jnp
import numpy as np
import optax
import processes
import pytest

import dynsim
from dynsim import cli, optim
from dynsim.engine import execute, store

TIMELESS = ("wall_time",)  # a training store records this run's clock: the one variable a resume changes

SWEEP = """
optimizer = "sa"
landscape = "quadratic"
steps = {steps}
metrics = ["rate", "timescale", "diverged"]
chunk_size = {chunk_size}
[grid]
k_eta = {{geomspace = [0.01, 0.5, 40]}}
momentum = {{linspace = [0.1, 0.99, 20]}}
sigma = {{linspace = [0, 10, 30]}}
"""

TRAIN = processes.TRAIN_CONFIG

SMALL = {"k_eta": np.array([0.01, 0.1]), "momentum": 0.9, "sigma": np.linspace(0.0, 12.0, 13)}
INTERRUPTED = re.compile(r"dynsim sweep: interrupted: (\d+) of (\d+) chunks stored; "
                         r"resume with: dynsim sweep --resume (\S+)\n")
INTERRUPTED_EARLY = re.compile(
    r"dynsim sweep: interrupted: 0 chunks stored; resume with: dynsim sweep --resume (\S+)\n")


_equal = processes.assert_same_dataset


def _config(tmp_path, name="c.toml", steps=2048, chunk_size=300, text=None):
    path = tmp_path / name
    path.write_text(text if text is not None else SWEEP.format(steps=steps, chunk_size=chunk_size))
    return path


def _logged(d) -> list[int]:
    return sorted(int(x) for p in d.glob("progress*.log") for x in p.read_text().split())


# --------------------------------------------------------------------------- two writers


_HOLDER = """
import sys, time
from dynsim.engine import store
with store.writing(sys.argv[1]):
    print("held", flush=True)
    time.sleep(120)
"""


def test_a_second_writer_is_refused_at_once_naming_the_first_and_no_lock_outlives_it(tmp_path, capsys):
    d = tmp_path / "out"
    holder_py = tmp_path / "holder.py"
    holder_py.write_text(_HOLDER)
    holder = subprocess.Popen([sys.executable, str(holder_py), str(d)], env=processes.env(), stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout.readline() == "held\n"
        cfg = _config(tmp_path, steps=256)
        before = sorted(p.name for p in d.iterdir())
        busy = (rf"{re.escape(str(d))} is being written by process {holder.pid} on {re.escape(socket.gethostname())}"
                r" since \d{4}-\d\d-\d\dT\S+; wait for it or choose another directory")
        for extra in ([], ["--set", "steps=512"]):  # the same sweep, and another one
            t = time.perf_counter()
            assert cli.main(["sweep", str(cfg), "--out", str(d), "--no-progress", *extra]) == 1
            assert time.perf_counter() - t < 20  # refused at once, not after computing
            err = capsys.readouterr().err
            assert err.count("\n") == 1 and re.fullmatch(r"dynsim sweep: error: " + busy + "\n", err), err
        assert sorted(p.name for p in d.iterdir()) == before  # nothing written
        with pytest.raises(store.StoreBusyError, match=busy) as e:
            dynsim.sweep("sa", "quadratic", SMALL, 256, ["rate"], progress=False, out=d)
        assert isinstance(e.value, OSError)
    finally:
        holder.kill()  # SIGKILL: the kernel drops its lock
        holder.wait()
    assert cli.main(["sweep", str(cfg), "--out", str(d), "--no-progress"]) == 0
    assert dynsim.open_result(d).attrs["complete"]


def test_slices_of_one_store_share_it_and_a_slice_taken_twice_is_refused(tmp_path):
    """The chunks= split across independent jobs: slices coexist; the same slice, or the whole sweep, waits."""
    d = tmp_path / "s"
    kw = dict(progress=False, out=d, chunk_size=2)
    dynsim.sweep("sa", "quadratic", SMALL, 256, ["rate"], chunks=slice(0, 0), **kw)  # creates the store only
    n = json.loads((d / "config.json").read_text())["layout"]["n_chunks"]
    holder_py = tmp_path / "holder.py"
    # what a job running chunks=slice(1, None, 2) holds
    holder_py.write_text(_HOLDER.replace("store.writing(sys.argv[1])", f"store.writing(sys.argv[1], 'chunks-1-{n}-2')"))
    holder = subprocess.Popen([sys.executable, str(holder_py), str(d)], env=processes.env(), stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout.readline() == "held\n"
        part = dynsim.sweep("sa", "quadratic", SMALL, 256, ["rate"], chunks=slice(0, None, 2), **kw)  # other slice
        assert not part.attrs["complete"] and _logged(d) == list(range(0, n, 2))
        with pytest.raises(store.StoreBusyError, match=f"process {holder.pid} on"):
            dynsim.sweep("sa", "quadratic", SMALL, 256, ["rate"], chunks=slice(1, None, 2), **kw)  # the same slice
        with pytest.raises(store.StoreBusyError, match=f"process {holder.pid} on"):
            dynsim.sweep("sa", "quadratic", SMALL, 256, ["rate"], **kw)  # the whole sweep
    finally:
        holder.kill()
        holder.wait()
    full = dynsim.sweep("sa", "quadratic", SMALL, 256, ["rate"], **kw)
    assert full.attrs["complete"] and _logged(d) == list(range(n))
    _equal(full, dynsim.sweep("sa", "quadratic", SMALL, 256, ["rate"], progress=False))


@pytest.mark.slow
def test_two_writers_started_together_one_runs_and_the_store_is_a_clean_run_of_its_config(tmp_path):
    """The race of issue 20: two sweeps on one --out at the same moment, many times."""
    a = _config(tmp_path, "a.toml", steps=2048)
    b = _config(tmp_path, "b.toml", steps=1024)
    clean = {}
    for name, cfg in (("a", a), ("b", b)):
        processes.run(processes.DYNSIM + ["sweep", str(cfg), "--out", str(tmp_path / f"clean-{name}"),
                                          "--no-progress"])
        clean[json.loads((tmp_path / f"clean-{name}" / "config.json").read_text())["sweep"]["steps"]] = \
            dynsim.open_result(tmp_path / f"clean-{name}").load()
    n_chunks = json.loads((tmp_path / "clean-a" / "config.json").read_text())["layout"]["n_chunks"]
    trials = [(a, b)] * 6 + [(a, a)] * 3  # different configs, and the same one
    for t, (c1, c2) in enumerate(trials):
        d = tmp_path / f"race-{t}"
        procs = [processes.start(processes.DYNSIM + ["sweep", str(c), "--out", str(d), "--no-progress"])
                 for c in (c1, c2)]
        results = [(p.wait(timeout=300), *p.communicate()) for p in procs]
        codes = sorted(r[0] for r in results)
        for rc, _, err in results:
            assert "Traceback" not in err, err
            if rc != 0:  # refused, in one line: busy, or (if the first had finished) a different sweep
                assert err.count("\n") == 1, err
                assert re.search(r"is being written by process \d+ on \S+ since \S+; wait for it or choose another "
                                 r"directory|holds a different sweep", err), err
        if c1 == c2:
            assert codes[0] == 0 and codes[1] in (0, 1), results  # the second may find it finished: a no-op resume
        else:
            assert codes[0] == 0 and codes[1] != 0, results  # exactly one runs
        assert _logged(d) == list(range(n_chunks)), t  # every chunk computed once
        steps = json.loads((d / "config.json").read_text())["sweep"]["steps"]
        assert f"--out {d}" in (d / "config.toml").read_text().split("\n")[0]
        _equal(dynsim.open_result(d).load(), clean[steps])


# --------------------------------------------------------------------------- signals


def _signal_runs(tmp_path, cfg, sig, delays, clean, skip=()):
    """Send ``sig`` at each delay after DIR/config.toml appears; check the exit, the line, and the resume."""
    code = 128 + sig
    for k, delay in enumerate(delays):
        d = tmp_path / f"sig-{sig}-{k}"
        p = processes.start(processes.DYNSIM + ["sweep", str(cfg), "--out", str(d), "--no-progress"])
        assert processes.wait_for(d / "config.toml", p), p.communicate()
        time.sleep(delay)
        p.send_signal(sig)
        rc = p.wait(timeout=300)
        out, err = p.communicate()
        if rc == 0:  # finished first: a clean run
            assert err == "", err
        else:
            assert rc == code, (delay, rc, err)
            m = INTERRUPTED.fullmatch(err) or INTERRUPTED_EARLY.fullmatch(err)
            assert m, (delay, err)
            assert m.groups()[-1] == str(d)
            if len(m.groups()) == 3:
                assert int(m[1]) == len(_logged(d)) <= int(m[2])
        processes.run(processes.DYNSIM + ["sweep", "--resume", str(d), "--no-progress"])
        got = dynsim.open_result(d).load()
        assert got.attrs["complete"]
        n = json.loads((d / "config.json").read_text())["layout"]["n_chunks"]
        assert _logged(d) == list(range(n))  # a chunk being written was finished, or not logged
        _equal(got, clean, skip)


@pytest.mark.slow
def test_sigint_and_sigterm_from_start_to_shutdown_end_in_one_line_and_resume_bit_identical(tmp_path):
    cfg = _config(tmp_path, steps=16384)
    processes.run(processes.DYNSIM + ["sweep", str(cfg), "--out", str(tmp_path / "clean"), "--no-progress"])
    clean = dynsim.open_result(tmp_path / "clean").load()
    _signal_runs(tmp_path, cfg, signal.SIGINT, [0.0, 0.4, 1.0, 1.6, 2.5, 4.0, 8.0], clean)
    _signal_runs(tmp_path, cfg, signal.SIGTERM, [0.2, 1.5, 3.0], clean)


@pytest.mark.slow
def test_ctrl_c_of_a_training_sweep_from_a_toml_ends_in_one_line_and_resumes_bit_identical(tmp_path):
    cfg = _config(tmp_path, "train.toml", text=TRAIN)
    processes.run(processes.DYNSIM + ["sweep", str(cfg), "--out", str(tmp_path / "clean"), "--no-progress"])
    clean = dynsim.open_result(tmp_path / "clean").load()
    _signal_runs(tmp_path, cfg, signal.SIGINT, [0.0, 0.8, 1.5, 2.5, 4.0], clean, TIMELESS)


def _imports_jax_first() -> bool:
    r = subprocess.run([sys.executable, "-c", "import sys, dynsim.cli; print('jax' in sys.modules)"],
                       env=processes.env(), capture_output=True, text=True, check=True)
    return r.stdout.strip() == "True"


def _interpreter_start() -> float:
    """Seconds a bare ``python -c pass`` takes here (slowest of 3): before that no program can catch a signal."""
    times = []
    for _ in range(3):
        t = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], env=processes.env(), check=True)
        times.append(time.perf_counter() - t)
    return max(times)


@pytest.mark.slow
def test_ctrl_c_during_start_up_ends_in_one_line(tmp_path):
    """Within the first second (imports): no traceback, exit 130, and what was written resumes."""
    # dynsim.__main__ installs a guard before it imports anything; the CLI then installs its
    # handlers and writes the source before anything loads JAX (~1 s). The interpreter's own
    # start-up (site imports) comes before any program's code, so the first signal waits for it.
    assert not _imports_jax_first()
    cfg = _config(tmp_path, steps=1024)
    first = 1.5 * _interpreter_start()
    for k, delay in enumerate((first, first + 0.1, 0.5, 0.9)):
        d = tmp_path / f"early-{k}"
        p = processes.start(processes.DYNSIM + ["sweep", str(cfg), "--out", str(d), "--no-progress"])
        time.sleep(delay)
        p.send_signal(signal.SIGINT)
        rc = p.wait(timeout=300)
        err = p.communicate()[1]
        assert rc in (0, 130) and "Traceback" not in err and err.count("\n") <= 1, (delay, rc, err)
        if d.exists():
            processes.run(processes.DYNSIM + ["sweep", "--resume", str(d), "--no-progress"])
            assert dynsim.open_result(d).attrs["complete"]


# --------------------------------------------------------------------------- a kill during start-up


@pytest.mark.slow
def test_resume_completes_a_sweep_killed_at_any_moment_of_start_up(tmp_path):
    """SIGKILL as soon as the config is written, and at later moments of start-up: --resume completes it."""
    cfg = _config(tmp_path, steps=1024)
    processes.run(processes.DYNSIM + ["sweep", str(cfg), "--out", str(tmp_path / "clean"), "--no-progress"])
    clean = dynsim.open_result(tmp_path / "clean").load()
    for k, delay in enumerate((0.0, 0.1, 0.3, 0.6)):
        d = tmp_path / f"k{k}"
        p = processes.start(processes.DYNSIM + ["sweep", str(cfg), "--out", str(d), "--no-progress"])
        assert processes.wait_for(d / "config.toml", p)
        time.sleep(delay)
        p.kill()
        p.wait()
        r = processes.run(processes.DYNSIM + ["sweep", "--resume", str(d), "--no-progress"], cwd=tmp_path.parent)
        assert "complete" in r.stdout
        _equal(dynsim.open_result(d).load(), clean)
    # a training sweep from a TOML, killed as soon as its config is written
    train = _config(tmp_path, "train.toml", text=TRAIN)
    d = tmp_path / "train"
    p = processes.start(processes.DYNSIM + ["sweep", str(train), "--out", str(d), "--no-progress"])
    assert processes.wait_for(d / "config.toml", p)
    p.kill()
    p.wait()
    assert not (d / "config.json").exists()  # nothing but the config had reached the disk
    r = processes.run(processes.DYNSIM + ["sweep", "--resume", str(d), "--no-progress"], cwd=tmp_path.parent)
    assert "train: 10 models" in r.stdout and "complete" in r.stdout
    processes.run(processes.DYNSIM + ["sweep", str(train), "--out", str(tmp_path / "train-clean"), "--no-progress"])
    _equal(dynsim.open_result(d).load(), dynsim.open_result(tmp_path / "train-clean").load(), TIMELESS)


# --------------------------------------------------------------------------- a full disk


class _DiskFull:
    """Makes the ``n``-th zarr array write fail with ENOSPC (the coordinates are written first)."""

    def __init__(self, monkeypatch, n):
        import zarr

        self.n, self.calls = n, 0
        real = zarr.Array.__setitem__

        def setitem(arr, key, value):
            self.calls += 1
            if self.calls == self.n:
                raise OSError(errno.ENOSPC, "No space left on device")
            return real(arr, key, value)

        monkeypatch.setattr(zarr.Array, "__setitem__", setitem)


def test_a_full_disk_is_one_oserror_naming_the_directory_and_the_store_resumes_bit_identical(tmp_path,
                                                                                            monkeypatch, capsys):
    metrics = ["rate", "timescale"]
    d = tmp_path / "full"
    with monkeypatch.context() as m:
        # 2 coordinate arrays, then 2 metrics per chunk: the 2nd metric of chunk 4 fails, half written
        _DiskFull(m, 2 + 2 * 4 + 2)
        with pytest.raises(OSError) as e:
            dynsim.sweep("sa", "quadratic", SMALL, 256, metrics, progress=False, out=d, chunk_size=2)
    assert e.value.errno == errno.ENOSPC
    n = json.loads((d / "config.json").read_text())["layout"]["n_chunks"]
    assert str(e.value) == (f"cannot write to {d}: No space left on device; 4 of {n} chunks stored; free space or "
                            f"fix the directory, then resume with: dynsim sweep --resume {d}")
    assert _logged(d) == [0, 1, 2, 3]  # the chunk being written is not logged
    full = dynsim.sweep("sa", "quadratic", SMALL, 256, metrics, progress=False, out=d, chunk_size=2)
    assert full.attrs["complete"] and _logged(d) == list(range(n))
    _equal(full, dynsim.sweep("sa", "quadratic", SMALL, 256, metrics, progress=False))

    cfg = _config(tmp_path, steps=256, chunk_size=2000)
    d2 = tmp_path / "full-cli"
    with monkeypatch.context() as m:
        _DiskFull(m, 3 + 3 * 2 + 1)
        assert cli.main(["sweep", str(cfg), "--out", str(d2), "--no-progress"]) == 1
    err = capsys.readouterr().err
    n = json.loads((d2 / "config.json").read_text())["layout"]["n_chunks"]
    assert err == (f"dynsim sweep: error: cannot write to {d2}: No space left on device; 2 of {n} chunks stored; "
                   f"free space or fix the directory, then resume with: dynsim sweep --resume {d2}\n")
    assert cli.main(["sweep", "--resume", str(d2), "--no-progress"]) == 0
    assert cli.main(["sweep", str(cfg), "--out", str(tmp_path / "clean"), "--no-progress"]) == 0
    _equal(dynsim.open_result(d2).load(), dynsim.open_result(tmp_path / "clean").load())


def test_an_unwritable_directory_is_one_line(tmp_path, monkeypatch, capsys):
    cfg = _config(tmp_path, steps=256)
    d = tmp_path / "ro"

    def refuse(*a, **k):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(store.os, "open", refuse)  # the lock file is the first thing the engine opens
    assert cli.main(["sweep", str(cfg), "--out", str(d), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"dynsim sweep: error: cannot write to {d}: Permission denied;")


# --------------------------------------------------------------------------- sizes, plan check, dry run


def test_absurd_sizes_are_refused_before_anything_is_compiled_or_written(tmp_path, capsys):
    cfg = _config(tmp_path, steps=256)
    d = tmp_path / "o"
    assert cli.main(["sweep", str(cfg), "--out", str(d), "--set", "steps=1000000000000"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "steps=1,000,000,000,000 is more than a sweep can run" in err
    assert not d.exists()  # the config written first is taken back: the input was bad
    assert cli.main(["sweep", str(cfg), "--out", str(d), "--set", "grid.sigma={linspace=[0,1,1000000000000]}"]) == 2
    assert "grid.sigma.linspace: 1,000,000,000,000 values" in capsys.readouterr().err
    assert cli.main(["sweep", str(cfg), "--out", str(d), "--set", "bogus=1"]) == 2  # refused by the TOML check
    assert "unknown key(s) bogus" in capsys.readouterr().err
    with pytest.raises(ValueError, match=r"grid: 3,000 x 1,000 x 1,000 = 3,000,000,000 points is more than"):
        dynsim.sweep("sa", "quadratic", {"k_eta": np.linspace(0.01, 0.1, 3000), "momentum": np.linspace(0, 0.9, 1000),
                                         "sigma": np.linspace(0, 9, 1000)}, 256, ["rate"], progress=False)
    assert not d.exists()


def test_dry_run_prints_the_plan_and_an_estimate_and_writes_nothing(tmp_path, capsys):
    cfg = _config(tmp_path, text=SWEEP.format(steps=4096, chunk_size=488281).replace(
        "40]", "1000]").replace("20]", "1000]").replace("30]", "1000]"))  # 1000 x 1000 x 1000
    d = tmp_path / "never"
    t = time.perf_counter()
    assert cli.main(["sweep", str(cfg), "--out", str(d), "--dry-run"]) == 0
    assert time.perf_counter() - t < 120
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "points: 1,000,000,000 (1,000 x 1,000 x 1,000: k_eta, momentum, sigma)"
    assert out[1] == "steps: 4,096"
    n = int(re.fullmatch(r"chunks: ([\d,]+) of 488,281 points", out[2])[1].replace(",", ""))
    assert n * 488281 >= 10**9 > (n - 1) * 488281 / 2  # chunks are rectangular blocks of the grid, near that size
    assert out[3] == "store: 9 GB uncompressed (3 metrics)"  # 2 float32 metrics + 1 bool per point
    rate = float(re.search(r"\(([\d.e+]+) point-steps/s", out[4])[1])
    est = re.fullmatch(r"estimated time: ([\d.]+) (s|min|h|days)", out[5])
    assert est and rate > 0
    seconds = float(est[1]) * {"s": 1, "min": 60, "h": 3600, "days": 86400}[est[2]]
    assert seconds == pytest.approx(1e9 * 4096 / rate, rel=0.2)  # plus the compile time
    assert not d.exists()
    # the chunks a small dry run announces are those a run makes
    small = _config(tmp_path, "small.toml", steps=256, chunk_size=700)
    assert cli.main(["sweep", str(small), "--dry-run"]) == 0
    announced = capsys.readouterr().out.splitlines()[2]
    assert cli.main(["sweep", str(small), "--out", str(d), "--no-progress"]) == 0
    n = json.loads((d / "config.json").read_text())["layout"]["n_chunks"]
    assert announced == f"chunks: {n:,} of 700 points"


@pytest.mark.slow
def test_dry_run_of_a_training_config_estimates_from_one_chunk_and_writes_nothing(tmp_path, capsys):
    cfg = _config(tmp_path, "train.toml", text=TRAIN)
    d = tmp_path / "never"
    assert cli.main(["sweep", str(cfg), "--out", str(d), "--dry-run"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert not d.exists()
    assert out[0] == "models: 10 (5 x 2: sigma, seed)"
    assert out[1] == "steps: 48"  # 6 epochs of 512 images in batches of 64
    assert out[2] == "chunks: 5 of 2 models"
    store = re.fullmatch(r"store: ([\d.]+) (B|kB) uncompressed \(\d+ variables\)", out[3])
    chunk_s = float(re.fullmatch(r"calibration: one chunk in ([\d.e-]+) s; data, set-up and compile ([\d.]+) s",
                                 out[4])[1])
    est = re.fullmatch(r"estimated time: ([\d.]+) s", out[5])
    assert store and est and float(est[1]) >= 5 * chunk_s > 0
    # what it announces is what a run makes
    assert cli.main(["sweep", str(cfg), "--out", str(d), "--no-progress"]) == 0
    assert json.loads((d / "config.json").read_text())["layout"]["n_chunks"] == 5
    assert dynsim.open_result(d).nbytes == pytest.approx(
        float(store[1]) * {"B": 1, "kB": 1e3}[store[2]], rel=0.01)


def test_without_a_bar_a_line_with_the_eta_is_logged_per_batch_of_chunks(monkeypatch, caplog):
    monkeypatch.setattr(execute, "LOG_EVERY", 0.0)
    with caplog.at_level("INFO", logger="dynsim.sweep"):
        dynsim.sweep("sa", "quadratic", SMALL, 256, ["rate"], progress=False, chunk_size=4)
    lines = [r.getMessage() for r in caplog.records if r.name == "dynsim.sweep"]
    last = re.fullmatch(r"sweep super_accelerated/quadratic: (\d+)/\1 chunks, 26/26 points, \S+ points/s, "
                        r"ETA 0:00:00", lines[-1])
    assert last and len(lines) == int(last[1]) > 5, lines  # a line per chunk (26 points in chunks of about 4)
    assert all(re.search(r"ETA \d+:\d\d:\d\d$", line) for line in lines)


# --------------------------------------------------------------------------- the real cause, one policy


def test_python_control_flow_on_theta_is_named_as_such():
    def loss(theta, a=1.0):
        if theta[0] > 0:
            return a * jnp.sum(theta**2)
        return jnp.sum(theta**2)

    for grid in ({"learning_rate": np.array([0.1, 0.2])}, {"learning_rate": 0.1, "a": np.array([1.0, 2.0])}):
        with pytest.raises(ValueError) as e:
            dynsim.sweep("gd", loss, grid, 96, ["final_loss"], theta0=[1.0, 1.0], progress=False)
        msg = str(e.value)
        assert "the loss uses theta as a Python value" in msg and "jnp.where" in msg and "jax.lax.cond" in msg
        assert "parameters" not in msg

    def on_a(theta, a=1.0):  # here the branch is on a swept parameter: that is the cause named
        return jnp.sum(theta**2) if a > 0 else -jnp.sum(theta**2)

    with pytest.raises(ValueError, match=r"parameters \['a'\] cannot vary per point"):
        dynsim.sweep("gd", on_a, {"learning_rate": 0.1, "a": np.array([1.0, 2.0])}, 96, ["final_loss"],
                     theta0=[1.0, 1.0], progress=False)


def test_python_control_flow_in_a_user_model_is_named_as_such():
    """The same cause in a flax model trained by dynsim.train (it used to be JAX's internal error)."""
    nn = pytest.importorskip("flax.linen")
    from dynsim import data, models

    try:
        digits = data.load("digits")
    except Exception as e:  # scikit-learn missing
        pytest.skip(f"digits unavailable: {e}")

    class Branchy(nn.Module):
        @nn.compact
        def __call__(self, x):
            h = nn.Dense(8)(x.reshape(x.shape[0], -1))
            if h[0, 0] > 0:
                h = nn.relu(h)
            return nn.Dense(10)(h)

    with pytest.raises(ValueError) as e:
        dynsim.train(optax.sgd, models.from_module(Branchy(), "cross_entropy", 10), digits,
                     {"learning_rate": [0.1]}, steps=4, progress=False)
    msg = str(e.value)
    assert "model='Branchy': its forward pass uses x as a Python value" in msg
    assert "jnp.where" in msg and "jax.lax.cond" in msg


def test_one_range_policy_for_factories_sweeps_and_training():
    """Unstable but defined values run everywhere (flagged diverged); undefined ones are refused everywhere."""
    optim.super_accelerated(0.1, 1.2, 1.0)  # momentum past 1: accepted by the factory
    ds = dynsim.sweep("sa", "quadratic", {"k_eta": 0.1, "momentum": np.array([0.9, 1.5]), "sigma": 0.0}, 256,
                      ["rate", "diverged"], progress=False)
    assert ds.diverged.values.tolist() == [False, True]  # ... and by a sweep, which flags it
    from dynsim import data

    digits = data.load("digits")
    tiny = data.Dataset(digits.x_train[:64], digits.y_train[:64], digits.x_test[:16], digits.y_test[:16], "d64", 10)
    tr = dynsim.train("super_accelerated", "nielsen_30", tiny, {"learning_rate": 0.5, "momentum": [0.9, 1.5],
                                                                 "sigma": 0.0}, steps=4, progress=False)
    assert tr.sizes["momentum"] == 2  # ... and by training
    with pytest.raises(ValueError, match="learning_rate=-0.1 must be in >=0"):
        optim.super_accelerated(-0.1, 0.9, 1.0)
    with pytest.raises(ValueError, match=r"negative values .*learning rates must be >= 0"):
        dynsim.sweep("sa", "quadratic", {"k_eta": np.array([-0.1, 0.1]), "momentum": 0.9, "sigma": 0.0}, 256,
                     ["rate"], progress=False)
    with pytest.raises(ValueError, match="learning_rate=-0.5 must be in >=0"):
        dynsim.train("super_accelerated", "nielsen_30", tiny, {"learning_rate": [-0.5, 0.5], "momentum": 0.9,
                                                                "sigma": 0.0}, steps=4, progress=False)
