r"""The sweep engine: any optimizer on any problem over a grid, in one compiled program.

Public front (re-exported at the package top as ``dynsim.sweep``, ``dynsim.locate``,
``dynsim.open_result``); one job per module behind it:

=====================  ===========================================================
``problem``            what runs: optimizer and landscape specs, import paths, fingerprints
``grid``               the one grid parser (:func:`parse_grid`: sweeps and training)
``plan``               validation of a landscape sweep (:class:`Plan`)
``layout``             chunks and blocks
``platform``           per-platform defaults, XLA:CPU flags
``execute``            the compiled, sharded chunk and point kernels; the one compile cache and trace counter
``store``              the zarr store, progress logs, resume, careful reads
``runner``             :func:`sweep`; :func:`run_job`, the one runner (landscape plans and training jobs)
``optimum``            :func:`locate`: the optimum along an axis, refined (not named ``locate``: a
                       submodule of that name would shadow the function once imported)
``config``             TOML configs
``plot``               :func:`plot_located`
``batch``              :func:`map_grid`: a chunked, sharded map for non-metric work
=====================  ===========================================================
"""
import importlib

# name -> submodule: the front's functions, imported on first use, so that reading a store
# (dynsim.engine.store, dynsim view) does not load JAX
_EXPORTS = {
    "sweep": "runner", "locate": "optimum", "open_result": "store", "load_config": "config",
    "run_config": "config", "plot_located": "plot", "map_grid": "batch", "local_devices": "batch",
    "configure_xla_cpu": "platform", "default_unroll": "platform", "trace_count": "execute",
    "import_object": "problem", "CorruptStoreError": "store",
}


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"dynsim.engine.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'dynsim.engine' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))


__all__ = list(_EXPORTS)
