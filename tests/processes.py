"""Helpers for tests that run dynsim in other processes: kill it part-way, run jax.distributed workers."""
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import sys
import time

import pytest

import dynsim

DYNSIM = [sys.executable, "-m", "dynsim"]


def env() -> dict:
    """The environment for a child process that imports this checkout's dynsim."""
    return {**os.environ, "PYTHONPATH": str(pathlib.Path(dynsim.__file__).parents[1])}


def kill_when_logged(argv, log: pathlib.Path, n_lines: int, *, cwd=None, timeout: float = 240) -> int:
    """Start ``argv``, SIGKILL it once ``log`` has ``n_lines`` complete lines; return the lines then."""
    proc = subprocess.Popen(argv, env=env(), cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + timeout
    while time.time() < deadline:
        if log.exists() and log.read_text().count("\n") >= n_lines:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            return log.read_text().count("\n")
        if proc.poll() is not None:
            pytest.fail("finished before it could be killed: " + proc.stderr.read().decode()[-800:])
        time.sleep(0.005)
    proc.kill()
    pytest.fail(f"{log} did not reach {n_lines} lines in {timeout} s")


def run(argv, *, cwd=None, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run ``argv`` to completion (this checkout's dynsim on the path); fail with its stderr if it fails."""
    r = subprocess.run(argv, env=env(), cwd=cwd, capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, r.stderr[-2000:]
    return r


def distributed(script: pathlib.Path, n: int, *args, timeout: float = 400) -> list[str]:
    """Run ``script PROCESS_ID N PORT *args`` as ``n`` jax.distributed processes on localhost; their logs."""
    with socket.socket() as s:
        s.bind(("localhost", 0))
        port = str(s.getsockname()[1])
    procs = [subprocess.Popen([sys.executable, str(script), str(i), str(n), port, *map(str, args)], env=env(),
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for i in range(n)]
    try:
        logs = [p.communicate(timeout=timeout)[0] for p in procs]
    finally:
        for p in procs:
            p.kill()
    assert [p.returncode for p in procs] == [0] * n, logs
    return logs


# A background job of a non-interactive shell ignores SIGINT and its children inherit that: the
# child resets it to the default, then execs the command (same pid). GNU env does it in C; else a
# Python wrapper (a preexec_fn would run Python between fork and exec in this multithreaded process).
_SIGINT_DEFAULT = ("import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
                   "os.execv(sys.argv[1], sys.argv[1:])")


def _sigint_default_prefix() -> list[str]:
    env_bin = shutil.which("env")
    if env_bin and subprocess.run([env_bin, "--default-signal=INT", "true"], capture_output=True).returncode == 0:
        return [env_bin, "--default-signal=INT"]
    return [sys.executable, "-c", _SIGINT_DEFAULT]


def start(argv, *, cwd=None) -> subprocess.Popen:
    """Start ``argv`` (stdout and stderr captured as text) with SIGINT at its default disposition."""
    return subprocess.Popen([*_sigint_default_prefix(), *argv], env=env(), cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def wait_for(path: pathlib.Path, proc: subprocess.Popen | None = None, timeout: float = 120) -> bool:
    """Wait until ``path`` exists (``False`` if ``proc`` ended first)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if path.exists():
            return True
        if proc is not None and proc.poll() is not None:
            return False
        time.sleep(0.002)
    pytest.fail(f"{path} did not appear in {timeout} s")


#: A small training sweep config (digits, 5 σ × 2 seeds in chunks of 2 models): the kill-and-resume
#: and signal tests of the training engine share it.
TRAIN_CONFIG = """
optimizer = "super_accelerated"
chunk_size = 2

[problem]
model = "nielsen_30"
dataset = "digits"
batch_size = 64
epochs = 6
seeds = [0, 1]
train_subset = 512
eval_on = ["test"]

[grid]
learning_rate = 0.5
momentum = 0.9
sigma = [0.0, 0.9, 2.0, 4.0, 8.0]
"""


def assert_same_dataset(a, b, skip=()) -> None:
    """Two results are equal bit for bit (variables but ``skip``, and coordinates)."""
    import numpy as np

    assert set(a.data_vars) == set(b.data_vars)
    for k in a.data_vars:
        if k not in skip:
            np.testing.assert_array_equal(a[k].values, b[k].values, err_msg=k)
    for d in a.dims:
        np.testing.assert_array_equal(a[d].values, b[d].values)


def stopped_sweep(optimizer, landscape, grid, steps, metrics=None, *, stop_after: int, out, progress=False, **kw):
    """``dynsim.sweep`` stopped after ``stop_after`` chunks, as a kill between chunks would stop it.

    The engine's own hook (``run_plan(stop_after=)``); the plan is made as ``dynsim.sweep``
    makes it, so ``dynsim.sweep`` resumes the store.
    """
    from dynsim.engine import plan, runner

    run_kw = {k: kw.pop(k) for k in ("devices", "block_size", "chunks") if k in kw}
    p = plan.make_plan(optimizer, landscape, grid, steps, metrics=metrics, **kw)
    return runner.run_plan(p, out=out, progress=progress, stop_after=stop_after, **run_kw)

