r"""Labelled arrays in the closed forms: ``xarray.DataArray`` arguments broadcast by dimension name.

A sweep result holds its hyperparameters as labelled coordinates (``ds.learning_rate``,
``ds.sigma``). Given such arrays, a function decorated with :func:`broadcast_by_name` (every
array function of :mod:`dynsim.analysis`) broadcasts them by *dimension name*, as
``xarray.apply_ufunc`` does: ``stability_threshold(ds.learning_rate, mu, ds.sigma)`` with 2
learning rates and 2 σ is the 2×2 outer product over ``(learning_rate, sigma)``, and two
arguments on the same dimension pair up. Without a ``DataArray`` among the arguments the
function runs unchanged (numpy broadcasting, JAX-traceable, the same bits).
"""
from __future__ import annotations

import functools
import inspect
import sys
from typing import Callable, Sequence

import numpy as np

__all__ = ["broadcast_by_name", "is_labelled"]


def is_labelled(x) -> bool:
    """Whether ``x`` is an ``xarray.DataArray`` (never imports xarray: without it loaded, none is)."""
    xr = sys.modules.get("xarray")
    return xr is not None and isinstance(x, xr.DataArray)


def broadcast_by_name(*, arrays: Sequence[str], modes: str | None = None, outputs: int = 1,
                      output_dims: Sequence[str] = ()) -> Callable:
    """Decorate a closed form so that ``DataArray`` arguments broadcast by dimension name.

    Args:
      arrays: the parameters that take arrays (the others, e.g. ``num=``, pass through).
      modes: the parameter whose *last* dimension is a core dimension (the modes of a
        spectrum), kept out of the broadcast; a plain array there becomes dimension ``"mode"``.
      outputs: how many arrays the function returns (a tuple when more than one).
      output_dims: names of the dimensions the function appends to its output
        (``("eigenvalue",)`` for the pair of eigenvalues).

    Plain (numpy/JAX) arguments other than scalars cannot be mixed with labelled ones: one
    ValueError naming the argument.
    """
    def decorate(fn):
        sig = inspect.signature(fn)

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            bound = sig.bind(*args, **kwargs)
            if not any(is_labelled(bound.arguments.get(n)) for n in arrays):
                return fn(*args, **kwargs)
            import xarray as xr

            bound.apply_defaults()
            names = [n for n in arrays if n in bound.arguments]
            values, core = [], []
            for n in names:
                v = bound.arguments[n]
                if n == modes:
                    v = v if is_labelled(v) else xr.DataArray(np.asarray(v), dims=["mode"])
                    core.append([v.dims[-1]])
                else:
                    if not is_labelled(v) and np.ndim(v) > 0:
                        raise ValueError(f"{fn.__name__}: {n} is a plain array of shape {np.shape(v)} among labelled "
                                         "(xarray) arguments; give it as a DataArray (its dimension names say how "
                                         "it broadcasts) or as a scalar")
                    core.append([])
                values.append(v)
            rest = {k: v for k, v in bound.arguments.items() if k not in names}

            def call(*vals):
                out = fn(**dict(zip(names, vals)), **rest)
                return tuple(np.asarray(o) for o in out) if outputs > 1 else np.asarray(out)

            return xr.apply_ufunc(call, *values, input_core_dims=core,
                                  output_core_dims=[list(output_dims)] * outputs)

        return wrapper

    return decorate
