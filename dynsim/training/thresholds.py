r"""When a curve first reaches a value: per model, stored (:func:`first_reach`) or after the fact.

A training result has one time dimension, ``step``; minibatch runs carry ``epoch`` as a
coordinate along it, so the first reach is reported in steps (``steps_to_…``) or, with
``dim="epoch"``, in epochs.
"""
from __future__ import annotations

import numpy as np

__all__ = ["first_reach", "steps_to_threshold", "at_threshold"]


def first_reach(values: np.ndarray, times: np.ndarray, thresholds) -> np.ndarray:
    """``(models, len(thresholds))``: first time at which ``values[m] >= t`` (NaN if never)."""
    out = np.full((values.shape[0], len(thresholds)), np.nan)
    for j, t in enumerate(thresholds):
        hit = np.nan_to_num(values, nan=-np.inf) >= t
        first = np.argmax(hit, axis=1)
        out[:, j] = np.where(hit.any(axis=1), times[first], np.nan)
    return out


def steps_to_threshold(ds, threshold: float, metric: str = "test_accuracy", dim: str | None = None):
    """First value of the time coordinate at which ``metric >= threshold`` (NaN if never).

    ``dim`` defaults to ``step``; ``"epoch"`` gives the epoch coordinate's value of that
    record on a minibatch run (the unit is in ``attrs["units"]``). Works on any ``xarray`` object with a ``step`` dim;
    diverged (NaN) records never count.
    """
    import xarray as xr

    da = ds[metric] if isinstance(ds, xr.Dataset) else ds
    dim = dim or "step"
    if dim not in da.coords or da[dim].dims != ("step",) or "step" not in da.dims:
        raise ValueError(f"dim={dim!r} is not a time coordinate of {metric} ({da.dims})")
    hit = (da >= threshold).fillna(False)
    first = hit.argmax("step")
    t = da[dim].values[first.values]
    return xr.DataArray(np.where(hit.any("step").values, t, np.nan), dims=first.dims,
                        coords=first.coords, name=f"steps_to_{metric}>={threshold}", attrs={"units": dim})


def at_threshold(ds, threshold: float, metric: str = "train_accuracy", dim: str | None = None):
    """Every time-dependent variable at the first record where ``metric >= threshold``.

    Models that never reach it get NaN; the time (``dim``, default ``step``) is in
    ``reached`` (NaN if never).
    """
    import xarray as xr

    da = ds[metric]
    hit = (da >= threshold).fillna(False)
    first = hit.argmax("step")
    reached = hit.any("step")
    out = {}
    for k, v in ds.data_vars.items():
        if "step" in v.dims:
            out[k] = v.isel(step=first).where(reached)
    res = xr.Dataset(out)
    res["reached"] = steps_to_threshold(ds, threshold, metric, dim)
    return res
