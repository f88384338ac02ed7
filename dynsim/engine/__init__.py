r"""The sweep engine: any optimizer on any problem over a grid, in one compiled program.

Public front (re-exported at the package top as ``dynsim.sweep``, ``dynsim.locate``,
``dynsim.open_result``); one job per module behind it:

=====================  ===========================================================
``problem``            what runs: optimizer and landscape specs, import paths, fingerprints
``plan``               grid parsing and validation
``layout``             chunks and blocks
``platform``           per-platform defaults, XLA:CPU flags
``execute``            the compiled, sharded chunk and point kernels
``store``              the zarr store, progress logs, resume, careful reads
``runner``             :func:`sweep`: plan → layout → store → chunks
``locate``             :func:`locate`: the optimum along an axis, refined
``config``             TOML configs
``plot``               :func:`plot_located`
``batch``              :func:`map_grid`: a chunked, sharded map for non-metric work
=====================  ===========================================================
"""
from dynsim.engine.batch import local_devices, map_grid
from dynsim.engine.config import load_config, run_config
from dynsim.engine.execute import trace_count
from dynsim.engine.locate import locate
from dynsim.engine.platform import configure_xla_cpu, default_unroll
from dynsim.engine.plot import plot_located
from dynsim.engine.problem import import_object
from dynsim.engine.runner import sweep
from dynsim.engine.store import CorruptStoreError, open_result

__all__ = ["sweep", "locate", "open_result", "load_config", "run_config", "plot_located", "map_grid",
           "local_devices", "configure_xla_cpu", "default_unroll", "trace_count", "import_object",
           "CorruptStoreError"]
