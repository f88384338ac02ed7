r"""Sweep configs: TOML files naming everything by name or import path (:func:`load_config`).

A config holds ``optimizer``, ``landscape``, ``grid`` and ``steps``, and optionally
``metrics``, ``theta0``, ``landscape_params``, ``dtype``, ``seed``, ``chunk_size``,
``options`` (the metric options of :class:`dynsim.metrics.MetricConfig`, plus
``block_size``), ``locate`` (arguments of :func:`dynsim.locate`), ``description`` and ``import_paths`` (folders to
import user code from; ``dynsim sweep`` adds the config's own folder and the working
directory), and ``problem`` (a *training* sweep: see :func:`dynsim.training.run_config`).
User code is named by import path, ``"package.module:function"``: ``optimizer =
"optax:adam"``, ``landscape = "mypackage.problems:beale"``. Grid entries are numbers,
lists, or ``{linspace|geomspace|logspace|arange = [start, stop, num|step]}``.
See ``sweeps/README.md`` for examples.
"""
from __future__ import annotations

import math
import os
import pathlib
from typing import Mapping, Sequence

import numpy as np

from dynsim.engine.optimum import locate
from dynsim.engine.plan import MAX_POINTS, make_plan
from dynsim.engine.runner import estimate, run_plan
from dynsim.metrics import METRIC_OPTIONS, MetricConfig

__all__ = ["load_config", "apply_set", "run_config", "estimate_config", "expand_axis", "config_from_stored",
           "write_located"]


def expand_axis(name, value):
    """TOML grid entry → array/scalar: lists, scalars, or {linspace|geomspace|logspace|arange = [...]}."""
    if isinstance(value, Mapping):
        if len(value) != 1:
            raise ValueError(f"grid.{name}: give one of linspace/geomspace/logspace/arange, got {sorted(value)}")
        (kind, args), = value.items()
        fns = {"linspace": np.linspace, "geomspace": np.geomspace, "logspace": np.logspace, "arange": np.arange}
        if kind not in fns:
            raise ValueError(f"grid.{name}: unknown spacing {kind!r}; use {', '.join(fns)}")
        if not isinstance(args, list) or not 2 <= len(args) <= 3:
            raise ValueError(f"grid.{name}.{kind}: expected [start, stop, num/step], got {args!r}")
        try:
            if kind in ("linspace", "geomspace", "logspace"):
                if len(args) != 3:
                    raise ValueError
                num = int(args[2])
            else:
                a = [float(x) for x in args]
                start, stop, step = (0.0, a[0], 1.0) if len(a) == 1 else (a[0], a[1], a[2] if len(a) == 3 else 1.0)
                num = math.ceil((stop - start) / step) if step else -1
        except (TypeError, ValueError, OverflowError):
            raise ValueError(f"grid.{name}.{kind}: bad arguments {args!r}") from None
        if num > MAX_POINTS:  # checked before numpy allocates it
            raise ValueError(f"grid.{name}.{kind}: {num:,} values is more than one sweep can index ({MAX_POINTS:,})")
        try:
            if kind in ("linspace", "geomspace", "logspace"):
                return fns[kind](float(args[0]), float(args[1]), num)
            return np.arange(*[float(a) for a in args])
        except (TypeError, ValueError, ZeroDivisionError):
            raise ValueError(f"grid.{name}.{kind}: bad arguments {args!r}") from None
    return value


_TOP_KEYS = {
    "optimizer", "landscape", "landscape_params", "grid", "steps", "metrics", "theta0", "dtype", "seed",
    "options", "chunk_size", "locate", "description", "import_paths", "problem",
}
#: Keys that belong to landscape sweeps only (a training config has a ``[problem]`` table instead).
_LANDSCAPE_ONLY = {"landscape", "landscape_params", "steps", "metrics", "theta0", "options", "locate", "seed"}
_OPTION_KEYS = set(METRIC_OPTIONS) | {"block_size"}
_LOCATE_KEYS = {"over", "refine", "refine_steps", "refine_window", "tol", "boundary", "T_scan", "refine_dtype"}


def _parse_value(text: str):
    import tomllib

    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text  # a bare string


def apply_set(cfg: dict, item: str) -> None:
    """Apply one ``--set KEY=VALUE`` override to a config (``KEY`` dotted into tables; ``VALUE`` TOML)."""
    if "=" not in item:
        raise ValueError(f"--set {item!r}: expected KEY=VALUE")
    key, text = item.split("=", 1)
    key = key.strip()
    parts = key.split(".")
    if not all(parts):
        raise ValueError(f"--set {item!r}: bad key {key!r}")
    d = cfg
    for p in parts[:-1]:
        if not isinstance(d.get(p, {}), dict):
            raise ValueError(f"--set {item!r}: {p!r} is not a table")
        d = d.setdefault(p, {})
    d[parts[-1]] = _parse_value(text.strip())


def load_config(path: str | pathlib.Path, overrides: Sequence[str] = ()) -> tuple[dict, str]:
    """Read a sweep TOML config and apply ``KEY=VALUE`` overrides; returns (config, source text)."""
    import tomllib

    path = pathlib.Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise FileNotFoundError(f"config {path} not found") from None
    try:
        cfg = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ValueError(f"config {path}: invalid TOML ({e})") from None
    for item in overrides:
        apply_set(cfg, item)
    unknown = set(cfg) - _TOP_KEYS
    if unknown:
        raise ValueError(f"config {path}: unknown key(s) {', '.join(sorted(unknown))}; "
                         f"expected {', '.join(sorted(_TOP_KEYS))}")
    training = "problem" in cfg
    if training:
        if not isinstance(cfg["problem"], Mapping):
            raise ValueError(f"config {path}: 'problem' must be a table")
        both = sorted(_LANDSCAPE_ONLY & set(cfg))
        if both:
            raise ValueError(f"config {path}: {', '.join(both)} belong to landscape sweeps; a training config "
                             "([problem] table) gives steps, epochs, dtype... inside [problem]")
    for need in ("optimizer", "grid") if training else ("optimizer", "landscape", "grid", "steps"):
        if need not in cfg:
            raise ValueError(f"config {path}: missing {need!r}")
    if not isinstance(cfg["grid"], Mapping):
        raise ValueError(f"config {path}: 'grid' must be a table")
    bad = set(cfg.get("options", {})) - _OPTION_KEYS
    if bad:
        raise ValueError(f"config {path}: unknown option(s) {', '.join(sorted(bad))}")
    bad = set(cfg.get("locate", {})) - _LOCATE_KEYS
    if bad:
        raise ValueError(f"config {path}: unknown locate key(s) {', '.join(sorted(bad))}")
    return cfg, text


def _plan_of(cfg: Mapping, chunk_size):
    opts = dict(cfg.get("options", {}))
    block_size = opts.pop("block_size", None)
    grid = {k: expand_axis(k, v) for k, v in cfg["grid"].items()}
    plan = make_plan(
        cfg["optimizer"], cfg["landscape"], grid, cfg["steps"], metrics=cfg.get("metrics"),
        theta0=cfg.get("theta0"), landscape_params=cfg.get("landscape_params"),
        dtype=cfg.get("dtype", "float32"), seed=cfg.get("seed", 0),
        chunk_size=chunk_size if chunk_size is not None else cfg.get("chunk_size"),
        options=MetricConfig.from_options(opts))
    return plan, block_size


def estimate_config(cfg: Mapping, *, chunk_size=None) -> dict:
    """``dynsim sweep --dry-run``: :func:`dynsim.engine.runner.estimate` of a parsed config."""
    plan, block_size = _plan_of(cfg, chunk_size)
    return estimate(plan, block_size=block_size)


def run_config(cfg: Mapping, out=None, *, chunk_size=None, progress=True, source_text=None,
               resume_only=False, stop_after=None):
    """Run a parsed config (see :func:`load_config`); returns ``(dataset, located or None)``."""
    plan, block_size = _plan_of(cfg, chunk_size)
    ds = run_plan(plan, out=out, progress=progress, block_size=block_size, source_text=source_text,
                  source=cfg, resume_only=resume_only, stop_after=stop_after)
    located = None
    if cfg.get("locate") and ds.attrs.get("complete", True):
        located = locate(ds, **dict(cfg["locate"]))
        if out is not None:
            write_located(pathlib.Path(out), located)
    return ds, located


def write_located(out: pathlib.Path, located) -> None:
    """``locate.csv`` (full precision) and its plot ``locate.png`` (when matplotlib is there)."""
    import pandas as pd

    from dynsim.engine.plot import plot_located

    if located.sizes:
        df = located.to_dataframe().reset_index()
    else:  # only the located axis was swept: one row
        df = pd.DataFrame([{k: located[k].item() for k in located.data_vars}])
    tmp = out / "locate.csv.tmp"
    df.to_csv(tmp, index=False, float_format="%.17g")
    os.replace(tmp, out / "locate.csv")
    try:
        plot_located(located, out / "locate.png")
    except ImportError:  # matplotlib is an extra: the CSV is the result, the PNG a view of it
        pass


def config_from_stored(stored: Mapping) -> dict:
    """A runnable config from a store's ``config.json`` (when it holds no TOML source)."""
    s = stored["sweep"]
    if s.get("kind") == "train":
        raise ValueError("this training sweep was started from Python (no config file is stored with it); resume "
                         "it by calling dynsim.train with the same arguments and out=DIR")
    not_importable = [w for w, ok in s.get("importable", {}).items() if not ok]
    if not_importable:
        raise ValueError(
            f"this sweep was started from Python with a {' and '.join(not_importable)} that has no import path "
            f"({', '.join(s[w] for w in not_importable)}); resume it from Python by calling dynsim.sweep with "
            "the same functions and out=DIR")
    return {
        "optimizer": s["optimizer"], "landscape": s["landscape"], "landscape_params": s["landscape_params"],
        "grid": {**s["grid"], **s["fixed"], **s["static"]}, "steps": s["steps"], "metrics": s["metrics"],
        "theta0": s["theta0"], "dtype": s["dtype"], "seed": s["seed"], "options": s["options"],
        "chunk_size": s["chunk_size"],
    }
