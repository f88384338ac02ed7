"""dynsim.training.device: the device program on XLA:CPU (its scheduler guard)."""
import subprocess
import sys
import textwrap

import pytest

from dynsim.engine import platform
from tests import processes

# 6 adam_sa models of 784-30-10 on 5000 images with the Hessian metric: under XLA:CPU's default
# ("concurrency optimised") scheduler the first call of this program never returned on
# jaxlib 0.10.2 (all threads idle, 0 % CPU; seen with MNIST and with these random images).
# With platform.CPU_COMPILER_OPTIONS it runs in about 7 s on a 2-core machine.
_SCRIPT = textwrap.dedent("""
    import numpy as np
    from dynsim import data, models, training
    from dynsim.hessian import Hessian
    rng = np.random.default_rng(0)
    n = 5000
    ds = data.Dataset(rng.random((n, 28, 28, 1), np.float32), rng.integers(0, 10, n).astype(np.int32),
                      rng.random((100, 28, 28, 1), np.float32), rng.integers(0, 10, 100).astype(np.int32),
                      "random", 10)
    out = training.train("adam_sa", models.nielsen_mlp((30,)), ds,
                         {"learning_rate": 1e-2, "sigma": np.linspace(0.0, 4.0, 6)}, steps=10,
                         metrics_every=10, eval_on=("train",), hessian=Hessian(10, k=1, iters=20),
                         placement=training.Placement(chunk_size=6), progress=False)
    print("sharpness", np.isfinite(out.sharpness.values).sum())
""")


@pytest.mark.slow
def test_cpu_scheduler_guard():
    # one host device, as a user's plain `python` has (the deadlock was found there)
    env = {**processes.env(), "XLA_FLAGS": "", "JAX_PLATFORMS": "cpu"}
    try:
        r = subprocess.run([sys.executable, "-c", _SCRIPT], env=env, capture_output=True, text=True, timeout=300)
    except subprocess.TimeoutExpired:
        pytest.fail("the adam_sa + Hessian training program did not finish in 300 s (XLA:CPU scheduler deadlock?)")
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.split() == ["sharpness", "12"]  # 6 models x (step 0, step 10)


def test_compiler_options_on_cpu():
    assert platform.compiler_options() == platform.CPU_COMPILER_OPTIONS  # the tests run on CPU
    assert platform.compiler_options() is not platform.CPU_COMPILER_OPTIONS  # a copy: callers cannot edit it
