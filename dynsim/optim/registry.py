r"""The rule registry: :data:`RULES` by name, aliases, and resolving an optimizer given by name or factory.

:func:`resolve` accepts a rule name (or alias), a rule factory or any optax factory;
:func:`get` builds a rule by name; :func:`hyperparameter_names` lists a factory's
hyperparameters.
"""
from __future__ import annotations

from typing import Callable

import optax

from dynsim.optim import rules
from dynsim.optim.core import Rule

__all__ = ["RULES", "LINEAR_RULES", "get", "resolve", "callable_name", "hyperparameter_names"]

# every rule of dynsim.optim.rules, by its name
RULES: dict[str, Callable[..., Rule]] = {name: getattr(rules, name) for name in rules.__all__}
#: Rules whose map is linear and homogeneous in (θ − θ*, u, inner state) on a quadratic
#: (their state may be rescaled freely: :mod:`dynsim.metrics`, :mod:`dynsim.tuning`).
LINEAR_RULES = frozenset(
    {"gd", "heavy_ball", "nesterov", "super_accelerated", "ema_momentum", "nesterov_time_varying"}
)
_ALIASES = {"sa": "super_accelerated", "hb": "heavy_ball", "nag": "nesterov", "sgd": "gd"}


def _resolve(name: str) -> Callable[..., Rule]:
    if not isinstance(name, str):
        raise ValueError(f"optimizer={name!r} must be a rule name or a dynsim.optim factory")
    key = _ALIASES.get(name, name)
    if key not in RULES:
        raise ValueError(
            f"optimizer={name!r} is unknown; choose one of {', '.join(RULES)} "
            f"(aliases: {', '.join(_ALIASES)})"
        )
    return RULES[key]


def resolve(optimizer: str | Callable[..., optax.GradientTransformation]) -> tuple[str, Callable]:
    """``(name, factory)`` of an optimizer given by rule name, rule factory or any optax factory.

    A name (or alias) gives the :data:`RULES` entry. Any other callable is taken as a
    factory ``f(**hyperparameters) -> optax.GradientTransformation`` (``optax.adam``, a
    user function composing optax pieces); its name is ``module:qualname`` (the import
    path :func:`dynsim.imports.import_object` reads back), or its ``__name__`` for
    the rules of :mod:`dynsim.optim`. Whether it really returns a transformation is checked where
    it is first called.

    >>> resolve("sa")[0], resolve(rules.super_accelerated)[0]
    ('super_accelerated', 'super_accelerated')
    >>> resolve(optax.adam)[0]
    'optax:adam'
    """
    if isinstance(optimizer, str):
        fn = _resolve(optimizer)
        return fn.__name__, fn
    if isinstance(optimizer, optax.GradientTransformation):
        raise ValueError(
            f"optimizer={optimizer!r} is a transformation, not a factory: pass the function that "
            "builds it (e.g. optax.adam, not optax.adam(1e-3)) so its hyperparameters can be swept"
        )
    if not callable(optimizer):
        raise ValueError(f"optimizer={optimizer!r} must be a rule name or a factory returning an "
                         "optax GradientTransformation")
    for name, fn in RULES.items():
        if fn is optimizer:
            return name, fn
    return callable_name(optimizer), optimizer


def callable_name(fn: Callable) -> str:
    """``module:qualname`` of a function (``optax:adam``); public API modules are preferred.

    optax defines ``adam`` in a private ``_src`` module and re-exports it: the shortest
    importable public parent module that holds the same object is used, so the name reads
    back with :func:`importlib.import_module`.
    """
    import importlib
    import sys

    mod = getattr(fn, "__module__", None) or "?"
    qual = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or type(fn).__name__
    parts = mod.split(".")
    for i in range(1, len(parts)):
        parent = ".".join(parts[:i])
        m = sys.modules.get(parent)
        if m is None:
            try:
                m = importlib.import_module(parent)
            except Exception:
                continue
        if getattr(m, qual, None) is fn:
            return f"{parent}:{qual}"
    return f"{mod}:{qual}"


def hyperparameter_names(optimizer: str | Callable[..., Rule]) -> tuple[str, ...]:
    """Names of a rule's hyperparameters, in factory order."""
    import inspect

    fn = _resolve(optimizer) if isinstance(optimizer, str) else optimizer
    return tuple(
        p.name
        for p in inspect.signature(fn).parameters.values()
        if p.name != "lookahead"
    )


def get(optimizer: str | Callable[..., Rule], **hyperparams) -> Rule:
    """Build a rule by name: ``get("super_accelerated", learning_rate=0.1, momentum=0.9, sigma=2)``."""
    fn = _resolve(optimizer) if isinstance(optimizer, str) else optimizer
    try:
        return fn(**hyperparams)
    except TypeError as e:
        raise ValueError(
            f"optimizer {getattr(fn, '__name__', fn)!r} takes hyperparameters "
            f"{hyperparameter_names(fn)}; got {sorted(hyperparams)}"
        ) from e
