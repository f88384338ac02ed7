"""dynsim: learning dynamics of gradient-descent optimizers, in JAX.

Layers, one direction only: ``optim`` (rules) → ``landscapes`` → ``run``
(:func:`simulate`) → ``analysis`` → ``engine`` (:func:`sweep`, :func:`locate`,
:func:`open_result`) → ``training`` (:func:`train`) → ``tuning`` (:func:`tune`) → ``figures``.
``ode`` and ``control`` hold the continuous-time and control-theory counterparts.

The entry points are plain functions at the top level; the heavier layers (xarray,
zarr, flax, matplotlib) load on first use.
"""
from __future__ import annotations

import importlib

__version__ = "0.1.0"

from dynsim import analysis, landscapes, optim  # noqa: E402
from dynsim.run import Trajectory, simulate  # noqa: E402

# name -> (module, attribute): entry points, loaded on first use
_ENTRY_POINTS = {
    "sweep": ("dynsim.engine", "sweep"),
    "locate": ("dynsim.engine", "locate"),
    "open_result": ("dynsim.engine", "open_result"),
    "train": ("dynsim.training", "train"),
    "tune": ("dynsim.tuning", "tune"),
}
_LAZY_MODULES = ("engine", "ode", "control", "data", "training", "models", "tuning", "metrics", "figures",
                 "bench", "cycles", "numerics")


def __getattr__(name):
    if name in _ENTRY_POINTS:
        module, attr = _ENTRY_POINTS[name]
        return getattr(importlib.import_module(module), attr)
    if name in _LAZY_MODULES:
        return importlib.import_module(f"dynsim.{name}")
    raise AttributeError(f"module 'dynsim' has no attribute {name!r}")


__all__ = ["analysis", "landscapes", "optim", "simulate", "Trajectory", "__version__",
           *_ENTRY_POINTS, *_LAZY_MODULES]
