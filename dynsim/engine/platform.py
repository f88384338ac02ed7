r"""Per-platform defaults and XLA:CPU flags: the knobs that depend on the machine.

The engine's defaults differ between XLA:CPU and accelerators, and everything that
depends on the platform asks :func:`platform` (tests force the accelerator path on a CPU
by replacing it, so a first GPU run meets tested code):

* ``unroll`` of the per-step scan (:func:`default_unroll`);
* the block of points one vmapped scan runs (:func:`default_block_size`): cache-sized on
  CPU, where XLA:CPU pays a fixed few microseconds per ``while`` iteration and large blocks
  fall out of cache; the whole local chunk on accelerators;
* the chunk size (:func:`dynsim.engine.layout.default_chunk_size`), bounded by
  :func:`device_memory_bytes`.

Measured values behind these choices are in ``results/bench/README.md``.
"""
from __future__ import annotations

import os
import sys

__all__ = ["platform", "default_unroll", "default_block_size", "device_memory_bytes", "configure_xla_cpu",
           "configure_at_import", "restore_jax_defaults", "warn_if_unconfigured", "cpu_has_avx512", "compiler_options",
           "CPU_COMPILER_OPTIONS"]

# XLA:CPU's default instruction scheduler ("concurrency optimised", a breadth-first order)
# deadlocks some training programs on their first call: jaxlib 0.10.2, adam_sa with the
# Hessian metric, 6+ models of 784-30-10 on 5000 images -- every thread then waits, none runs
# (reproduced by tests/test_training_device.py::test_cpu_scheduler_guard). The depth-first
# "memory optimised" schedule runs it, and costs nothing measurable on the training bench
# (results/bench/README.md). Passed per executable, so it holds however JAX was started.
CPU_COMPILER_OPTIONS = {"xla_cpu_scheduler_type": "CPU_SCHEDULER_TYPE_MEMORY_OPTIMIZED"}


def platform() -> str:
    """The platform of the first JAX device (``"cpu"``, ``"gpu"``, ``"tpu"``)."""
    import jax

    return jax.devices()[0].platform


def default_unroll() -> int:
    """Scan unroll used when none is given: 4 on CPU, 32 (one checkpoint interval) elsewhere.

    On XLA:CPU longer unrolled bodies compile to slower loops (see the bench README). On
    accelerators each loop iteration costs a kernel launch's worth of overhead, so longer
    bodies pay; inside the metrics kernel a scan never runs longer than ``every`` (32)
    steps, so 32 is the largest useful value there.
    """
    return 4 if platform() == "cpu" else 32


def default_block_size() -> int:
    """Points per vmapped scan on one device: 2^18 on CPU (cache-sized), unbounded elsewhere."""
    return (1 << 18) if platform() == "cpu" else 1 << 30


def device_memory_bytes(n_devices: int = 1) -> int:
    """Memory the chunks may use on ``n_devices`` devices: the accelerators' limit, or host RAM on CPU."""
    import jax

    if platform() == "cpu":
        try:
            return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        except (ValueError, OSError, AttributeError):  # pragma: no cover
            return 8 << 30
    try:
        return int(jax.devices()[0].memory_stats()["bytes_limit"]) * n_devices
    except Exception:  # pragma: no cover - depends on the backend
        return (8 << 30) * n_devices


def compiler_options() -> dict | None:
    """XLA options for compiling the training programs here: :data:`CPU_COMPILER_OPTIONS` on CPU."""
    return dict(CPU_COMPILER_OPTIONS) if platform() == "cpu" else None


def cpu_has_avx512() -> bool:
    """Whether ``/proc/cpuinfo`` lists AVX-512F."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return "avx512f" in line.split()
    except OSError:
        pass
    return False


def configure_xla_cpu() -> None:
    """Set XLA:CPU flags for sweeps, if JAX is not up yet and the user has not set them.

    * Every CPU core becomes a JAX device, so chunks shard over cores.
    * On CPUs with AVX-512, loops are vectorised 512 bits wide: XLA's default is 256, while
      numpy's own loops use AVX-512 there. Results are bit-identical either way (tested).

    The CLI calls this first; ``import dynsim`` too (:func:`configure_at_import`).
    """
    flags = os.environ.get("XLA_FLAGS", "")
    if _backend_up():
        return
    add = []
    n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if n > 1 and "xla_force_host_platform_device_count" not in flags:
        add.append(f"--xla_force_host_platform_device_count={n}")
    if "xla_cpu_prefer_vector_width" not in flags and cpu_has_avx512():
        add.append("--xla_cpu_prefer_vector_width=512")
    if add:
        os.environ["XLA_FLAGS"] = " ".join([flags, *add]).strip()


def _backend_up() -> bool:
    """Whether JAX's backends are initialised (XLA_FLAGS is read then, and never again).

    Never imports JAX (``import dynsim`` must not): a JAX that is not imported yet is not up.
    """
    if "jax._src.xla_bridge" not in sys.modules:
        return False
    try:
        from jax._src import xla_bridge  # no public way to ask whether backends are up

        return bool(xla_bridge.backends_are_initialized())
    except Exception:  # pragma: no cover - private API moved: assume up, change nothing
        return True


#: What ``import dynsim`` did about the XLA:CPU flags: ``"configured"`` (set them), ``"user"``
#: (``XLA_FLAGS`` was set: left alone), ``"late"`` (JAX was already up: the first sweep warns).
IMPORT_STATE: dict[str, str | bool | None] = {"cpu": None, "warned": False}


def configure_at_import() -> str:
    """``import dynsim``: the CLI's XLA:CPU configuration (:func:`configure_xla_cpu`) for Python users.

    Only where the user has not set ``XLA_FLAGS`` (a user's flags are never changed) and JAX's
    backend is not up yet; JAX is not imported. Returns what it did (:data:`IMPORT_STATE`).
    """
    if "XLA_FLAGS" in os.environ:
        state = "user"
    elif _backend_up():
        state = "late"
    else:
        configure_xla_cpu()
        state = "configured"
    IMPORT_STATE["cpu"] = state
    return state


def restore_jax_defaults() -> None:
    """Undo what ``import dynsim`` set (:func:`configure_at_import`), while JAX is not up yet.

    ``dynsim figure`` reproduces stored figures, computed with JAX's default XLA:CPU flags:
    other flags (more devices, wider vectors) change the last bits of some float32 programs
    (training, tuning), though not of the sweeps.
    """
    if IMPORT_STATE["cpu"] == "configured" and not _backend_up():
        os.environ.pop("XLA_FLAGS", None)
        IMPORT_STATE["cpu"] = "restored"


def warn_if_unconfigured() -> None:
    """Once per process: a warning when JAX started before ``import dynsim`` could give every CPU
    core a device, and this sweep therefore runs on fewer devices than cores."""
    if IMPORT_STATE["cpu"] != "late" or IMPORT_STATE["warned"]:
        return
    IMPORT_STATE["warned"] = True
    import jax

    n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if platform() != "cpu" or len(jax.devices()) >= n:
        return
    import warnings

    warnings.warn(f"dynsim: JAX started before `import dynsim`, so this sweep runs on {len(jax.devices())} of {n} "
                  "CPU cores; import dynsim before using JAX (or set XLA_FLAGS="
                  f"--xla_force_host_platform_device_count={n}) to use them all", stacklevel=3)
