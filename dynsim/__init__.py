"""dynsim: learning dynamics of gradient-descent optimizers, in JAX.

Layers, one direction only: ``optim`` (rules) → ``landscapes`` → ``run``
(:func:`simulate`) → ``analysis`` → ``engine`` (:func:`sweep`, :func:`locate`,
:func:`open_result`) → ``training`` (:func:`train`) → ``tuning`` (:func:`tune`) → ``figures``.
``ode`` and ``control`` hold the continuous-time and control-theory counterparts.

The entry points are plain functions at the top level; every layer, JAX included, loads on
first use, so ``import dynsim`` (and the CLI's start-up: its signal handlers, the first
write of a sweep's source) takes a fraction of a second.

``import dynsim`` gives JAX the CLI's XLA:CPU flags (every core a device, the widest
vectors: :func:`dynsim.engine.platform.configure_xla_cpu`) where JAX's backend is not up yet
and ``XLA_FLAGS`` is not set; where JAX was already running, the first sweep warns once.
"""
from __future__ import annotations

import importlib

from dynsim.engine import platform as _platform

__version__ = "0.1.0"

# The CLI's XLA:CPU configuration (every core a device, the widest vectors) for Python users
# too: only an environment variable, before JAX starts, and never over a user's XLA_FLAGS.
_platform.configure_at_import()

# name -> (module, attribute): entry points, loaded on first use
_ENTRY_POINTS = {
    "simulate": ("dynsim.run", "simulate"),
    "Trajectory": ("dynsim.run", "Trajectory"),
    "sweep": ("dynsim.engine", "sweep"),
    "locate": ("dynsim.engine", "locate"),
    "open_result": ("dynsim.engine", "open_result"),
    "train": ("dynsim.training", "train"),
    "tune": ("dynsim.tuning", "tune"),
}
_LAZY_MODULES = ("analysis", "landscapes", "optim", "engine", "ode", "control", "data", "training", "models",
                 "tuning", "metrics", "figures", "bench", "cycles", "numerics", "view", "hessian", "ntk",
                 "labelled", "provenance")


def __getattr__(name):
    if name in _ENTRY_POINTS:
        module, attr = _ENTRY_POINTS[name]
        return getattr(importlib.import_module(module), attr)
    if name in _LAZY_MODULES:
        return importlib.import_module(f"dynsim.{name}")
    raise AttributeError(f"module 'dynsim' has no attribute {name!r}")


__all__ = ["__version__", *_ENTRY_POINTS, *_LAZY_MODULES]


def __dir__():
    # the lazy entry points and modules: dir(dynsim) and tab completion list what a user may use,
    # not this file's own imports
    return sorted(__all__)
