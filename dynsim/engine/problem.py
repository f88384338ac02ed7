r"""What a sweep runs: an optimizer factory and a landscape, resolved from what the user gave.

**Optimizers.** A :mod:`dynsim.optim` rule name or factory, or *any* callable returning an
optax ``GradientTransformation`` (``optax.adam``, ``optax.lion``, a user function composing
optax pieces), or an import path ``"module:function"``. Its numeric keyword arguments are
the sweepable hyperparameters; they enter the compiled program as arrays, so one program
serves a whole grid. A plain optax transformation has no look-ahead reparametrisation: its
paper coordinates θ are its parameters (:func:`dynsim.optim.spec.as_rule`). Optimizers resolve
through the one resolver, :func:`dynsim.optim.spec.resolve_optimizer`.

**Landscapes.** A :mod:`dynsim.landscapes` name or factory, a
:class:`~dynsim.landscapes.Landscape` instance, any user function returning a ``Landscape``
(its numeric keyword arguments are sweepable like ``k`` of ``quadratic``), a plain loss
``loss(theta, **params) -> scalar`` (``theta0`` required), or an import path. A callable is a
*factory* when calling it with its parameters returns a ``Landscape``; otherwise it is taken
as a loss.

**Fingerprints.** User code is identified by a hash of what it computes: the jaxpr of the
loss at ``theta0`` and of one optimizer step there, with every constant it closes over. A
resumed sweep must reproduce it exactly (:func:`fingerprint`), so a lambda swapped for
another under the same name is refused.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
from typing import Any, Callable, Mapping

import numpy as np

from dynsim import imports as _imports
from dynsim import landscapes as _landscapes
from dynsim import optim as _optim
from dynsim.imports import import_object, signature
from dynsim.landscapes import Landscape
from dynsim.optim.spec import OptimizerSpec

__all__ = [
    "LandscapeSpec",
    "resolve_landscape",
    "fingerprint",
    "jaxpr_digest",
    "SWEEPABLE_LANDSCAPE_PARAMS",
]

# Built-in landscape parameters that may vary per point (the factory accepts tracers).
SWEEPABLE_LANDSCAPE_PARAMS = {"quadratic": ("k",), "rosenbrock": ("a", "b")}


# --------------------------------------------------------------------------- landscapes


@dataclasses.dataclass(frozen=True, eq=False)
class LandscapeSpec:
    """A resolved landscape.

    Attributes:
      name: registry name, or ``module:qualname`` of user code.
      kind: ``"builtin"``, ``"factory"`` (returns a Landscape), ``"instance"``, ``"loss"``.
      source: what the user gave (the factory, the instance or the loss function).
      params: the parameters a factory or loss takes (not ``theta`` of a loss).
      defaults: their defaults.
      importable: a config file can name it by ``name``.
    """

    name: str
    kind: str
    source: Any
    params: tuple[str, ...]
    defaults: Mapping[str, Any]
    importable: bool

    @property
    def builtin(self) -> bool:
        return self.kind == "builtin"

    @property
    def factory(self) -> Callable[..., Landscape]:
        """``f(**params) -> Landscape``; one object per spec (part of the compile key)."""
        return _factory_of(self)

    @property
    def sweepable(self) -> tuple[str, ...] | None:
        """Parameters that may vary per point; ``None``: any numeric one (checked by tracing)."""
        if self.builtin:
            return SWEEPABLE_LANDSCAPE_PARAMS.get(self.name, ())
        return () if self.kind == "instance" else None

    @property
    def cache_key(self):
        return (self.kind, self.source if self.kind != "instance" else id(self.source))


@functools.lru_cache(maxsize=None)
def _loss_factory(loss: Callable, name: str):
    def factory(**params):
        fn = functools.partial(loss, **params) if params else loss
        return Landscape(name, fn, None, None, dict(params))

    return factory


def _factory_of(spec: LandscapeSpec):
    if spec.kind in ("builtin", "factory"):
        return spec.source
    if spec.kind == "loss":
        return _loss_factory(spec.source, spec.name)
    inst = spec.source
    return _instance_factory(id(inst), inst)


_INSTANCE_FACTORIES: dict[int, tuple[Any, Callable]] = {}


def _instance_factory(key: int, inst: Landscape):
    if key not in _INSTANCE_FACTORIES or _INSTANCE_FACTORIES[key][0] is not inst:
        def factory():
            return inst

        _INSTANCE_FACTORIES[key] = (inst, factory)  # holds `inst`: its id stays unique
    return _INSTANCE_FACTORIES[key][1]


def resolve_landscape(landscape, params: Mapping[str, Any] | tuple[()] = ()) -> LandscapeSpec:
    """A :class:`LandscapeSpec` from a name, a factory, an instance, a loss or an import path.

    ``params`` (the landscape parameters the sweep will pass, swept or fixed) tells a user
    factory from a loss: a factory called with them returns a ``Landscape``.
    """
    if isinstance(landscape, str):
        if ":" not in landscape:
            return LandscapeSpec(landscape, "builtin", _landscapes.resolve(landscape),
                                 *signature(_landscapes.resolve(landscape))[:2], importable=True)
        obj = import_object(landscape, "landscape")
        return _from_object(obj, landscape, params, importable=True)
    return _from_object(landscape, None, params, importable=None)


def _from_object(obj, path, params, importable) -> LandscapeSpec:
    if isinstance(obj, Landscape):
        name = path or f"instance:{obj.name}"
        return LandscapeSpec(name, "instance", obj, (), {}, importable=bool(path))
    if not callable(obj):
        raise ValueError(
            f"landscape={path or obj!r} must be a landscape name, a Landscape, a function returning one, "
            "or a loss function theta -> scalar"
        )
    for name, fn in _landscapes.LANDSCAPES.items():
        if fn is obj:
            return LandscapeSpec(name, "builtin", fn, *signature(fn)[:2], importable=True)
    name = path or _optim.callable_name(obj)
    names, defaults, _ = signature(obj)
    imp = importable if importable is not None else _imports.importable(name, obj)
    if _returns_landscape(obj, params):
        return LandscapeSpec(name, "factory", obj, names, defaults, imp)
    # a loss: its first parameter is θ, the rest are parameters
    return LandscapeSpec(name, "loss", obj, names[1:], defaults, imp)


def _returns_landscape(fn, params) -> bool:
    base = {k: (float(np.ravel(v)[0]) if _is_number_like(v) else v) for k, v in dict(params).items()}
    try:
        out = fn(**base)
    except TypeError:  # e.g. a loss called without θ
        return False
    except Exception as e:
        raise ValueError(f"landscape={_optim.callable_name(fn)!r}: calling it with {sorted(base) or 'no arguments'} "
                         f"raised {type(e).__name__}: {e}") from None
    return isinstance(out, Landscape)


def _is_number_like(v) -> bool:
    try:
        a = np.asarray(v)
    except Exception:
        return False
    return a.dtype.kind in "iuf" and a.size > 0


# --------------------------------------------------------------------------- fingerprints


def _hash_closed_jaxpr(h, closed) -> None:
    h.update(str(closed.jaxpr).encode())
    for c in closed.consts:  # constants a closure captured: their values, not just their names
        a = np.asarray(c)
        h.update(str((a.dtype, a.shape)).encode())
        h.update(np.ascontiguousarray(a).tobytes())


def jaxpr_digest(fn: Callable, *args) -> str:
    """sha256 of the jaxpr of ``fn(*args)`` and of every constant it closes over.

    Identifies what code computes (not its name): a lambda replaced by another, or a
    closure over other values, gives another digest; the argument values do not matter.
    """
    import jax

    h = hashlib.sha256()
    _hash_closed_jaxpr(h, jax.make_jaxpr(fn)(*args))
    return h.hexdigest()


def fingerprint(opt: OptimizerSpec, land: LandscapeSpec, hyper: Mapping[str, float],
                land_params: Mapping[str, float], static_hyper: Mapping[str, Any],
                static_land: Mapping[str, Any], theta0: np.ndarray) -> str | None:
    """sha256 of the jaxprs of the loss and of one optimizer step at ``theta0``; ``None`` for built-ins.

    Hyperparameters and swept landscape parameters enter as arguments (their values do not
    change the hash); everything the code closes over does.
    """
    if opt.builtin and land.builtin:
        return None
    import jax
    import jax.numpy as jnp

    factory = land.factory
    h = hashlib.sha256()
    x = jnp.asarray(theta0, jnp.float32)
    hp = {k: jnp.float32(v) for k, v in hyper.items()}
    lp = {k: jnp.float32(v) for k, v in land_params.items()}

    def loss(lp, th):
        return factory(**lp, **static_land).loss(th)

    def step(hp, lp, th):
        rule = opt.build(**hp, **static_hyper)
        grad = jax.grad(lambda t: factory(**lp, **static_land).loss(t))
        return rule.map_step(grad, th, rule.map_init(th))

    if not land.builtin:
        _hash_closed_jaxpr(h, jax.make_jaxpr(loss)(lp, x))
    if not opt.builtin:
        _hash_closed_jaxpr(h, jax.make_jaxpr(step)(hp, lp, x))
    return h.hexdigest()
