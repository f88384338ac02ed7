"""The one resolver of optimizers: a rule name, a factory or an import path, as every entry point reads them.

:func:`resolve_optimizer` turns what a user gave (``"super_accelerated"``,
:func:`dynsim.optim.super_accelerated`, ``optax.adam``, ``"optax:adam"``) into an
:class:`OptimizerSpec`: the factory, its sweepable keyword arguments and whether a config
can name it again. :func:`dynsim.simulate`, :func:`dynsim.sweep`, :func:`dynsim.train` and
:func:`dynsim.tune` all resolve through it.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping

import optax

from dynsim.imports import import_object, importable, signature
from dynsim.optim.core import Rule, lookahead_momentum
from dynsim.optim.registry import RULES, resolve

__all__ = ["OptimizerSpec", "resolve_optimizer", "as_rule"]


def as_rule(optimizer) -> Rule:
    """Accept a :class:`dynsim.optim.Rule` or any optax transformation.

    A plain optax transformation has no look-ahead, so its paper coordinates are its
    parameters: it is wrapped as a direction piece with ``μ = σ = 0``.
    """
    if isinstance(optimizer, Rule):
        return optimizer
    if isinstance(optimizer, optax.GradientTransformation) or (
        hasattr(optimizer, "init") and hasattr(optimizer, "update")
    ):
        return lookahead_momentum(optimizer, 0.0, 0.0, name=type(optimizer).__name__)
    raise ValueError(
        f"optimizer={optimizer!r} must be a dynsim.optim rule or an optax GradientTransformation"
    )


@dataclasses.dataclass(frozen=True, eq=False)
class OptimizerSpec:
    """A resolved optimizer.

    Attributes:
      name: the rule's name, or ``module:qualname`` of a user factory.
      factory: ``f(**hyperparameters)`` returning a transformation.
      builtin: a :mod:`dynsim.optim` rule (its constraints and linearity are known).
      params: the keyword arguments the factory takes (``lookahead`` excluded for rules).
      defaults: their defaults.
      var_kwargs: the factory accepts ``**kwargs`` (any name is passed through).
      importable: ``name`` imports back to ``factory`` (a config file can name it).
    """

    name: str
    factory: Callable
    builtin: bool
    params: tuple[str, ...]
    defaults: Mapping[str, Any]
    var_kwargs: bool
    importable: bool

    def build(self, **hyper) -> Rule:
        """The rule at these hyperparameters (a plain optax transformation is wrapped, μ = σ = 0)."""
        return as_rule(self.factory(**hyper))

    def accepts(self, name: str) -> bool:
        return name in self.params or self.var_kwargs

    # equal specs share compiled programs: identity is the factory (and its name)
    def __eq__(self, other):
        return isinstance(other, OptimizerSpec) and (self.name, self.factory) == (other.name, other.factory)

    def __hash__(self):
        return hash((self.name, self.factory))


def resolve_optimizer(optimizer) -> OptimizerSpec:
    """An :class:`OptimizerSpec` from a rule name, a factory or an import path."""
    if isinstance(optimizer, str) and ":" in optimizer:
        obj = import_object(optimizer, "optimizer")
        if not callable(obj):
            raise ValueError(f"optimizer={optimizer!r} is not callable")
        optimizer = obj
    name, factory = resolve(optimizer)
    builtin = name in RULES and RULES[name] is factory
    names, defaults, var_kw = signature(factory)
    return OptimizerSpec(name, factory, builtin, names, defaults, var_kw,
                         importable=builtin or importable(name, factory))
