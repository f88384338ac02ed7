r"""Grid parsing and validation: what to run, checked before anything runs (:func:`make_plan`).

A grid maps names to 1-D arrays (swept, one dimension each, in the given order) or scalars
(fixed). A name is routed to whichever of the optimizer factory and the landscape takes it;
``k_eta`` on the built-in quadratic is the product ``kη`` (``learning_rate = k_eta / k``).
Numbers become runtime arrays (one program serves every value); booleans are static
arguments; anything else is refused. Every error is one ``ValueError`` naming the argument.
"""
from __future__ import annotations

import dataclasses
import inspect
import math
from typing import Any, Mapping, Sequence

import numpy as np

from dynsim import metrics as _metrics
from dynsim.checks import check_int
from dynsim.engine import platform as _platform
from dynsim.engine.grid import parse_grid
from dynsim.engine.problem import LandscapeSpec, fingerprint, resolve_landscape
from dynsim.numerics import x64_enabled
from dynsim.optim.spec import OptimizerSpec, resolve_optimizer

__all__ = ["Plan", "make_plan", "plan_from_config", "DEFAULT_THETA0", "jsonable"]

DEFAULT_THETA0 = {
    "quadratic": [1.0],  # Nakerst Fig. 2(a) starts at θ = 1
    "nakerst2d": [-1.0, -3.8],  # Nakerst Fig. 3
    "rosenbrock": [-1.5, 2.0],
}


@dataclasses.dataclass
class Plan:
    """A validated sweep: the resolved problem, the grid, and the canonical config.

    Attributes:
      config: canonical, JSON-serialisable description (stored with results; compared on resume).
      optimizer, landscape: the resolved specs.
      land_static: fixed landscape arguments (not per point).
      dims, coords: swept names and their values, in grid order.
      fixed: fixed numeric values (runtime scalars), by name.
      static_hyper: fixed non-numeric optimizer arguments (booleans).
      rule_args: names passed to the optimizer factory (``learning_rate`` for ``k_eta``).
      land_swept: names passed to the landscape factory per point.
      theta0: the initial point (float64, 1-D).
      dtype: ``"float32"`` or ``"float64"``.
      options: the resolved :class:`dynsim.metrics.MetricConfig`.
      points: for a grid given as a list of points, each hyperparameter's value at each
        point, along the one dim ``config`` (whose coordinate is the point's index); else empty.
    """

    config: dict
    optimizer: OptimizerSpec
    landscape: LandscapeSpec
    land_static: dict
    dims: list[str]
    coords: list[np.ndarray]
    fixed: dict[str, float]
    static_hyper: dict[str, Any]
    rule_args: tuple[str, ...]
    land_swept: tuple[str, ...]
    theta0: np.ndarray
    dtype: str
    options: _metrics.MetricConfig
    points: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(len(c) for c in self.coords)

    @property
    def n_points(self) -> int:
        return int(np.prod(self.shape))

    @property
    def metrics(self) -> tuple[str, ...]:
        return tuple(self.config["metrics"])

    @property
    def steps(self) -> int:
        return int(self.config["steps"])


def _canon_float(x) -> float:
    return float(np.float64(x))


def jsonable(x):
    """``x`` with numpy scalars/arrays as Python numbers/lists (for JSON)."""
    if isinstance(x, Mapping):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return [jsonable(v) for v in x.tolist()]
    if isinstance(x, np.generic):
        return x.item()
    return x


#: Upper bounds checked before anything is compiled: the step counter and the flat point
#: index of the compiled program are int32.
MAX_STEPS = 2**31 - 1
MAX_POINTS = 2**31 - 1


def _check_steps(steps) -> int:
    n = check_int("steps", steps)  # the one integer check: 100.0 is refused here as everywhere
    if n > MAX_STEPS:
        raise ValueError(f"steps={n:,} is more than a sweep can run ({MAX_STEPS:,}, the int32 step counter); "
                         "use fewer steps (metrics accumulate online: no trajectory is stored)")
    return n


def check_points(shape) -> int:
    """The number of grid points, refused beyond :data:`MAX_POINTS` with the grid's sizes named."""
    n = math.prod(int(k) for k in shape)
    if n > MAX_POINTS:
        raise ValueError(f"grid: {' x '.join(f'{int(k):,}' for k in shape)} = {n:,} points is more than one sweep "
                         f"can index ({MAX_POINTS:,}); split it into several sweeps (one per slice of an axis)")
    return n


def _check_metrics(metrics, has_minimum: bool) -> list[str]:
    available = _metrics.available_metrics(has_minimum)
    if metrics is None:
        return list(available)
    metrics = [metrics] if isinstance(metrics, str) else list(metrics)
    if not metrics:
        raise ValueError("metrics: empty; choose from " + ", ".join(_metrics.METRICS))
    for m in metrics:
        if m not in _metrics.METRICS:
            raise ValueError(f"metrics: unknown metric {m!r}; choose from {', '.join(_metrics.METRICS)}")
    if len(set(metrics)) != len(metrics):
        raise ValueError(f"metrics: duplicates in {metrics}")
    lacking = [m for m in metrics if m in _metrics.DISTANCE_METRICS and not has_minimum]
    if lacking:
        raise ValueError(f"metrics: {', '.join(lacking)} need the landscape's minimum, which is unknown "
                         f"(give a Landscape with minimum=...); available: {', '.join(available)}")
    return metrics


def _route(name: str, opt: OptimizerSpec, land: LandscapeSpec, is_quadratic: bool) -> str:
    """``"optimizer"``, ``"landscape"`` or ``"k_eta"`` for a grid name; ValueError otherwise."""
    if name == "k_eta":
        if not is_quadratic:
            raise ValueError(f"grid['k_eta']: only defined on the built-in 1-D quadratic, not {land.name!r}")
        return "k_eta"
    in_land = name in land.params
    in_opt = name in opt.params or (opt.var_kwargs and not in_land)
    if in_opt and in_land:
        raise ValueError(f"grid[{name!r}]: both the optimizer {opt.name} and the landscape {land.name} take "
                         f"{name!r}; rename one of them")
    if in_opt:
        return "optimizer"
    if in_land:
        return "landscape"
    choices = list(opt.params) + (["k_eta"] if is_quadratic else []) + list(land.params)
    raise ValueError(f"grid[{name!r}]: unknown hyperparameter for {opt.name} on {land.name}; "
                     f"choose from {', '.join(choices)}")


def _landscape_axes(axes, opt: OptimizerSpec, land: LandscapeSpec, is_quadratic: bool,
                    landscape_params: Mapping[str, Any]) -> list[str]:
    """The grid names that are landscape parameters (the rest are the optimizer's), checked."""
    land_swept: list[str] = []
    for name, v in axes.items():
        if _route(name, opt, land, is_quadratic) != "landscape":
            continue
        if name in landscape_params:
            raise ValueError(f"grid[{name!r}]: also given in landscape_params")
        if isinstance(v, bool):
            raise ValueError(f"grid[{name!r}]: a landscape parameter must be numeric (fixed values that are "
                             "not numbers go in landscape_params)")
        sweepable = land.sweepable
        if sweepable is not None and name not in sweepable:
            raise ValueError(f"grid[{name!r}]: landscape parameter of {land.name!r} cannot vary per point; "
                             "pass it in landscape_params")
        land_swept.append(name)
    return land_swept


def _metric_options(options, steps: int, dtype: str, linear: bool, default_unroll: int, metrics, what: str):
    """``options`` (a :class:`~dynsim.metrics.MetricConfig` or None) resolved for this run's length and dtype."""
    if options is None:
        options = _metrics.MetricConfig()
    elif not isinstance(options, _metrics.MetricConfig):
        raise ValueError(f"options={options!r} must be a dynsim.metrics.MetricConfig (e.g. MetricConfig(every=16))")
    try:
        cfg = options.resolved(steps, dtype, linear=linear, default_unroll=default_unroll,
                               fitted=bool(set(metrics) & set(_metrics.FITTED_METRICS)))
    except ValueError as e:
        raise ValueError(str(e)) from None
    if cfg.renormalise and not linear:
        raise ValueError(f"renormalise=True is only valid for linear maps on quadratics "
                         f"({what} is not); use renormalise='auto'")
    return cfg


def _plan_config(opt, land, landscape_params, dims, coords, fixed, static_hyper, theta0, steps, metrics, dtype,
                 seed, cfg, chunk_size, squeeze, fp, points) -> dict:
    """The plan's JSON config: what the store records and a resume must reproduce exactly."""
    config = {
        "optimizer": opt.name,
        "landscape": land.name,
        "landscape_kind": land.kind,
        "landscape_params": jsonable(landscape_params),
        "grid": {d: [_canon_float(x) for x in c] for d, c in zip(dims, coords)},
        "fixed": {k: _canon_float(v) for k, v in fixed.items()},
        "static": dict(static_hyper),
        "theta0": [_canon_float(x) for x in theta0],
        "steps": steps,
        "metrics": metrics,
        "dtype": dtype,
        "seed": int(seed),
        "options": {k: getattr(cfg, k) for k in ("every", "window", "eps", "divergence_factor", "renormalise",
                                                  "unroll", "pack", "fit_every", "tangent_steps")},
        "chunk_size": None if chunk_size is None else int(chunk_size),
    }
    if squeeze:  # only for one-point grids: other configs (and their stores) are unchanged
        config["squeeze"] = squeeze
    if points:  # only for lists of points: the hyperparameters along "config"
        config["points"] = {k: [_canon_float(x) for x in v] for k, v in points.items()}
    if cfg.floor_eps is not None:
        config["options"]["floor_eps"] = float(cfg.floor_eps)
    if fp is not None:
        config["fingerprint"] = fp
        config["importable"] = {"optimizer": opt.importable, "landscape": land.importable}
        roots = _user_module_roots(opt.name if opt.importable else None, land.name if land.importable else None)
        if roots:  # where the user's modules were: dynsim.locate and resume look there again
            config["import_paths"] = roots
    return config


def make_plan(optimizer, landscape, grid: Mapping[str, Any] | Sequence[Mapping[str, float]], steps, *,
              metrics=None, theta0=None, landscape_params=None, dtype: str = "float32", seed: int = 0, chunk_size=None,
              default_unroll: int | None = None, options: _metrics.MetricConfig | None = None) -> Plan:
    """Resolve and validate everything; see :func:`dynsim.sweep` for the arguments.

    ``default_unroll``: the scan unroll where ``options`` gives none (default: this platform's,
    :func:`dynsim.engine.platform.default_unroll`), so every caller plans a sweep alike.
    """
    if default_unroll is None:
        default_unroll = _platform.default_unroll()
    opt = resolve_optimizer(optimizer)
    if not isinstance(grid, (Mapping, list, tuple)):
        raise ValueError(f"grid must be a mapping of names to arrays or scalars, or a list of points "
                         f"(mappings of names to numbers), got {type(grid).__name__}")
    parsed = parse_grid(grid)  # the one grid parser: axes, fixed numbers, static booleans, or points
    # a list of points: one dim "config"; each hyperparameter varies along it (never an outer product)
    points = {k: v for k, (d, v) in parsed.coords.items() if k != "config" and d == ("config",)} \
        if parsed.listed is not None else {}
    names = list(points) if points else list(grid)
    steps = _check_steps(steps)
    if dtype not in ("float32", "float64"):
        raise ValueError(f"dtype={dtype!r} must be 'float32' or 'float64'")
    if dtype == "float64" and not x64_enabled():
        raise ValueError("dtype='float64' needs jax_enable_x64 (dynsim --x64)")
    landscape_params = dict(landscape_params or {})
    axes = {name: (parsed.coords[name][1] if name in parsed.coords else parsed.fixed.get(name, parsed.static.get(name)))
            for name in names}
    # names the optimizer does not take are the landscape's: they tell a factory from a loss
    land = resolve_landscape(landscape, {**landscape_params, **{
        k: v for k, v in axes.items() if k not in opt.params and k != "k_eta"}})
    is_quadratic = land.builtin and land.name == "quadratic"
    for k in landscape_params:
        if k not in land.params:
            raise ValueError(f"landscape_params: {land.name!r} has no parameter {k!r} "
                             f"(it takes {', '.join(land.params) or 'none'})")

    dims: list[str] = list(parsed.dims)
    coords: list[np.ndarray] = [np.asarray(parsed.coords[d][1], np.float64) for d in dims]
    swept = list(points) if points else dims  # the names that vary per point
    fixed: dict[str, float] = dict(parsed.fixed)
    static_hyper: dict[str, Any] = dict(parsed.static)
    land_swept = _landscape_axes(axes, opt, land, is_quadratic, landscape_params)
    squeeze = []
    if not dims:  # numbers only: ONE point, run as a 1-long axis of its first number, squeezed from the result
        first = next((name for name in names if name in fixed), None)
        if first is None:
            raise ValueError("grid: no number to run at; give hyperparameter values")
        dims, coords, squeeze = [first], [np.array([fixed.pop(first)])], [first]
        swept = dims
    check_points([len(c) for c in coords])
    if "k_eta" in names and "learning_rate" in names:
        raise ValueError("grid: give either 'k_eta' or 'learning_rate', not both")

    def values_of(name):
        if name in fixed:
            return np.array([fixed[name]])
        if name in points:
            return points[name]
        if name in dims:
            return coords[dims.index(name)]
        return None

    for name in ("learning_rate", "k_eta"):
        v = values_of(name)
        if v is not None and np.any(v < 0):
            raise ValueError(f"grid[{name!r}]: negative values (min {v.min():g}); learning rates must be >= 0")

    rule_args = tuple(n for n in list(swept) + list(fixed) + list(static_hyper)
                      if n not in land_swept and n != "k_eta")
    if "k_eta" in axes:
        rule_args += ("learning_rate",)
    if opt.builtin:
        _check_builtin_rule(opt, swept, fixed, static_hyper, values_of, "k_eta" in axes)
        # fixed rule defaults become runtime scalars too (never baked into the program)
        provided = set(swept) | set(fixed) | set(static_hyper) | ({"learning_rate"} if "k_eta" in axes else set())
        for a in opt.params:
            d = opt.defaults.get(a, inspect.Parameter.empty)
            if a not in provided and a != "lookahead" and not isinstance(d, bool) and d is not inspect.Parameter.empty:
                fixed[a] = float(d)
                rule_args += (a,)
    base_hyper = {a: float(values_of(a)[0]) for a in rule_args if values_of(a) is not None}
    if "k_eta" in axes:
        base_hyper["learning_rate"] = float(values_of("k_eta")[0])
    base_land = {a: float(values_of(a)[0]) for a in land_swept}

    built = _build_base(opt, land, base_hyper, static_hyper, base_land, landscape_params)
    has_minimum = built.minimum is not None
    metrics = _check_metrics(metrics, has_minimum)
    theta0 = _check_theta0(theta0, land, built)
    _check_traceable(opt, land, base_hyper, static_hyper, base_land, landscape_params, theta0)

    linear = _metrics.can_renormalise(opt.factory if opt.builtin else None,
                                      land.factory if land.builtin else None)
    cfg = _metric_options(options, steps, dtype, linear, default_unroll, metrics, f"{opt.name} on {land.name}")
    if chunk_size is not None and (isinstance(chunk_size, bool) or int(chunk_size) < 1):
        raise ValueError(f"chunk_size={chunk_size} must be >= 1")

    fp = fingerprint(opt, land, base_hyper, base_land, static_hyper, landscape_params, theta0)
    config = _plan_config(opt, land, landscape_params, dims, coords, fixed, static_hyper, theta0, steps, metrics,
                          dtype, seed, cfg, chunk_size, squeeze, fp, points)
    return Plan(config=config, optimizer=opt, landscape=land, land_static=landscape_params, dims=dims,
                coords=coords, fixed=fixed, static_hyper=static_hyper, rule_args=rule_args,
                land_swept=tuple(land_swept), theta0=theta0, dtype=dtype, options=cfg, points=points)


def _check_builtin_rule(opt, dims, fixed, static_hyper, values_of, has_k_eta) -> None:
    """dynsim's rules validate concrete values: call the factory with each axis's extremes."""
    provided = set(dims) | set(fixed) | set(static_hyper) | ({"learning_rate"} if has_k_eta else set())
    missing = [a for a in opt.params if a not in provided and a not in opt.defaults]
    if missing:
        raise ValueError(f"grid: {opt.name} needs {', '.join(repr(m) for m in missing)} (fixed scalar or array)")
    base = {a: float(values_of(a)[0]) for a in opt.params if values_of(a) is not None}
    if has_k_eta:
        base["learning_rate"] = 0.0
    base.update(static_hyper)
    for name in opt.params:
        vals = values_of(name)
        if vals is None:
            continue
        # optim's constraints are intervals, so the extremes decide for every value between
        for val in np.unique([vals.min(), vals.max()]):
            try:
                opt.factory(**{**base, name: float(val)})
            except ValueError as e:
                raise ValueError(f"grid[{name!r}]: {e}") from None


def _build_base(opt, land, hyper, static_hyper, land_swept, land_static):
    """Build the optimizer and landscape once at the first grid point (concrete): clear errors."""
    import optax

    try:
        tx = opt.factory(**hyper, **static_hyper)
    except (TypeError, ValueError) as e:
        raise ValueError(f"optimizer={opt.name!r}: calling it with {sorted({**hyper, **static_hyper})} "
                         f"failed ({type(e).__name__}: {e})") from None
    if not isinstance(tx, optax.GradientTransformation) and not (hasattr(tx, "init") and hasattr(tx, "update")):
        raise ValueError(f"optimizer={opt.name!r} returned {type(tx).__name__}, not an optax GradientTransformation")
    try:
        built = land.factory(**land_swept, **land_static)
    except (TypeError, ValueError) as e:
        raise ValueError(f"landscape_params: {e}") from None
    return built


def _check_theta0(theta0, land: LandscapeSpec, built) -> np.ndarray:
    min_shape = None if built.minimum is None else np.shape(np.asarray(built.minimum))
    if theta0 is None:
        if land.builtin and land.name in DEFAULT_THETA0:
            theta0 = DEFAULT_THETA0[land.name]
        elif land.builtin and land.name == "quadratic_nd":
            theta0 = np.ones(min_shape)
        elif land.builtin and land.name == "linear_regression":
            theta0 = np.zeros(min_shape)
        else:
            raise ValueError(f"theta0: required for landscape {land.name!r} (a {land.kind}); "
                             "give the initial point as a 1-D array")
    try:
        theta0 = np.asarray(theta0, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"theta0={theta0!r} must be an array of numbers") from None
    if theta0.ndim == 0:
        theta0 = theta0.reshape(1)
    if min_shape and theta0.shape != min_shape:
        raise ValueError(f"theta0: expected shape {min_shape} for landscape {land.name!r}, got {theta0.shape}")
    if theta0.ndim != 1:
        raise ValueError(f"theta0: must be a 1-D array, got shape {theta0.shape}")
    if not np.all(np.isfinite(theta0)):
        raise ValueError("theta0: values must be finite")
    if built.minimum is not None and np.array_equal(
            theta0, np.broadcast_to(np.asarray(built.minimum, float), theta0.shape)):
        raise ValueError("theta0: equals the landscape's minimum; nothing to converge")
    return theta0


def _check_traceable(opt, land, hyper, static_hyper, land_swept, land_static, theta0) -> None:
    """Trace one step with every numeric value as an array: the compiled program will."""
    import jax
    import jax.numpy as jnp

    x = jnp.asarray(theta0, jnp.float32)

    def loss(lp, th):
        return land.factory(**lp, **land_static).loss(th)

    lp = {k: jnp.float32(v) for k, v in land_swept.items()}
    try:
        out = jax.eval_shape(loss, lp, x)
    except jax.errors.ConcretizationTypeError as e:
        # with the parameters as Python numbers, does it still fail? then the branch is on θ
        if not lp or _fails_concretely(lambda th: loss(dict(land_swept), th), x):
            raise ValueError(traced_control_flow(f"landscape={land.name!r}: the loss", e)) from None
        raise ValueError(f"landscape={land.name!r}: parameters {sorted(lp)} cannot vary per point: the code "
                         f"uses them as Python values ({str(e).splitlines()[0]}); "
                         "pass them in landscape_params") from None
    except Exception as e:
        raise ValueError(f"landscape={land.name!r}: the loss fails at theta0 ({type(e).__name__}: {e})") from None
    if not hasattr(out, "shape") or out.shape != ():
        raise ValueError(f"landscape={land.name!r}: the loss must return a scalar, got shape "
                         f"{getattr(out, 'shape', type(out).__name__)} at theta0 of shape {x.shape}")
    if not jnp.issubdtype(out.dtype, jnp.floating):
        raise ValueError(f"landscape={land.name!r}: the loss must return a float, got {out.dtype}")

    def step(hp, lp, th):
        rule = opt.build(**hp, **static_hyper)
        grad = jax.grad(lambda t: loss(lp, t))
        return rule.map_step(grad, th, rule.map_init(th))

    hp = {k: jnp.float32(v) for k, v in hyper.items()}
    try:
        jax.eval_shape(step, hp, lp, x)
    except jax.errors.ConcretizationTypeError as e:
        if not hp or _fails_concretely(lambda th: step(dict(hyper), lp, th), x):
            raise ValueError(traced_control_flow(f"optimizer={opt.name!r}: one step", e)) from None
        raise ValueError(f"optimizer={opt.name!r}: hyperparameters {sorted(hp)} cannot be runtime arrays: the "
                         f"factory uses them as Python values ({str(e).splitlines()[0]})") from None
    except ValueError:
        raise
    except Exception as e:
        raise ValueError(f"optimizer={opt.name!r}: one step at theta0 fails ({type(e).__name__}: {e})") from None


def _fails_concretely(fn, x) -> bool:
    """Whether ``fn(x)`` still fails on a traced ``x`` with every other value a Python number."""
    import jax

    try:
        jax.eval_shape(fn, x)
    except jax.errors.ConcretizationTypeError:
        return True
    except Exception:
        return False
    return False


def traced_control_flow(what: str, e: Exception, subject: str = "theta") -> str:
    """The message for Python control flow on θ (``if theta[0] > 0:``), or on a model's
    inputs (``subject="x"``), in user code."""
    return (f"{what} uses {subject} as a Python value: an `if`, `while`, `and`/`or`, bool(), float() or int() "
            f"on {subject}, which is a traced array in the compiled program ({str(e).splitlines()[0]}); write the "
            f"branch with jnp.where(cond, a, b) or jax.lax.cond(cond, f, g, {subject})")


# Installed packages that name code by import path: never a user's module to find again.
_LIBRARY_PACKAGES = ("dynsim", "optax", "jax", "flax", "numpy")


def _user_module_roots(*paths) -> list[str]:
    """The folders from which the user modules named by ``module:attr`` paths were imported."""
    import pathlib
    import sys

    roots = []
    for path in paths:
        if not isinstance(path, str) or ":" not in path:
            continue
        top = path.split(":")[0].split(".")[0]
        mod = sys.modules.get(top)
        file = getattr(mod, "__file__", None)
        if file is None or top in _LIBRARY_PACKAGES:
            continue
        f = pathlib.Path(file).resolve()
        root = f.parent.parent if f.name == "__init__.py" else f.parent
        if "site-packages" in root.parts or "dist-packages" in root.parts:
            continue
        if str(root) not in roots:
            roots.append(str(root))
    return roots


def _importable_again(config: Mapping, what: str, value) -> None:
    """Make the user's module behind ``value`` importable (stored import paths), or say how."""
    import importlib
    import sys

    if not isinstance(value, str) or ":" not in value or not config.get("importable", {}).get(what, True):
        return
    module = value.split(":")[0]
    if module.split(".")[0] in _LIBRARY_PACKAGES:
        return
    stored = [*config.get("import_paths", []), *config.get("source", {}).get("import_paths", [])]
    try:
        importlib.import_module(module)
        return
    except ImportError:
        pass
    for p in stored:
        if p not in sys.path:
            sys.path.append(p)
    try:
        importlib.import_module(module)
    except ImportError as e:
        where = f"it was imported from {', '.join(stored)} when the sweep ran, " if stored else ""
        raise ValueError(f"{what} {value!r}: module {module!r} cannot be imported ({e}); {where}add its folder "
                         f"to sys.path (sys.path.insert(0, FOLDER)) or pass the object again as {what}=...") from None


def plan_from_config(config: Mapping, **overrides) -> Plan:
    """Rebuild a plan from a stored canonical config (``dynsim.locate`` and resume use it).

    Functions without an import path cannot be found again from a config: pass them as
    ``optimizer=``/``landscape=`` overrides (their fingerprint is checked against the store).
    """
    grid: Any
    if "points" in config:  # a list of points (the rules' defaults in "fixed" are derived again)
        names = list(config["points"])
        grid = [dict(zip(names, map(float, vals))) for vals in zip(*config["points"].values())]
    else:
        grid = {k: np.asarray(v) for k, v in config["grid"].items()}
        grid.update(config.get("fixed", {}))
        grid.update(config.get("static", {}))
    o = _metrics.MetricConfig.from_options(config.get("options", {}))
    if isinstance(grid, dict) and "k_eta" in grid:
        grid.pop("learning_rate", None)
    opt = overrides.pop("optimizer", config["optimizer"])
    land = overrides.pop("landscape", config["landscape"])
    for what, value in (("optimizer", opt), ("landscape", land)):
        _importable_again(config, what, value)
        if isinstance(value, str) and not config.get("importable", {}).get(what, True):
            raise ValueError(f"{what} {value!r} has no import path (a lambda or a closure): pass the same "
                             f"function again as {what}=... from Python")
    plan = make_plan(opt, land, grid, config["steps"], metrics=config["metrics"], theta0=config["theta0"],
                     landscape_params=config.get("landscape_params", {}), dtype=config["dtype"],
                     seed=config.get("seed", 0), chunk_size=config.get("chunk_size"), options=o, **overrides)
    stored_fp = config.get("fingerprint")
    if stored_fp is not None and plan.config.get("fingerprint") != stored_fp:
        raise ValueError("the optimizer or loss differs from the stored sweep's (its fingerprint, a hash of "
                         "the loss and of one optimizer step, does not match); nothing was changed")
    return plan
