r"""``dynsim bench``: landscape-sweep throughput on this machine, against vectorised numpy in-process.

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

**Ceiling.** :func:`fma_ceiling` measures, in the same run, what this machine's XLA can do
at best: a microkernel of independent fused multiply-adds (8 independent chains per
element, so latency never binds) over blocks of the sweep's own size, sharded over the same
devices. The sweep's *fraction of the ceiling* is its FLOP rate (point-steps/s × the FLOPs
of one map step, counted by XLA's cost analysis) over that.

**User code.** The same engine serves a user-defined 2-D loss (Beale's function) with
``optax.adam`` swept over (learning rate, β₁); it is timed next to the obvious per-point
Python loop of optax (a jitted ``update`` called step by step for each point).

``dynsim bench --train`` runs :func:`dynsim.bench.training.benchmark` instead.
"""
from __future__ import annotations

import datetime
import math
import os
import platform
import time
from typing import Any

import numpy as np

from dynsim.bench.machine import device_times, load_average

__all__ = ["SIGMA_STAR_METRICS", "numpy_reference", "sweep_grid", "run", "fma_ceiling", "step_flops", "user_code"]

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
        # the state, or the loss gap kθ²/2 (θ₀ = 1: its growth is θ_T²), grew by 1e6 (dynsim.metrics)
        log_loss_growth = 2 * (E * ln2 + np.log(np.where(th != 0, np.abs(th), f32(1))))
        diverged = bad | (log_state > math.log(1e6)) | ((th != 0) & (log_loss_growth > math.log(1e6)))
        return {
            "rate": rate,
            "rho": np.exp(-rate),
            "timescale": np.where(bad, np.nan, T),
            "diverged": diverged,
        }


def _time_numpy_reference(grid, ref_steps: int, repeats: int) -> dict:
    """The numpy reference on the same grid, timed; first checked to compute the sweep's rates.

    Fewer steps than the sweep: its cost per point-step does not depend on the step count.
    """
    from dynsim import engine as sw

    n = int(np.prod([len(v) for v in grid.values()]))
    KE, MU, SG = np.meshgrid(grid["k_eta"], grid["momentum"], grid["sigma"], indexing="ij")
    ds_small = sw.sweep("super_accelerated", "quadratic", grid, ref_steps, list(SIGMA_STAR_METRICS),
                        progress=False)
    ref = numpy_reference(KE, MU, SG, ref_steps)
    a = ds_small.rate.values.ravel()
    b = ref["rate"]
    both = np.isfinite(a) & np.isfinite(b) & ~ref["diverged"]
    agree = float(np.max(np.abs(a[both] - b[both]))) if np.any(both) else float("nan")
    runs = [_timed(numpy_reference, KE, MU, SG, ref_steps) for _ in range(repeats)]
    return {"points": n, "steps": ref_steps, **_summary(runs, n * ref_steps), "threads": 1,
            "max_abs_rate_difference_vs_jax": agree}


def _timed(fn, *args, **kw) -> tuple[float, float]:
    """``(wall seconds, CPU seconds of this process)`` of one call of ``fn``."""
    t0, c0 = time.perf_counter(), time.process_time()
    fn(*args, **kw)
    return time.perf_counter() - t0, time.process_time() - c0


def _summary(runs, point_steps: int) -> dict:
    """Repeated ``(wall, cpu)`` timings of ``point_steps`` point-steps: the times, medians and rates."""
    times, cpu = [r[0] for r in runs], [r[1] for r in runs]
    med = float(np.median(times))
    return {"times_s": times, "cpu_times_s": cpu, "median_s": med, "point_steps_per_s": point_steps / med,
            "point_steps_per_cpu_s": point_steps / float(np.median(cpu))}


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
        f"{repeats} repeats (load average {load_average()}; XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r})")

    def jax_once(metrics, steps_, **kw):
        def once():
            ds = sw.sweep("super_accelerated", "quadratic", grid, steps_, list(metrics), progress=False,
                          options=dynsim.metrics.MetricConfig(**kw))
            np.asarray(ds[metrics[0]].values)

        return _timed(once)

    out: dict = {
        "device": f"{len(devs)} x {devs[0].device_kind} ({devs[0].platform})",
        "machine": {"cpu_count": os.cpu_count(), "processor": platform.processor() or platform.machine(),
                    "load_average_1min_start": load_average()},
        "jax_version": jax.__version__,
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "dynsim_version": dynsim.__version__,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "workload": "super_accelerated on quadratic, grid (k_eta, momentum, sigma), float32",
        "points": n,
        "steps": steps,
        "repeats": repeats,
    }
    variants: tuple[tuple[str, tuple[str, ...] | None, dict[str, Any]], ...] = (
        ("sigma_star_metrics", SIGMA_STAR_METRICS, {}),
        # sparser fit points: faster, but under-damped rates alias more (see metrics.fit_stride)
        ("sigma_star_metrics_fit_every_128", SIGMA_STAR_METRICS, {"fit_every": 128}),
        ("all_metrics", None, {}),
    )
    for label, metrics, kw in variants:
        ms = tuple(metrics) if metrics else tuple(dynsim.metrics.DEFAULT_METRICS)
        t_first, _ = jax_once(ms, steps, **kw)  # includes compilation
        runs = [jax_once(ms, steps, **kw) for _ in range(repeats)]
        res = out[label] = {"metrics": list(ms), "options": kw, "first_call_s": t_first,
                            **_summary(runs, n * steps)}
        say(f"  jax sweep [{label}]: median {res['median_s']:.3f} s -> {res['point_steps_per_s']:.3g} point-steps/s "
            f"({res['point_steps_per_cpu_s']:.3g} per CPU-second; first call incl. compile {t_first:.2f} s)")

    ref_steps = min(ref_steps, steps)
    out["numpy_reference"] = _time_numpy_reference(grid, ref_steps, repeats)
    ref_rate = out["numpy_reference"]["point_steps_per_s"]
    agree = out["numpy_reference"]["max_abs_rate_difference_vs_jax"]
    ratio = out["sigma_star_metrics"]["point_steps_per_s"] / ref_rate
    out["ratio_jax_over_numpy"] = ratio
    out["ratio_jax_over_numpy_per_cpu_s"] = (out["sigma_star_metrics"]["point_steps_per_cpu_s"]
                                             / out["numpy_reference"]["point_steps_per_cpu_s"])
    from dynsim.engine import layout as _layout
    from dynsim.engine import local_devices
    from dynsim.engine import platform as _platform

    lay = _layout.make_layout(tuple(len(v) for v in grid.values()),
                              _layout.default_chunk_size(n, steps, 1, len(SIGMA_STAR_METRICS), len(local_devices())),
                              len(local_devices()), _platform.default_block_size())
    ceiling = fma_ceiling(lay.block_points, repeats=max(repeats, 7))
    flops = step_flops()
    sweep_flops = out["sigma_star_metrics"]["point_steps_per_s"] * flops
    out["ceiling"] = {**ceiling, "what": "independent float32 FMAs, same block size and devices as the sweep"}
    out["flops_per_point_step"] = flops
    out["fraction_of_ceiling"] = sweep_flops / ceiling["flops_per_s"]
    say(f"  ceiling (independent FMAs, {lay.block_points:,}-point blocks): {ceiling['flops_per_s']:.3g} FLOP/s; "
        f"the sweep does {flops:g} FLOPs per point-step -> {sweep_flops:.3g} FLOP/s = "
        f"{out['fraction_of_ceiling']:.0%} of the ceiling")
    uc = user_code(points=min(n, 1 << 14), repeats=repeats)
    out["user_code_optax_adam"] = uc
    say(f"  user loss + optax.adam: {uc['point_steps_per_s']:.3g} point-steps/s; per-point optax loop "
        f"{uc['python_loop']['point_steps_per_s']:.3g} -> {uc['ratio_engine_over_loop']:.0f}x")
    out["machine"]["load_average_1min_end"] = load_average()
    say(f"  numpy reference (same grid, {ref_steps} steps): {ref_rate:.3g} point-steps/s "
        f"({out['numpy_reference']['point_steps_per_cpu_s']:.3g} per CPU-second) "
        f"(rates agree with JAX to {agree:.2g})")
    say(f"  ratio jax / numpy: {ratio:.1f}x wall-clock "
        f"({out['ratio_jax_over_numpy_per_cpu_s']:.1f}x per CPU-second; numpy is single-threaded)")
    return out


def fma_ceiling(block_points: int, n_devices: int | None = None, iters: int = 2048, repeats: int = 5) -> dict:
    """FLOP/s of independent float32 fused multiply-adds over ``block_points`` per device.

    Eight independent chains ``a ← a·c + d`` per element keep every FMA pipeline busy
    (a dependent chain would measure latency, not throughput), 32 of them per loop
    iteration in one fused body so the values stay in registers (one FMA per memory load
    would measure memory bandwidth instead). Returns the FLOP/s of the fastest repeat (the
    ceiling; 2 FLOPs per FMA), the median, and the setting.
    """
    import jax
    import jax.numpy as jnp
    from jax.sharding import Mesh
    from jax.sharding import PartitionSpec as P

    from dynsim.engine import local_devices

    devs = local_devices()[: n_devices or None]
    mesh = Mesh(np.array(devs), ("points",))
    chains = 8

    inner = 32  # FMAs per chain per loop iteration: one fused elementwise body, so values stay in registers

    def local(x):
        c = jnp.float32(0.999999)

        def body(_, acc):
            for _ in range(inner):
                acc = tuple(a * c + jnp.float32(1e-7) for a in acc)
            return acc

        acc = jax.lax.fori_loop(0, iters // inner, body, tuple(x + i for i in range(chains)))
        return sum(acc)

    fn = jax.jit(jax.shard_map(local, mesh=mesh, in_specs=P("points"), out_specs=P("points")))
    x = jax.device_put(jnp.ones(block_points * len(devs), jnp.float32),
                       jax.sharding.NamedSharding(mesh, P("points")))
    times = device_times(lambda: fn(x), repeats)
    flops = 2.0 * chains * (iters // inner) * inner * block_points * len(devs)
    # a ceiling is what the machine does at best: the fastest repeat (the median is kept too)
    return {"flops_per_s": flops / float(np.min(times)), "flops_per_s_median": flops / float(np.median(times)),
            "block_points": block_points, "devices": len(devs), "chains": chains, "iters": iters, "times_s": times}


def step_flops() -> float:
    """FLOPs of one super-accelerated map step on L = kθ²/2, per point (XLA's cost analysis)."""
    import jax
    import jax.numpy as jnp

    from dynsim import landscapes, optim

    n = 4096

    def step(lr, mu, sigma, theta, u):
        rule = optim.super_accelerated(lr, mu, sigma)
        grad = jax.grad(landscapes.quadratic(1.0).loss)
        th, st = rule.map_step(grad, theta, rule.map_init(theta)._replace(velocity=u))
        return th, st.velocity

    v = jnp.ones((n, 1), jnp.float32)
    s = jnp.ones(n, jnp.float32)
    cost = jax.jit(jax.vmap(step)).lower(s, s, s, v, v).compile().cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    assert cost is not None  # XLA's compilers report a cost analysis
    return float(cost["flops"]) / n


def _beale(t):
    x, y = t[0], t[1]
    return (1.5 - x + x * y) ** 2 + (2.25 - x + x * y**2) ** 2 + (2.625 - x + x * y**3) ** 2


def user_code(points: int = 1 << 14, steps: int = 1024, loop_points: int = 4, loop_steps: int = 256,
              repeats: int = 3) -> dict:
    """``optax.adam`` on a user-defined 2-D loss: the engine against a per-point optax loop.

    The loop is what one writes without dynsim: for each (η, β₁), a jitted optax step called
    ``steps`` times from Python. Its cost per point-step does not depend on the grid, so it
    is timed on ``loop_points`` points and fewer steps.
    """
    import jax
    import jax.numpy as jnp
    import optax

    import dynsim

    n_lr = max(1, int(round(math.sqrt(points / 4))))
    grid = {"learning_rate": np.geomspace(1e-3, 0.1, n_lr), "b1": np.linspace(0.5, 0.95, max(1, points // n_lr))}
    n = n_lr * len(grid["b1"])

    def engine_once():
        t0 = time.perf_counter()
        ds = dynsim.sweep(optax.adam, _beale, grid, steps, ["rate", "final_loss", "diverged"],
                          theta0=[1.0, 1.0], progress=False)
        np.asarray(ds.final_loss.values)
        return time.perf_counter() - t0

    first = engine_once()
    eng = [engine_once() for _ in range(repeats)]

    grad = jax.grad(_beale)

    @jax.jit
    def step(params, state, lr, b1):
        tx = optax.adam(lr, b1)
        updates, state = tx.update(grad(params), state, params)
        return optax.apply_updates(params, updates), state

    def loop_once():
        t0 = time.perf_counter()
        for lr, b1 in zip(grid["learning_rate"][:loop_points], np.resize(grid["b1"], loop_points)):
            params = jnp.array([1.0, 1.0], jnp.float32)
            state = optax.adam(float(lr), float(b1)).init(params)
            for _ in range(loop_steps):
                params, state = step(params, state, jnp.float32(lr), jnp.float32(b1))
            params.block_until_ready()
        return time.perf_counter() - t0

    loop_once()  # compile
    loop = [loop_once() for _ in range(repeats)]
    eng_rate = n * steps / float(np.median(eng))
    loop_rate = loop_points * loop_steps / float(np.median(loop))
    return {"workload": "optax.adam on Beale's function (user code), grid (learning_rate, b1), float32",
            "points": n, "steps": steps, "first_call_s": first, "times_s": eng,
            "point_steps_per_s": eng_rate,
            "python_loop": {"points": loop_points, "steps": loop_steps, "times_s": loop,
                            "point_steps_per_s": loop_rate},
            "ratio_engine_over_loop": eng_rate / loop_rate}
