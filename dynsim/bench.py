r"""``dynsim bench``: sweep throughput on this machine, against vectorised numpy in-process.

The workload is the σ* sweep of Nakerst Fig. 1: super-acceleration (eq. 4) on
``L = kθ²/2`` over a ``(kη, μ, σ)`` grid, float32, with the online metrics the σ* search
uses (``rate``, ``rho``, ``timescale``, ``diverged``; renormalised state). Throughput is
quoted in *point-steps per second* (grid points × steps / wall time), median over
``--repeats`` timed runs after one warm-up (compile time is reported separately).

The reference is :func:`numpy_reference`: the same map and the same metrics (power-of-two
renormalisation, Hann-tapered late-window fit, whole-run fit for ``T``), vectorised
over points with in-place numpy float32 operations, run in the same process on the same
grid with fewer steps (``ref_steps``, 1024; beyond a few hundred steps its cost per
point-step no longer depends on the step count: 256 steps would flatter the ratio by
~10-20%). Its rates are checked against a JAX sweep of the same grid and steps first.

Three JAX variants are timed: the σ* metrics with default settings (the headline number
and ratio), the same with ``fit_every=128`` (fewer log-fit points: faster, slightly
more aliasing of under-damped rates), and all metrics (the per-step ones add a second
carried array). ``point_steps_per_cpu_s`` (process CPU time) is reported too: on a
shared machine it is less sensitive to other jobs than wall time.

``dynsim bench --train`` calls :func:`dynsim.training.benchmark` instead.
"""
from __future__ import annotations

import datetime
import json
import math
import os
import pathlib
import platform
import time

import numpy as np

__all__ = ["cli", "numpy_reference", "sweep_grid", "run"]

SIGMA_STAR_METRICS = ("rate", "rho", "timescale", "diverged")


def sweep_grid(points: int) -> dict[str, np.ndarray]:
    """A σ* grid of about ``points`` points: 3 momenta × kη × σ (σ ≈ 64 × kη values)."""
    n_ke = max(1, int(round(math.sqrt(points / 3 / 64))))
    n_sig = max(3, int(round(points / 3 / n_ke)))
    return {
        "k_eta": np.geomspace(0.003, 0.6, n_ke),
        "momentum": np.array([0.5, 0.9, 0.99]),
        "sigma": np.linspace(-150.0, 40.0, n_sig),
    }


def numpy_reference(k_eta, momentum, sigma, steps: int, every: int = 32, window: float = 0.5):
    r"""The σ* sweep in vectorised numpy (float32): returns ``rate``, ``rho``, ``timescale``, ``diverged``.

    Same definitions as :mod:`dynsim.metrics` (renormalised branch): the SA map
    ``m ← μm − kη(θ + σm)``, ``θ ← θ + m`` on all points at once, the state rescaled by
    ``2^{−e}`` every ``every`` steps, ``ln‖(θ, m)‖`` fitted at checkpoints.
    """
    from dynsim.metrics import fit_times
    from dynsim.numerics import fit_weights, hann_window_weights

    f32 = np.float32
    ke = np.asarray(k_eta, f32)
    mu = np.asarray(momentum, f32)
    sg = np.asarray(sigma, f32)
    ke, mu, sg = np.broadcast_arrays(ke, mu, sg)
    ke, mu, sg = (np.ascontiguousarray(v.ravel()) for v in (ke, mu, sg))
    n = ke.size
    times = fit_times(steps, every, True, False)
    fit_at = set(int(t) for t in times[1:])
    C_rate = fit_weights(times, hann_window_weights(times, steps, window)).astype(f32)
    C_T = fit_weights(times, np.ones_like(times)).astype(f32)
    th = np.ones(n, f32)
    m = np.zeros(n, f32)
    E = np.zeros(n, f32)
    hl_prev = np.zeros(n, f32)
    E_prev = np.zeros(n, f32)
    acc_r = np.zeros(n, f32)
    acc_T = np.zeros(n, f32)
    ln2 = f32(math.log(2.0))
    g = np.empty(n, f32)
    t = 0
    j = 0
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        while t < steps:
            length = min(every, steps - t)
            for _ in range(length):
                np.multiply(sg, m, out=g)
                g += th
                g *= ke
                m *= mu
                m -= g
                th += m
            t += length
            a = np.maximum(np.abs(th), np.abs(m))
            ok = (a > 0) & np.isfinite(a)
            e = np.where(ok, np.frexp(np.where(ok, a, f32(1)))[1] - 1, 0).astype(np.int32)
            s = np.ldexp(f32(1), -e).astype(f32)
            th *= s
            m *= s
            E += e.astype(f32)
            if t in fit_at:
                n2 = th * th + m * m
                ok2 = (n2 > 0) & np.isfinite(n2)
                hl = f32(0.5) * np.log(np.where(ok2, n2, f32(1)))
                delta = np.where(ok2, (E - E_prev) * ln2 + hl - hl_prev, f32(0))
                acc_r += C_rate[j] * delta
                acc_T += C_T[j] * delta
                hl_prev = np.where(ok2, hl, hl_prev)
                E_prev = np.where(ok2, E, E_prev)
                j += 1
        bad = ~np.isfinite(np.maximum(np.abs(th), np.abs(m)))
        rate = np.where(bad, np.nan, -acc_r)
        T = np.where(acc_T < 0, -1 / np.where(acc_T < 0, acc_T, -1), np.inf)
        log_state = E * ln2 + f32(0.5) * np.log(th * th + m * m)
        diverged = bad | (log_state > math.log(1e6))
        return {
            "rate": rate,
            "rho": np.exp(-rate),
            "timescale": np.where(bad, np.nan, T),
            "diverged": diverged,
        }


def _load() -> float | None:
    try:
        return os.getloadavg()[0]
    except (OSError, AttributeError):  # pragma: no cover
        return None


def run(points: int = 1 << 18, steps: int = 4096, repeats: int = 5, ref_steps: int = 1024,
        progress: bool = True) -> dict:
    """Time the σ* sweep (JAX) and the numpy reference; return the result dict."""
    import jax

    import dynsim
    from dynsim import engine as sw

    if points < 3 or steps < 128 or repeats < 1:
        raise ValueError("bench: need --points >= 3, --steps >= 128, --repeats >= 1")
    grid = sweep_grid(points)
    n = int(np.prod([len(v) for v in grid.values()]))
    say = print if progress else (lambda *a, **k: None)
    devs = jax.devices()
    say(f"dynsim bench: {n:,} points x {steps} steps on {len(devs)} x {devs[0].device_kind}, "
        f"{repeats} repeats (load average {_load()}; XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r})")

    def jax_once(metrics, steps_, **kw):
        t0, c0 = time.perf_counter(), time.process_time()
        ds = sw.sweep("super_accelerated", "quadratic", grid, steps_, list(metrics), progress=False, **kw)
        np.asarray(ds[metrics[0]].values)
        return time.perf_counter() - t0, time.process_time() - c0

    out: dict = {
        "device": f"{len(devs)} x {devs[0].device_kind} ({devs[0].platform})",
        "machine": {"cpu_count": os.cpu_count(), "processor": platform.processor() or platform.machine(),
                    "load_average_1min_start": _load()},
        "jax_version": jax.__version__,
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "dynsim_version": dynsim.__version__,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "workload": "super_accelerated on quadratic, grid (k_eta, momentum, sigma), float32",
        "points": n,
        "steps": steps,
        "repeats": repeats,
    }
    variants = (
        ("sigma_star_metrics", SIGMA_STAR_METRICS, {}),
        # sparser fit points: faster, but under-damped rates alias more (see metrics.fit_stride)
        ("sigma_star_metrics_fit_every_128", SIGMA_STAR_METRICS, {"fit_every": 128}),
        ("all_metrics", None, {}),
    )
    for label, metrics, kw in variants:
        ms = tuple(metrics) if metrics else tuple(dynsim.metrics.DEFAULT_METRICS)
        t_first, _ = jax_once(ms, steps, **kw)  # includes compilation
        runs = [jax_once(ms, steps, **kw) for _ in range(repeats)]
        times, cpu = [r[0] for r in runs], [r[1] for r in runs]
        med = float(np.median(times))
        out[label] = {
            "metrics": list(ms),
            "options": kw,
            "first_call_s": t_first,
            "times_s": times,
            "cpu_times_s": cpu,
            "median_s": med,
            "point_steps_per_s": n * steps / med,
            "point_steps_per_cpu_s": n * steps / float(np.median(cpu)),
        }
        say(f"  jax sweep [{label}]: median {med:.3f} s -> {n * steps / med:.3g} point-steps/s "
            f"({n * steps / float(np.median(cpu)):.3g} per CPU-second; first call incl. compile {t_first:.2f} s)")

    # numpy reference: the same grid, fewer steps (its cost per point-step does not depend
    # on the step count); first check that it computes the same rates.
    ref_steps = min(ref_steps, steps)
    ref_n = n
    KE, MU, SG = np.meshgrid(grid["k_eta"], grid["momentum"], grid["sigma"], indexing="ij")
    ds_small = sw.sweep("super_accelerated", "quadratic", grid, ref_steps, list(SIGMA_STAR_METRICS),
                        progress=False)
    ref = numpy_reference(KE, MU, SG, ref_steps)
    a = ds_small.rate.values.ravel()
    b = ref["rate"]
    both = np.isfinite(a) & np.isfinite(b) & ~ref["diverged"]
    agree = float(np.max(np.abs(a[both] - b[both]))) if np.any(both) else float("nan")
    ref_times, ref_cpu = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        numpy_reference(KE, MU, SG, ref_steps)
        ref_times.append(time.perf_counter() - t0)
        ref_cpu.append(time.process_time() - c0)
    ref_med = float(np.median(ref_times))
    ref_rate = ref_n * ref_steps / ref_med
    out["numpy_reference"] = {
        "points": ref_n,
        "steps": ref_steps,
        "times_s": ref_times,
        "cpu_times_s": ref_cpu,
        "median_s": ref_med,
        "point_steps_per_s": ref_rate,
        "point_steps_per_cpu_s": ref_n * ref_steps / float(np.median(ref_cpu)),
        "threads": 1,
        "max_abs_rate_difference_vs_jax": agree,
    }
    ratio = out["sigma_star_metrics"]["point_steps_per_s"] / ref_rate
    out["ratio_jax_over_numpy"] = ratio
    out["ratio_jax_over_numpy_per_cpu_s"] = (out["sigma_star_metrics"]["point_steps_per_cpu_s"]
                                             / out["numpy_reference"]["point_steps_per_cpu_s"])
    out["machine"]["load_average_1min_end"] = _load()
    say(f"  numpy reference (same grid, {ref_steps} steps): {ref_rate:.3g} point-steps/s "
        f"({out['numpy_reference']['point_steps_per_cpu_s']:.3g} per CPU-second) "
        f"(rates agree with JAX to {agree:.2g})")
    say(f"  ratio jax / numpy: {ratio:.1f}x wall-clock "
        f"({out['ratio_jax_over_numpy_per_cpu_s']:.1f}x per CPU-second; numpy is single-threaded)")
    return out


def cli(args) -> int:
    """``dynsim bench [--points N] [--steps S] [--repeats R] [--out FILE] [--train]``."""
    if getattr(args, "train", False):
        try:
            from dynsim import training as train
        except ImportError as e:
            print(f"dynsim bench --train: dynsim.train is not available yet ({e})")
            return 1
        bench_fn = getattr(train, "benchmark", None)
        if bench_fn is None:
            print("dynsim bench --train: dynsim.training.benchmark(n_models, steps, repeats) is not written yet")
            return 1
        kw = {}
        if args.points is not None:
            kw["n_models"] = args.points
        if args.steps is not None:
            kw["steps"] = args.steps
        if args.repeats is not None:
            kw["repeats"] = args.repeats
        result = bench_fn(**kw)
        print(json.dumps(result, indent=1, default=str))
        _write(args.out, result)
        return 0
    from dynsim.engine import configure_xla_cpu

    configure_xla_cpu()  # every core a device: chunks shard over cores
    result = run(
        points=args.points if args.points is not None else 1 << 18,
        steps=args.steps if args.steps is not None else 4096,
        repeats=args.repeats if args.repeats is not None else 5,
    )
    _write(args.out, result)
    return 0


def _write(path, result) -> None:
    if path is None:
        return
    p = pathlib.Path(path)
    if p.exists() and p.is_dir():
        raise ValueError(f"--out {p}: is a directory; give a file name")
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(result, indent=1, default=str) + "\n")
    print(f"wrote {p}")
