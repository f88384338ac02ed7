"""Code named by an import path (``"package.module:function"``): found, checked, and found again.

Sweep configs, stored results and the CLI name user code this way; one copy of the rules
for every entry point.
"""
from __future__ import annotations

import importlib
import inspect
from typing import Any

__all__ = ["import_object", "signature", "importable"]


def import_object(path: str, what: str) -> Any:
    """The object at ``"package.module:attr.sub"``; ValueError naming ``what`` if it does not resolve."""
    if not isinstance(path, str) or path.count(":") != 1:
        raise ValueError(f"{what}={path!r}: an import path looks like 'package.module:function'")
    mod_name, attr = path.split(":")
    if not mod_name or not attr:
        raise ValueError(f"{what}={path!r}: an import path looks like 'package.module:function'")
    try:
        obj = importlib.import_module(mod_name)
    except ImportError as e:
        raise ValueError(f"{what}={path!r}: module {mod_name!r} cannot be imported ({e})") from None
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ValueError(f"{what}={path!r}: module {mod_name!r} has no attribute {attr!r}") from None
    return obj


def signature(fn) -> tuple[tuple[str, ...], dict[str, Any], bool]:
    """(parameter names, their defaults, whether ``**kwargs`` is accepted)."""
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):  # builtins without a signature
        return (), {}, True
    names = tuple(p.name for p in params.values() if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD))
    defaults = {p.name: p.default for p in params.values() if p.default is not inspect.Parameter.empty}
    var_kw = any(p.kind == p.VAR_KEYWORD for p in params.values())
    return names, defaults, var_kw


def importable(name: str, obj) -> bool:
    """Whether ``name`` (``module:qualname``) imports back to ``obj`` (not so for lambdas, closures)."""
    if "<" in name or name.startswith("__main__:"):
        return False
    try:
        return import_object(name, "import path") is obj
    except ValueError:
        return False
