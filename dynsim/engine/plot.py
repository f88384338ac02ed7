r"""A view of :func:`dynsim.locate` output: the located optimum against the other axis.

Where the closed form applies (super-acceleration on the quadratic over kη × μ) it is
drawn dashed, with the relative error in a third panel.
"""
from __future__ import annotations

import json
import pathlib

import numpy as np

__all__ = ["plot_located", "located_config", "exact_sigma_star"]


def located_config(located) -> dict:
    """The sweep config carried by a :func:`locate` result (``{}`` if absent or unreadable)."""
    try:
        cfg = json.loads(located.attrs.get("config", "{}"))
    except (json.JSONDecodeError, TypeError):
        return {}
    return cfg if isinstance(cfg, dict) else {}


def exact_sigma_star(located):
    """The closed form σ* where it applies (SA on kθ²/2 over a kη × μ grid), else ``None``."""
    cfg = located_config(located)
    if (cfg.get("optimizer") != "super_accelerated" or cfg.get("landscape") != "quadratic"
            or located.attrs.get("locate_over") != "sigma"):
        return None
    have = {**cfg.get("fixed", {}), **{d: located[d].values for d in located.dims}}
    if "k_eta" not in have or "momentum" not in have or set(located.dims) - {"k_eta", "momentum"}:
        return None
    import jax
    import xarray as xr

    from dynsim import analysis

    def axis(name):
        v = np.asarray(have[name], float)
        return xr.DataArray(v, dims=[name] if name in located.dims else [])

    ke, mu = xr.broadcast(axis("k_eta"), axis("momentum"))
    with jax.enable_x64(True):  # the closed form in float64 whatever the session's dtype
        exact = np.asarray(analysis.critical_sigma(ke.values, mu.values))
    return ke.copy(data=exact).broadcast_like(located["sigma_star"]).transpose(*located["sigma_star"].dims)


def plot_located(located, path, *, max_lines: int = 8) -> pathlib.Path | None:
    """Plot :func:`locate` output: σ* (and σ*_T) and ρ(σ*) against its first dimension.

    One line per value of the second dimension (at most ``max_lines``); further dimensions
    are fixed at their first value. Where the closed form applies (super-acceleration on
    the quadratic over kη × μ) it is drawn dashed, with the relative error in a third panel.
    Returns ``path``, or ``None`` when ``located`` has no dimension to plot against.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    over = located.attrs.get("locate_over", "sigma")
    star = f"{over}_star"
    dims = list(located[star].dims)
    if not dims:
        return None
    x_name = dims[0]
    sel = {d: 0 for d in dims[2:]}
    loc = located.isel(sel)
    exact = exact_sigma_star(located)
    exact = exact.isel(sel) if exact is not None else None
    x = loc[x_name].values
    lines = [None] if len(dims) == 1 else list(range(min(loc.sizes[dims[1]], max_lines)))
    n_pan = 3 if exact is not None else 2
    fig, ax = plt.subplots(1, n_pan, figsize=(4.6 * n_pan, 3.8), constrained_layout=True)
    for j in lines:
        def pick(v, j=j):
            return v if j is None else v.isel({dims[1]: j})

        label = None if j is None else f"{dims[1]} = {loc[dims[1]].values[j]:g}"
        (ln,) = ax[0].plot(x, pick(loc[star]).values, lw=1.6, label=label)
        if f"{star}_T" in loc:
            ax[0].plot(x, pick(loc[f"{star}_T"]).values, ":", color=ln.get_color(), lw=1.2)
        ax[1].plot(x, pick(loc["rho_star"]).values, color=ln.get_color(), lw=1.6, label=label)
        if exact is not None:
            ex = pick(exact).values
            ax[0].plot(x, ex, "--", color="k", lw=0.8)
            rel = np.abs(pick(loc[star]).values - ex) / np.maximum(np.abs(ex), 1e-300)
            ax[2].plot(x, rel, color=ln.get_color(), lw=1.2, label=label)
    positive = np.all(x > 0) and x.max() / x.min() > 20
    for a in ax:
        a.set_xlabel(x_name)
        if positive:
            a.set_xscale("log")
    ax[0].set_ylabel(f"{over}*  (— argmin ρ, ··· argmin T" + (", -- exact)" if exact is not None else ")"))
    ax[1].set_ylabel(f"ρ({over}*) per step")
    if exact is not None:
        ax[2].set_yscale("log")
        ax[2].set_ylabel("|σ*_sweep − σ*_exact| / |σ*_exact|")
    if lines != [None]:
        ax[0].legend(fontsize=8)
    cfg = located_config(located)
    fig.suptitle(f"{cfg.get('optimizer', '?')} on {cfg.get('landscape', '?')}: {over}* located "
                 f"({located.attrs.get('refine_steps', '?')}-step refinement)", fontsize=10)
    path = pathlib.Path(path)
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return path


