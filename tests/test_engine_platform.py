"""``import dynsim`` and the XLA:CPU flags (dynsim.engine.platform), in fresh processes."""
import json
import os
import subprocess
import sys

import numpy as np
import processes
import pytest

import dynsim

_IMPORT = """
import json, os, sys, warnings
if sys.argv[1] == "jax-up":
    import jax
    jax.devices()
import dynsim
out = {"flags": os.environ.get("XLA_FLAGS"), "jax_imported": "jax" in sys.modules}
import jax
import numpy as np
out["devices"] = len(jax.devices())
if sys.argv[1] == "jax-up":
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        for _ in range(2):
            dynsim.sweep("gd", "quadratic", {"learning_rate": np.array([0.1, 0.2])}, 8, ["final_loss"],
                         progress=False)
    out["warnings"] = [str(x.message) for x in w if "import dynsim" in str(x.message)]
print(json.dumps(out))
"""


def _run(mode, **env):
    base = {k: v for k, v in processes.env().items() if k != "XLA_FLAGS"}
    r = subprocess.run([sys.executable, "-c", _IMPORT, mode], env={**base, **env}, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


def _cores():
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def test_import_gives_every_core_a_device_without_importing_jax():
    out = _run("fresh")
    assert not out["jax_imported"]  # import dynsim stays lazy: the flags are an environment variable
    if _cores() > 1:
        assert f"--xla_force_host_platform_device_count={_cores()}" in out["flags"]
    assert out["devices"] == _cores()


def test_import_never_changes_a_users_xla_flags():
    out = _run("fresh", XLA_FLAGS="--xla_cpu_prefer_vector_width=256")
    assert out["flags"] == "--xla_cpu_prefer_vector_width=256"
    assert out["devices"] == 1


def test_jax_already_up_warns_once_at_the_first_sweep():
    out = _run("jax-up")
    assert out["flags"] is None and out["devices"] == 1
    if _cores() > 1:
        assert len(out["warnings"]) == 1 and f"1 of {_cores()} CPU cores" in out["warnings"][0]
    else:
        assert out["warnings"] == []


def test_dynsim_figure_keeps_jax_defaults():
    """Stored figures were computed with JAX's own flags: the figure command undoes the import's."""
    code = ("import os, dynsim; from dynsim.engine import platform; before = os.environ.get('XLA_FLAGS'); "
            "platform.restore_jax_defaults(); print(before is not None or platform.IMPORT_STATE['cpu'], "
            "os.environ.get('XLA_FLAGS'))")
    base = {k: v for k, v in processes.env().items() if k != "XLA_FLAGS"}
    r = subprocess.run([sys.executable, "-c", code], env=base, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.split()[-1] == "None"


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
