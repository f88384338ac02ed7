r"""What the machine can do and how loaded it is: measurements every benchmark reports beside its own."""
from __future__ import annotations

import json
import os
import pathlib
import time

import numpy as np

__all__ = ["load_average", "device_times", "matmul_rate", "write"]


def load_average() -> float | None:
    """The 1-minute load average (``None`` where the system has none): other jobs on a shared machine."""
    try:
        return os.getloadavg()[0]
    except (OSError, AttributeError):  # pragma: no cover
        return None


def device_times(call, repeats: int) -> list[float]:
    """Seconds of ``repeats`` calls of ``call()`` (each waited for), after one warm-up call."""
    call().block_until_ready()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        call().block_until_ready()
        times.append(time.perf_counter() - t0)
    return times


def matmul_rate(n: int = 2048, repeats: int = 5) -> float:
    """FLOP/s of an ``n × n`` float32 matmul on the default device: the device's measured rate (best repeat)."""
    import jax
    import jax.numpy as jnp

    a = jnp.ones((n, n), jnp.float32)
    f = jax.jit(lambda a: a @ a)
    return 2.0 * n**3 / float(np.min(device_times(lambda: f(a), repeats)))


def write(path, result) -> None:
    """Write a result dict as JSON to ``path`` (a file; its folder is created)."""
    if path is None:
        return
    p = pathlib.Path(path)
    if p.exists() and p.is_dir():
        raise ValueError(f"--out {p}: is a directory; give a file name")
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(result, indent=1, default=str) + "\n")
    print(f"wrote {p}")
