"""dynsim: learning dynamics of gradient-descent optimizers, in JAX.

Layers, one direction only: ``optim`` (rules) → ``landscapes`` → ``run``
(:func:`simulate`) → ``analysis`` → ``sweep`` → ``train`` → ``figures``.
``ode`` and ``control`` hold the continuous-time and control-theory counterparts.
"""
from __future__ import annotations

import importlib

__version__ = "0.1.0"

from dynsim import analysis, landscapes, optim  # noqa: E402
from dynsim.run import Trajectory, simulate  # noqa: E402

_LAZY = ("sweep", "ode", "control", "data", "train", "models", "tune", "metrics", "figures", "bench")


def __getattr__(name):
    # Heavier layers (xarray, flax, matplotlib) load on first use.
    if name in _LAZY:
        return importlib.import_module(f"dynsim.{name}")
    raise AttributeError(f"module 'dynsim' has no attribute {name!r}")


__all__ = ["analysis", "landscapes", "optim", "simulate", "Trajectory", "__version__", *_LAZY]
