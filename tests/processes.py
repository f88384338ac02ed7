"""Helpers for tests that run dynsim in other processes: kill it part-way, run jax.distributed workers."""
import os
import pathlib
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
