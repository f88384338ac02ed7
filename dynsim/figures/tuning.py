r"""Differentiable dynamics (issue 7): gradient-based tuning and the chaos of long unrolls.

* ``tune-quadratic`` — :func:`dynsim.tuning.tune` on the parabola (recovers the kinked
  critical σ*), on an N-dim quadratic (the worst-mode optimum) and on Nakerst eq. (15)
  (a σ that converges, not a trapping one); the objective over σ at several horizons.
* ``hypergrad-chaos`` — ``∂L_val/∂σ`` through full-batch training of the 784-30-10
  network versus horizon over initialisations: norm, spread and sign agreement, with and
  without truncation.
* ``tune-mnist`` — hypergradient descent on (σ) and (η, σ) for the validation loss after
  a short horizon, against the best point of a grid swept with :func:`dynsim.training.train`.
"""
from __future__ import annotations

import pathlib
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

import dynsim
from dynsim import analysis, landscapes, optim
from dynsim import tuning as tune
from dynsim.figures import _io, register

G = 0.9  # Nakerst's momentum


# --------------------------------------------------------------------------- tune-quadratic


def _spectrum_oracle(eig, lr, mu):
    """The exact worst-mode optimum (dense grid + golden section + the modes' kinks; float64)."""
    s, r = analysis.optimal_sigma_spectrum(np.asarray(eig, float), lr, mu)
    return float(s), float(r)


@register("tune-quadratic", "Gradient-based σ tuning: parabola (kink at σ*), N-dim quadratic, eq. (15)", x64=True)
def tune_quadratic(out: pathlib.Path, quick: bool = False) -> None:
    plt = _io.pyplot()
    t0 = time.perf_counter()
    horizons: tuple[int, ...]
    steps: tuple[int, ...]
    land_n: tuple[int, ...]
    if quick:
        pairs = [(0.1, 0.9), (0.3, 0.5)]
        horizons = (100, 800)
        steps = (60, 0)
        nd_combos = [(0.05, 0.9)]
        eq15_starts, eq15_steps = [2.0, 6.5], 40
        land_n, land_pts = (100, 800), 80
    else:
        pairs = [(0.003, 0.9), (0.01, 0.9), (0.02, 0.7), (0.05, 0.99), (0.1, 0.9), (0.1, 0.5), (0.3, 0.5), (0.5, 0.0)]
        horizons = (200, 1600, 6400, 25600)
        steps = (150, 0, 0, 0)
        nd_combos = [(0.05, 0.9), (0.02, 0.9), (0.1, 0.8), (0.03, 0.5), (0.15, 0.9), (0.01, 0.95)]
        eq15_starts, eq15_steps = [0.5, 1.5, 2.5, 3.5, 4.5, 5.5, 6.5, 7.5], 150
        land_n, land_pts = (200, 1600, 25600), 500
    lr_adam = 0.5
    quad = landscapes.quadratic(1.0)

    # ---- 1-D: σ* for several (kη, μ), one vmapped tuning run
    k_eta = jnp.array([p[0] for p in pairs])
    mu = jnp.array([p[1] for p in pairs])
    r1 = tune.tune("super_accelerated", quad, jnp.ones(1), free={"sigma": 0.0},
                   starts={"learning_rate": k_eta, "momentum": mu}, horizons=horizons, steps=steps,
                   learning_rate=lr_adam)
    exact1 = np.asarray(analysis.critical_sigma(k_eta, mu))
    err1 = r1.params["sigma"] - exact1

    # ---- N-dim quadratic
    eig = [0.2, 1.0, 3.0, 10.0]
    nd = landscapes.quadratic_nd(eig, rotation_seed=1)
    th0_nd = jnp.asarray(np.random.default_rng(0).standard_normal(len(eig)))
    r2 = tune.tune("super_accelerated", nd, th0_nd, free={"sigma": 0.0},
                   starts={"learning_rate": jnp.array([c[0] for c in nd_combos]),
                           "momentum": jnp.array([c[1] for c in nd_combos])},
                   horizons=horizons, steps=steps, learning_rate=lr_adam)
    oracle = [_spectrum_oracle(eig, lr, m) for lr, m in nd_combos]
    rate_at = [float(analysis.spectral_radius_quadratic(jnp.asarray(eig), lr, m, s))
               for (lr, m), s in zip(nd_combos, r2.params["sigma"])]
    crit_modes = np.asarray(analysis.critical_sigma(np.outer([c[0] for c in nd_combos], eig),
                                                    np.array([c[1] for c in nd_combos])[:, None]))
    kind = ["kink of mode %d" % int(np.argmin(np.abs(c - s))) if np.min(np.abs(c - s)) < 1e-2 else "crossing"
            for c, (s, _) in zip(crit_modes, oracle)]

    # ---- eq. (15)
    L15 = landscapes.nakerst2d()
    th15 = jnp.array([-1.0, -3.8])
    M15 = jnp.asarray(landscapes.NAKERST2D_MINIMUM)
    r3 = tune.tune("super_accelerated", L15, th15, free={"sigma": 0.0},
                   starts={"sigma": jnp.asarray(eq15_starts)}, hyper={"learning_rate": 0.01, "momentum": G},
                   objective="log_distance",
                   horizons=(300,), steps=eq15_steps, learning_rate=0.3)
    s15 = r3.best["sigma"]
    # the same with a windowed objective that a lucky pass through θ* at step 300 cannot game
    r3b = tune.tune("super_accelerated", L15, th15, free={"sigma": 0.0},
                    starts={"sigma": jnp.asarray(eq15_starts)}, hyper={"learning_rate": 0.01, "momentum": G},
                    objective="log_state",
                    horizons=(300,), steps=eq15_steps, learning_rate=0.3)
    n_long = 3000
    dist = jax.jit(jax.vmap(lambda s: jnp.linalg.norm(
        dynsim.simulate(optim.super_accelerated(0.01, G, s), L15, th15, n_long).theta - M15, axis=-1)))
    curve_sigmas = np.array([s15, 4.0, 7.0])
    dcurves = np.asarray(dist(jnp.asarray(curve_sigmas)))
    flip = (1 + G) / (40.468 * 0.01) - 0.5  # flip edge of the stiffest Hessian mode at θ* (nakerst-fig3)

    # ---- landscape over σ at kη = 0.01, μ = 0.9 (σ* = 9)
    ke, me = (0.01, 0.9) if not quick else (0.1, 0.9)
    ss = float(analysis.critical_sigma(ke, me))
    span = 3.0 if not quick else 1.0
    sig = np.linspace(ss - span, ss + span / 3, land_pts)
    sig_zoom = np.linspace(ss - 0.05 * span, ss + 0.02 * span, land_pts)
    curves, curves_zoom = {}, {}
    for n in land_n:
        for taper in ("hann2", "none"):
            if taper == "none" and n != land_n[1]:
                continue
            f = tune.convergence_objective("super_accelerated", quad, jnp.ones(1), n, taper=taper)
            F = jax.jit(jax.vmap(lambda s, f=f: f({"learning_rate": ke, "momentum": me, "sigma": s})))
            curves[(n, taper)] = np.asarray(F(jnp.asarray(sig)))
            curves_zoom[(n, taper)] = np.asarray(F(jnp.asarray(sig_zoom)))
    j_land = [i for i, p in enumerate(pairs) if p == (ke, me)]
    s_hat_land = float(r1.params["sigma"][j_land[0]]) if j_land else np.nan

    # ---- figure
    fig, ax = plt.subplots(2, 2, figsize=(13, 9.5))
    a = ax[0, 0]
    a.plot(sig, np.log(np.asarray(analysis.spectral_radius(ke, me, sig))), "k-", lw=2.5, alpha=0.35,
           label="exact log ρ(σ)")
    for (n, taper), c in curves.items():
        a.plot(sig, c, lw=1, ls="-" if taper == "hann2" else ":",
               label=f"N={n}" + (" (untapered)" if taper == "none" else ""))
    a.axvline(ss, color="k", ls="--", lw=0.8, label=f"exact σ* = {ss:.4f}")
    if np.isfinite(s_hat_land):
        a.axvline(s_hat_land, color="r", lw=0.8, label=f"tuned σ̂ = {s_hat_land:.4f}")
    a.set(xlabel="σ", ylabel="objective: smoothed log-rate per step",
          title=f"(a) objective over σ, kη={ke}, μ={me}: finite horizons → kinked log ρ")
    a.legend(fontsize=7, loc="upper left")
    ins = a.inset_axes([0.58, 0.08, 0.38, 0.38])
    ins.plot(sig_zoom, np.log(np.asarray(analysis.spectral_radius(ke, me, sig_zoom))), "k-", lw=2.5, alpha=0.35)
    for (_, taper), c in curves_zoom.items():
        ins.plot(sig_zoom, c, lw=0.8, ls="-" if taper == "hann2" else ":")
    ins.axvline(ss, color="k", ls="--", lw=0.8)
    if np.isfinite(s_hat_land):
        ins.axvline(s_hat_land, color="r", lw=0.8)
    ins.tick_params(labelsize=6)
    ins.set_title("zoom at σ*", fontsize=7)

    a = ax[0, 1]
    stage_err = np.abs(r1.stage_params["sigma"] - exact1[None, :])
    for j, (ke_j, mu_j) in enumerate(pairs):
        a.semilogy(horizons, np.maximum(stage_err[:, j], 1e-12), "o-", label=f"kη={ke_j}, μ={mu_j}")
    a.axhline(1e-3, color="k", ls="--", lw=0.8, label="1e-3 target")
    a.set_xscale("log")
    a.set(xlabel="horizon N of the stage", ylabel="|σ̂ − σ*| after the stage",
          title="(b) horizon schedule: Adam (stage 1) + gradient-sign bisection per stage")
    a.legend(fontsize=7)

    a = ax[1, 0]
    lr0, m0 = nd_combos[0]
    sgrid = np.linspace(oracle[0][0] - 3, oracle[0][0] + 2, 600)
    per_mode = np.asarray(analysis.spectral_radius(np.asarray(eig)[None, :] * lr0, m0, sgrid[:, None]))
    for i, k in enumerate(eig):
        a.plot(sgrid, per_mode[:, i], lw=0.8, label=f"mode k={k}")
    a.plot(sgrid, per_mode.max(1), "k-", lw=2, alpha=0.5, label="worst mode max_i ρ_i")
    a.axvline(oracle[0][0], color="k", ls="--", lw=0.8, label=f"grid+golden σ = {oracle[0][0]:.4f}")
    a.axvline(r2.params["sigma"][0], color="r", lw=0.8, label=f"tuned σ̂ = {r2.params['sigma'][0]:.4f}")
    a.set(xlabel="σ", ylabel="ρ", ylim=(per_mode.max(1).min() - 0.02, 1.0),
          title=f"(c) N-dim quadratic, spectrum {eig}, η={lr0}, μ={m0}")
    a.legend(fontsize=7)

    a = ax[1, 1]
    steps_axis = np.arange(n_long + 1)
    for d, lab in zip(dcurves, [f"tuned σ̂ = {s15:.3f}", "σ = 4 (paper's best)", "σ = 7 (paper: trapped)"]):
        a.semilogy(steps_axis, np.maximum(d, 1e-17), lw=1, label=lab)
    a.axvline(300, color="k", ls=":", lw=0.8, label="tuning horizon N = 300")
    a.set(xlabel="step", ylabel="‖θ − θ*‖", title=f"(d) eq. (15), η=0.01, μ=0.9, start (−1, −3.8); "
          f"{len(eq15_starts)} starts σ₀ ∈ [{min(eq15_starts)}, {max(eq15_starts)}]")
    a.legend(fontsize=7)
    _io.save_figure(fig, out / "tune_quadratic.png", dpi=120)

    # ---- CSVs
    rows: dict[str, list[Any]] = {
        "problem": [], "k_eta_or_eta": [], "momentum": [], "sigma_exact": [], "sigma_tuned": [],
        "abs_error": [], "rho_optimal": [], "rho_at_tuned": []}
    for j, (ke_j, mu_j) in enumerate(pairs):
        rows["problem"].append("parabola")
        rows["k_eta_or_eta"].append(ke_j)
        rows["momentum"].append(mu_j)
        rows["sigma_exact"].append(exact1[j])
        rows["sigma_tuned"].append(r1.params["sigma"][j])
        rows["abs_error"].append(abs(err1[j]))
        rows["rho_optimal"].append(float(analysis.min_spectral_radius(ke_j)))
        rows["rho_at_tuned"].append(float(analysis.spectral_radius(ke_j, mu_j, r1.params["sigma"][j])))
    for j, (lr_j, mu_j) in enumerate(nd_combos):
        rows["problem"].append(f"quadratic_nd{eig}")
        rows["k_eta_or_eta"].append(lr_j)
        rows["momentum"].append(mu_j)
        rows["sigma_exact"].append(oracle[j][0])
        rows["sigma_tuned"].append(r2.params["sigma"][j])
        rows["abs_error"].append(abs(r2.params["sigma"][j] - oracle[j][0]))
        rows["rho_optimal"].append(oracle[j][1])
        rows["rho_at_tuned"].append(rate_at[j])
    _io.save_csv(out / "tune_quadratic.csv", rows)
    land_cols = {"sigma": sig, "log_rho_exact": np.log(np.asarray(analysis.spectral_radius(ke, me, sig)))}
    for (n, taper), c in curves.items():
        land_cols[f"objective_N{n}_{taper}"] = c
    _io.save_csv(out / "objective_over_sigma.csv", land_cols)
    _io.save_csv(out / "eq15_starts.csv", {"sigma_start": np.asarray(eq15_starts, float),
                                          "sigma_tuned": r3.params["sigma"],
                                          "log_distance_300": r3.values,
                                          "sigma_tuned_log_state": r3b.params["sigma"],
                                          "log_state_300": r3b.values})

    elapsed = time.perf_counter() - t0
    _io.save_config(out, "tune-quadratic", {
        "quick": quick, "pairs_k_eta_momentum": pairs, "horizons": horizons, "adam_steps_per_stage": steps,
        "adam_learning_rate": lr_adam, "objective": "log_rate: smoothed_rate, hann2 taper, window = whole horizon",
        "refine": "bisection on the sign of dF/dσ at the end of every stage",
        "nd_eigenvalues": eig, "nd_rotation_seed": 1, "nd_combos_eta_momentum": nd_combos,
        "eq15": {"eta": 0.01, "momentum": G, "theta0": [-1.0, -3.8], "objective": "log_distance after 300 steps",
                 "starts": eq15_starts, "adam_steps": eq15_steps},
        "landscape_panel": {"k_eta": ke, "momentum": me, "horizons": land_n},
        "seconds": round(elapsed, 1),
    })
    t1 = _io.markdown_table(
        ["kη", "μ", "exact σ*", "tuned σ̂", "σ̂ − σ*", "ρ(σ̂) − ρ(σ*)"],
        [[p[0], p[1], exact1[j], r1.params["sigma"][j], err1[j],
          float(analysis.spectral_radius(p[0], p[1], r1.params["sigma"][j])) - float(analysis.min_spectral_radius(p[0]))]
         for j, p in enumerate(pairs)],
    )
    t2 = _io.markdown_table(
        ["η", "μ", "grid+golden σ", "tuned σ̂", "|σ̂ − σ|", "optimum is", "max ρ at σ", "max ρ at σ̂"],
        [[c[0], c[1], oracle[j][0], r2.params["sigma"][j], abs(r2.params["sigma"][j] - oracle[j][0]), kind[j],
          oracle[j][1], rate_at[j]] for j, c in enumerate(nd_combos)],
    )
    t3 = _io.markdown_table(
        ["start σ₀", "tuned σ", "log‖θ₃₀₀ − θ*‖"],
        [[s0, s, v] for s0, s, v in zip(eq15_starts, r3.params["sigma"], r3.values)],
    )
    worst1 = float(np.max(np.abs(err1)))
    worst2 = float(np.max([abs(r2.params["sigma"][j] - oracle[j][0]) for j in range(len(nd_combos))]))
    body = f"""
Gradient-based tuning with `dynsim.tuning.tune` (float64). Objective: the smoothed log-rate per step
(`smoothed_rate` with the `hann2` = sin⁴ taper over the whole horizon) of the state norm
‖(θ − θ*, u)‖, tracked with renormalisation (`simulate_lognorm`). σ is free and unconstrained
(η, μ fixed). Horizon schedule N = {horizons}; stage 1 runs {steps[0]} Adam steps (cosine-decayed
step {lr_adam}); every stage ends with a bisection on the sign of ∂F/∂σ. All problems of a panel run
in one vmapped call (per-start fixed hyperparameters). Runtime {elapsed:.0f} s.

**1-D parabola: the exact critical σ\\* (dynsim.analysis.critical_sigma).** Worst |σ̂ − σ\\*| =
{worst1:.2e} (absolute; the requirement is 1e-3 absolute, which is also ≤ 1e-3 relative whenever
|σ\\*| ≥ 1). σ̂ is always on the under-damped side: the finite-horizon objective is smooth, with slope
+O(N) at σ\\*, and its minimiser sits in a boundary layer of width ~1/(N²(kη)^{{3/2}}) below σ\\* where
less than one oscillation fits into the window. Without the taper the objective has ripples from the
under-damped oscillation (dotted curve in (a)) whose spurious minima lie 30-100× farther from σ\\*.

{t1}

**N-dim quadratic (spectrum {eig}, rotated, seed 1; random θ₀).** Oracle: dense grid (2·10⁵ points)
of `analysis.spectral_radius_quadratic` over the stable interval + golden-section refinement (the
worst-mode rate is quasi-convex in σ). Worst |σ̂ − σ| = {worst2:.2e}. At a crossing of two modes the
finite-horizon rate is a smooth maximum (temperature ~1/N) of the two, so σ̂ is biased by
O(log(c₁/c₂)/(N·Δslope)) where Δslope is the difference of the modes' d log ρ/dσ: small slopes
(small kη, e.g. η = 0.03, μ = 0.5 or η = 0.01, μ = 0.95) give the largest errors. The rate reached
at σ̂ is within 1e-5 (relative) of the optimum in all cases.

{t2}

**Nakerst eq. (15)** (η = 0.01, μ = 0.9, start (−1, −3.8)); objective log‖θ₃₀₀ − θ*‖ from
{len(eq15_starts)} starts, several inside the trapping range. Best: σ = {s15:.4f}
(log-distance after 300 steps {r3.best_value:.2f}); continued to {n_long} steps it ends
‖θ − θ*‖ = {dcurves[0, -1]:.2e} from the true minimum. The paper reports σ ≈ 3-4 as best and
trapping in a spurious 2-cycle for σ ≳ 4 (σ = 7 in Fig. 3c): the map's flip edge at θ* is
σ_flip = (1+g)/(k_max η) − ½ = {flip:.3f} (nakerst-fig3). σ = 7 here ends at distance
{dcurves[2, -1]:.3f}. Starts beyond the flip edge see a small positive ∂/∂σ (a trapped orbit still gets
closer to θ* as σ decreases) and walk back down, and the best-of-starts picks a converging σ.
The distance curve of σ̂ in (d) dips sharply at step 300: a single-step objective rewards the σ whose
orbit nearly cancels its slow (valley) component exactly at N. With the windowed objective
`log_state` (mean of log‖(θ − θ*, u)‖ over steps 271-300, which such a cancellation cannot fake) the
tuner returns σ = {r3b.best["sigma"]:.4f}, i.e. the same optimum.

{t3}

| quantity | paper (Nakerst et al.) | ours |
|---|---|---|
| optimal σ on the parabola | σ* from ODE, eq. (12) (≈ exact + 1) | exact σ* recovered by gradient descent to {worst1:.1e} |
| best σ on eq. (15) | ≈ 3-4 | {s15:.3f} (gradient-tuned, 300-step horizon) |
| trapping on eq. (15) | σ ≳ 4 (§6), σ = 7 trapped | tuned σ < σ_flip = {flip:.3f}; σ = 7 ends {dcurves[2, -1]:.3f} from θ* |
"""
    _io.save_notes(out, "tune-quadratic: gradient-based tuning of σ", body)


# --------------------------------------------------------------------------- training problems


def _training_setup(quick: bool):
    from dynsim import data as data_mod
    from dynsim import models

    if quick:
        ds = data_mod.load("digits")
        model = models.nielsen_mlp((10,), input_dim=64)
        cfg: dict[str, Any] = {"dataset": "digits", "n_train": 300, "n_val": 200, "model": model.name}
    else:
        ds = data_mod.load("mnist")
        model = models.nielsen_mlp((30,))
        cfg = {"dataset": "mnist", "n_train": 5000, "n_val": 2000, "model": model.name}
    problem = tune.training_problem(ds, model, n_train=cfg["n_train"], n_val=cfg["n_val"])
    return ds, model, problem, cfg


# --------------------------------------------------------------------------- hypergrad-chaos


@register("hypergrad-chaos", "Hypergradients d(val loss)/dσ through training vs horizon: explosion, sign chaos, truncation")
def hypergrad_chaos(out: pathlib.Path, quick: bool = False) -> None:
    out = pathlib.Path(out)
    t0 = time.perf_counter()
    _, _, problem, dcfg = _training_setup(quick)
    if quick:
        seeds, steps = list(range(4)), 40
        settings = [(0.5, 4.0), (0.5, 20.0)]
        trunc_T, trunc_h = 5, [20, 40]
    else:
        seeds, steps = list(range(8)), 400
        settings = [(0.5, 4.0), (0.5, 20.0), (3.0, 4.0)]
        trunc_T, trunc_h = 20, [25, 50, 100, 200, 400]
    from tqdm.auto import tqdm

    full, trunc = {}, {}
    for eta, sigma in tqdm(settings, desc="hypergrad-chaos", disable=quick):
        hp = {"learning_rate": eta, "momentum": G, "sigma": sigma}
        full[(eta, sigma)] = tune.horizon_hypergradients(problem, "super_accelerated", hp, seeds, steps, wrt=("sigma",))
        trunc[(eta, sigma)] = tune.truncated_hypergradients(problem, "super_accelerated", hp, seeds, trunc_h, trunc_T)
    # raw per-init values, so the figure and notes can be re-rendered without recomputing
    per_setting: dict[str, Any] = {**{f"full_g_{i}": full[k]["sigma"] for i, k in enumerate(settings)},
                                   **{f"full_val_{i}": full[k]["val_loss"] for i, k in enumerate(settings)},
                                   **{f"trunc_g_{i}": trunc[k]["sigma"] for i, k in enumerate(settings)}}
    np.savez_compressed(out / "hypergrad_raw.npz", settings=np.array(settings), seeds=np.array(seeds),
                        truncated_horizons=np.array(trunc_h), truncation=trunc_T, **per_setting)
    cfg = {"quick": quick, **dcfg, "seeds": seeds, "steps": steps, "momentum": G,
           "settings_eta_sigma": settings, "truncation": trunc_T, "truncated_horizons": trunc_h,
           "derivative": "forward mode (jax.jvp) through the whole unroll; all horizons in one pass",
           "loss": "Nielsen quadratic cost at the paper's θ (rule.to_paper), validation set held out of train",
           "compute_seconds": round(time.perf_counter() - t0, 1)}
    _chaos_render(out, full, trunc, cfg)


def _chaos_stats(g):
    """Statistics over initialisations (axis 0) of per-init hypergradients."""
    mean, std = g.mean(0), g.std(0, ddof=1)
    a = np.abs(g)
    return {
        "median_abs": np.median(a, 0),
        "q10_abs": np.quantile(a, 0.1, 0),
        "q90_abs": np.quantile(a, 0.9, 0),
        "max_abs": a.max(0),
        "mean": mean,
        "std": std,
        "sign_agreement": np.abs(np.mean(np.sign(g), 0)),
        # z-score of the S-init average: √S·|mean|/std
        "snr_seed_mean": np.abs(mean) / np.where(std > 0, std, np.nan) * np.sqrt(g.shape[0]),
    }


def _chaos_render(out: pathlib.Path, full: dict, trunc: dict, cfg: dict) -> None:
    plt = _io.pyplot()
    seeds, steps, trunc_T, trunc_h = cfg["seeds"], cfg["steps"], cfg["truncation"], cfg["truncated_horizons"]
    S = len(seeds)
    t_axis = np.arange(steps + 1)
    fig, ax = plt.subplots(2, 2, figsize=(13, 9))
    cols = ("eta", "sigma", "horizon", "val_loss_mean", "median_abs", "q10_abs", "q90_abs", "max_abs", "mean", "std",
            "sign_agreement", "snr_seed_mean")
    rows: dict[str, list[Any]] = {k: [] for k in cols}
    tcols = ("eta", "sigma", "horizon", "truncation", "median_abs", "max_abs", "mean", "std", "sign_agreement",
             "snr_seed_mean", "full_median_abs", "full_max_abs", "full_sign_agreement", "full_snr_seed_mean")
    trows: dict[str, list[Any]] = {k: [] for k in tcols}
    summary = []
    for c, (key, res) in enumerate(full.items()):
        col = f"C{c}"
        st = _chaos_stats(res["sigma"][:, 1:])  # t = 1..steps (g ≡ 0 at t = 0)
        tt = t_axis[1:]
        lab = f"η={key[0]}, σ={key[1]}"
        ax[0, 0].loglog(tt, st["median_abs"], color=col, label=lab + ": median")
        ax[0, 0].loglog(tt, st["max_abs"], color=col, lw=0.6, ls=":", label=lab + ": max over inits")
        ax[0, 0].fill_between(tt, st["q10_abs"], st["q90_abs"], color=col, alpha=0.15)
        ax[0, 1].semilogx(tt, st["sign_agreement"], color=col, label=lab)
        ax[1, 0].loglog(tt, st["snr_seed_mean"], color=col, label=lab + " (full)")
        ax[1, 1].semilogx(t_axis, res["val_loss"].mean(0), color=col, label=lab)
        ax[1, 1].fill_between(t_axis, res["val_loss"].min(0), res["val_loss"].max(0), color=col, alpha=0.15)
        ts = _chaos_stats(trunc[key]["sigma"])
        ax[0, 0].loglog(trunc_h, ts["median_abs"], "s--", color=col, ms=4, lw=0.8)
        ax[0, 1].semilogx(trunc_h, ts["sign_agreement"], "s--", color=col, ms=4, lw=0.8)
        ax[1, 0].loglog(trunc_h, ts["snr_seed_mean"], "s--", color=col, ms=4, lw=0.8,
                        label=lab + f" (truncated T={trunc_T})")
        for i, h in enumerate(tt):
            rows["eta"].append(key[0])
            rows["sigma"].append(key[1])
            rows["horizon"].append(int(h))
            rows["val_loss_mean"].append(float(res["val_loss"][:, h].mean()))
            for k in cols[4:]:
                rows[k].append(float(st[k][i]))
        for i, h in enumerate(trunc_h):
            trows["eta"].append(key[0])
            trows["sigma"].append(key[1])
            trows["horizon"].append(h)
            trows["truncation"].append(trunc_T)
            for k in ("median_abs", "max_abs", "mean", "std", "sign_agreement", "snr_seed_mean"):
                trows[k].append(float(ts[k][i]))
            for k in ("median_abs", "max_abs", "sign_agreement", "snr_seed_mean"):
                trows["full_" + k].append(float(st[k][h - 1]))
        # data-driven summary per setting
        late = tt >= min(50, steps // 2)
        t10 = min(10, steps) - 1
        snr_late = st["snr_seed_mean"][late]
        summary.append(dict(
            eta=key[0], sigma=key[1], med_early=float(st["median_abs"][t10]), t_early=int(tt[t10]),
            med_peak=float(st["median_abs"].max()), t_peak=int(tt[np.argmax(st["median_abs"])]),
            med_end=float(st["median_abs"][-1]), max_all=float(st["max_abs"].max()),
            t_max=int(tt[np.argmax(st["max_abs"])]),
            frac_low_snr=float(np.mean(snr_late < 2.0)), agree_late=float(np.mean(st["sign_agreement"][late])),
            tr_snr_min=float(np.nanmin(ts["snr_seed_mean"])), tr_snr_max=float(np.nanmax(ts["snr_seed_mean"])),
            tr_agree=float(np.mean(ts["sign_agreement"])), val_end=float(res["val_loss"][:, -1].mean()),
        ))
    ax[0, 0].set(xlabel="horizon t (full-batch steps)", ylabel="|∂L_val(θ_t)/∂σ|",
                 title=f"(a) |hypergradient| over {S} inits: median, 10-90% band, max (dotted); squares: truncated T={trunc_T}")
    ax[0, 1].set(xlabel="horizon t", ylabel="|mean sign| over inits", ylim=(-0.05, 1.05),
                 title="(b) sign agreement of ∂L_val/∂σ (1: all inits agree, 0: split)")
    ax[1, 0].axhline(2.0, color="k", ls=":", lw=0.8)
    ax[1, 0].set(xlabel="horizon t", ylabel="√S·|mean|/std",
                 title=f"(c) z-score of the {S}-init averaged hypergradient (dotted: 2)")
    ax[1, 1].set(xlabel="step", ylabel="validation loss",
                 title=f"(d) validation loss ({cfg['dataset']}, {cfg['model']}), mean and range")
    for a in ax.ravel():
        a.legend(fontsize=6)
    ax[0, 0].title.set_fontsize(9)
    _io.save_figure(fig, out / "hypergrad_chaos.png", dpi=120)
    _io.save_csv(out / "hypergrad_chaos.csv", rows)
    _io.save_csv(out / "hypergrad_truncated.csv", trows)
    _io.save_config(out, "hypergrad-chaos", cfg)

    show = [h for h in ([10, 25, 50, 100, 200, 400] if steps >= 400 else [5, 10, 20, 40]) if h <= steps]
    table_rows = []
    for key, res in full.items():
        st = _chaos_stats(res["sigma"])
        for h in show:
            table_rows.append([key[0], key[1], h, float(res["val_loss"][:, h].mean()), float(st["median_abs"][h]),
                               float(st["max_abs"][h]), float(st["mean"][h]), float(st["std"][h]),
                               float(st["sign_agreement"][h]), float(st["snr_seed_mean"][h])])
    tbl = _io.markdown_table(["η", "σ", "horizon", "val loss", "median \\|g\\|", "max \\|g\\|", "mean g", "std g",
                              "sign agreement", "√S·\\|mean\\|/std"], table_rows)
    ttbl = _io.markdown_table(
        ["η", "σ", "horizon", "full: median \\|g\\|", "full: max \\|g\\|", "full: √S\\|mean\\|/std",
         f"trunc T={trunc_T}: median \\|g\\|", "trunc: max \\|g\\|", "trunc: sign agreement", "trunc: √S\\|mean\\|/std"],
        [[trows["eta"][i], trows["sigma"][i], trows["horizon"][i], trows["full_median_abs"][i], trows["full_max_abs"][i],
          trows["full_snr_seed_mean"][i], trows["median_abs"][i], trows["max_abs"][i], trows["sign_agreement"][i],
          trows["snr_seed_mean"][i]] for i in range(len(trows["eta"]))])
    bullets = "\n".join(
        f"* η = {d['eta']}, σ = {d['sigma']}: median |g| {d['med_early']:.2e} at t = {d['t_early']}, peak "
        f"{d['med_peak']:.2e} at t = {d['t_peak']}, {d['med_end']:.2e} at t = {steps}; the largest single-init "
        f"|g| is {d['max_all']:.1e} (t = {d['t_max']}). For t ≥ {min(50, steps // 2)} the {S}-init average has "
        f"z-score < 2 at {d['frac_low_snr']:.0%} of the horizons (mean sign agreement {d['agree_late']:.2f}). "
        f"Truncated to the last {trunc_T} steps: z-score {d['tr_snr_min']:.1f}–{d['tr_snr_max']:.1f}, sign agreement "
        f"{d['tr_agree']:.2f} on average. Validation loss at t = {steps}: {d['val_end']:.4f}."
        for d in summary)
    n_note = ("MNIST subset: the first 5000 of the 58000 training images left after holding out 2000 (seed 0) "
              "for validation; the 10000 test images are not used (full 60k: ~12× the cost per step on this "
              "2-core CPU)." if not cfg["quick"] else "quick mode: sklearn digits, 64-10-10.")
    body = f"""
g = ∂L_val(θ_t)/∂σ: the derivative of the validation loss after t full-batch steps of super-accelerated
momentum (μ = {G}) with respect to σ, through the whole unrolled training, for {S} initialisations
(seeds {seeds[0]}..{seeds[-1]}). Forward mode: one `jax.jvp` pass gives g at every t ≤ {steps}.
{cfg['model']}; {n_note} Compute {cfg['compute_seconds']:.0f} s.
"z-score" = √S·|mean g|/std g over the S initialisations: how many standard errors the averaged
hypergradient is away from zero (below ~2 its sign is not trustworthy). Raw per-init values:
`hypergrad_raw.npz`.

Per setting (numbers from this run):

{bullets}

Reading: where the unrolled training map is contracting (η = 0.5, σ = 4: the paper's setting) the
hypergradient stays bounded and its sign is mostly shared across initialisations. With large σ (20) or
large η (3) some initialisations pass through expanding phases: the spread of g over initialisations
grows by orders of magnitude (heavy tails: the max is far above the median) and the averaged
hypergradient's z-score collapses to ~1, i.e. the average is dominated by one or two exploding
initialisations — the chaotic-hypergradient regime of long unrolls (Metz et al. 2019,
learned_optimization). Truncation to the last {trunc_T} steps removes the exploding long-range
dependence (at σ = 20 it restores a consistent sign), at the price of a bias towards the local,
short-horizon effect of σ; where training is stuck (η = 3, validation loss flat) the truncated
gradient is tiny and uninformative. Averaging over initialisations helps only while per-init gradients
have comparable size: it raises the z-score by √S in the well-behaved setting but cannot fix heavy tails.
Consequence for `tune-mnist`: tune on a short horizon (50 steps), averaged over initialisations.

{tbl}

Truncated versus full (same initialisations):

{ttbl}

| quantity | paper / literature | ours |
|---|---|---|
| long-unroll hypergradients | chaotic, exploding (Metz et al. 2019) | heavy-tailed growth and z-score ≈ 1 at σ = 20 and η = 3 (bullets above); bounded at η = 0.5, σ = 4 |
| σ-dependence at late times | curves for σ ≥ 2 merge by 400 steps (Nakerst §4) | validation loss at t = {steps}: σ = 4 and σ = 20 within {abs(summary[0]['val_end'] - summary[1]['val_end']):.1e} |
"""
    _io.save_notes(out, "hypergrad-chaos: hypergradients through training versus horizon", body)


# --------------------------------------------------------------------------- tune-mnist


@register("tune-mnist", "Hypergradient-tuned (η, σ) for the validation loss after a short horizon vs grid-swept best")
def tune_mnist(out: pathlib.Path, quick: bool = False) -> None:
    out = pathlib.Path(out)
    plt = _io.pyplot()
    from dynsim import data as data_mod
    from dynsim import training as train_mod

    t0 = time.perf_counter()
    ds, model, problem, dcfg = _training_setup(quick)
    if quick:
        seeds, horizon, eta0 = [0, 1], 10, 0.5
        sigma_grid = np.arange(0.0, 9.0, 2.0)
        eta_grid, sigma_grid2 = np.array([0.25, 0.5, 1.0]), np.array([0.0, 4.0, 8.0])
        iters_1d, iters_2d, curve_steps = 4, 4, 20
    else:
        seeds, horizon, eta0 = [0, 1, 2, 3], 50, 0.5
        sigma_grid = np.arange(0.0, 21.0, 1.0)
        eta_grid, sigma_grid2 = np.array([0.25, 0.5, 1.0, 2.0]), np.array([0.0, 2.0, 4.0, 6.0, 8.0, 12.0, 16.0, 20.0])
        iters_1d, iters_2d, curve_steps = 20, 30, 200
    vds = data_mod.validation_split(ds, dcfg["n_val"], seed=0)

    # ---- grids with the shared training engine (same data as the tuner: a test checks the engines agree)
    def grid_loss(grid):
        res = train_mod.train("super_accelerated", model, vds, grid, steps=horizon, metrics_every=horizon,
                              eval_on=("test",), seeds=seeds, train_subset=dcfg["n_train"], progress=not quick)
        return res["test_loss"].isel(step=-1)

    g1 = grid_loss({"learning_rate": eta0, "momentum": G, "sigma": sigma_grid})
    g1_mean, g1_std = np.asarray(g1.mean("seed")), np.asarray(g1.std("seed"))
    g1_mean = np.where(np.isfinite(g1_mean), g1_mean, np.inf)
    s_grid_best = float(sigma_grid[np.argmin(g1_mean)])
    g2 = grid_loss({"learning_rate": eta_grid, "momentum": G, "sigma": sigma_grid2})
    g2_mean = np.asarray(g2.mean("seed"))  # (eta, sigma)
    g2_mean = np.where(np.isfinite(g2_mean), g2_mean, np.inf)
    i2 = np.unravel_index(np.argmin(g2_mean), g2_mean.shape)
    e2_best, s2_best = float(eta_grid[i2[0]]), float(sigma_grid2[i2[1]])

    # ---- hypergradient descent: σ alone (η = 0.5), then (η, σ) jointly
    def sched(lr, n):
        return optax.cosine_decay_schedule(lr, max(n, 1), alpha=0.05)

    r_1d = tune.tune_training(problem, free={"sigma": 4.0}, hyper={"learning_rate": eta0, "momentum": G},
                              seeds=seeds, horizon=horizon, steps=iters_1d, learning_rate=1.0,
                              refine=True, bisect_iters=6 if not quick else 2, bracket=0.5, progress=not quick)
    tx2 = optax.multi_transform(
        {"eta": optax.adam(sched(0.15, iters_2d)), "sigma": optax.adam(sched(1.0, iters_2d))},
        {"learning_rate": "eta", "sigma": "sigma"},
    )
    r_2d = tune.tune_training(problem, free={"learning_rate": eta0, "sigma": 4.0}, hyper={"momentum": G},
                              seeds=seeds, horizon=horizon, steps=iters_2d, tx=tx2, progress=not quick)
    s_tuned = r_1d.best["sigma"]
    e_j, s_j = r_2d.best["learning_rate"], r_2d.best["sigma"]

    # ---- validation curves (same seeds) beyond the tuning horizon
    configs = {
        f"paper η={eta0}, σ=4": (eta0, 4.0),
        f"grid best σ={s_grid_best:g} (η={eta0})": (eta0, s_grid_best),
        f"tuned σ={s_tuned:.2f} (η={eta0})": (eta0, s_tuned),
        f"2-D grid best η={e2_best:g}, σ={s2_best:g}": (e2_best, s2_best),
        f"tuned jointly η={e_j:.3f}, σ={s_j:.2f}": (e_j, s_j),
    }
    cv = tune.validation_curve(problem, "super_accelerated",
                               {"learning_rate": np.array([v[0] for v in configs.values()]), "momentum": G,
                                "sigma": np.array([v[1] for v in configs.values()])}, seeds, curve_steps)
    curves = dict(zip(configs, cv))
    at_h = {k: float(np.mean(c[:, horizon])) for k, c in curves.items()}

    # ---- figure
    fig, ax = plt.subplots(1, 3, figsize=(18, 5.5))
    a = ax[0]
    a.errorbar(sigma_grid, g1_mean, yerr=g1_std, fmt="o-", ms=3, lw=1, capsize=2, label=f"grid (train.train), {len(seeds)} inits")
    hs = r_1d.history
    a.plot(hs["sigma"][:, 0], np.exp(hs["value"][:, 0]), "r.-", lw=0.6, ms=4, label="hypergradient iterates (Adam)")
    a.axvline(s_grid_best, color="C0", ls="--", lw=0.8, label=f"grid best σ = {s_grid_best:g}")
    a.axvline(s_tuned, color="r", lw=1, label=f"tuned σ̂ = {s_tuned:.2f}")
    a.set(xlabel="σ", ylabel=f"validation loss after {horizon} steps", yscale="log",
          title=f"(a) σ at η = {eta0}, μ = {G}: grid vs hypergradient descent")
    a.legend(fontsize=7)
    a = ax[1]
    im = a.pcolormesh(np.arange(len(sigma_grid2)), np.arange(len(eta_grid)), np.log10(g2_mean), shading="nearest", cmap="viridis")
    fig.colorbar(im, ax=a, label=f"log10 validation loss after {horizon} steps")
    a.set_xticks(np.arange(len(sigma_grid2)), [f"{s:g}" for s in sigma_grid2])
    a.set_yticks(np.arange(len(eta_grid)), [f"{e:g}" for e in eta_grid])
    # the tuner's path, mapped into grid-index coordinates by interpolation
    px = np.interp(r_2d.history["sigma"][:, 0], sigma_grid2, np.arange(len(sigma_grid2)))
    py = np.interp(np.log(r_2d.history["learning_rate"][:, 0]), np.log(eta_grid), np.arange(len(eta_grid)))
    a.plot(px, py, "r.-", lw=0.8, ms=3, label="joint hypergradient path (η, σ)")
    a.plot(i2[1], i2[0], "w*", ms=12, label=f"grid best η={e2_best:g}, σ={s2_best:g}")
    a.set(xlabel="σ (grid index axis)", ylabel="η", title="(b) (η, σ): grid vs joint hypergradient descent")
    a.legend(fontsize=7, loc="upper right")
    a = ax[2]
    for k, c in curves.items():
        a.semilogy(np.arange(curve_steps + 1), c.mean(0), lw=1, label=k)
    a.axvline(horizon, color="k", ls=":", lw=0.8, label=f"tuning horizon {horizon}")
    a.set(xlabel="full-batch step", ylabel="validation loss (mean over inits)", title="(c) validation curves")
    a.legend(fontsize=7)
    _io.save_figure(fig, out / "tune_mnist.png", dpi=120)

    _io.save_csv(out / "grid_sigma.csv", {"sigma": sigma_grid, "val_loss_mean": g1_mean, "val_loss_std": g1_std})
    ee, sg = np.meshgrid(eta_grid, sigma_grid2, indexing="ij")
    _io.save_csv(out / "grid_eta_sigma.csv", {"eta": ee.ravel(), "sigma": sg.ravel(), "val_loss_mean": g2_mean.ravel()})
    _io.save_csv(out / "tuner_path_sigma.csv", {
        "iteration": np.arange(len(hs["value"])), "sigma": hs["sigma"][:, 0], "log_val_loss": hs["value"][:, 0]})
    _io.save_csv(out / "tuner_path_joint.csv", {
        "iteration": np.arange(len(r_2d.history["value"])), "eta": r_2d.history["learning_rate"][:, 0],
        "sigma": r_2d.history["sigma"][:, 0], "log_val_loss": r_2d.history["value"][:, 0]})
    _io.save_csv(out / "tune_mnist.csv", {
        "config": list(configs), "eta": [v[0] for v in configs.values()], "sigma": [v[1] for v in configs.values()],
        f"val_loss_at_{horizon}": [at_h[k] for k in configs], f"val_loss_at_{curve_steps}": [float(np.mean(curves[k][:, -1])) for k in configs]})

    elapsed = time.perf_counter() - t0
    _io.save_config(out, "tune-mnist", {
        "quick": quick, **dcfg, "seeds": seeds, "horizon": horizon, "momentum": G, "eta_1d": eta0,
        "sigma_grid": sigma_grid, "eta_grid": eta_grid, "sigma_grid_2d": sigma_grid2,
        "tuner_1d": {"start": 4.0, "adam_steps": iters_1d, "adam_lr": 1.0, "refine": "gradient-sign bisection"},
        "tuner_2d": {"start": [eta0, 4.0], "adam_steps": iters_2d, "adam_lr": {"z_eta (softplus)": 0.15, "sigma": 1.0}},
        "objective": "log mean over inits of the validation loss after `horizon` full-batch steps (reverse mode)",
        "grid_engine": "dynsim.training.train", "seconds": round(elapsed, 1),
    })
    n_note = ("MNIST subset: first 5000 of the training images left after holding out 2000 for validation "
              "(the test set is not touched)." if not quick else "quick mode: sklearn digits, 64-10-10.")
    tbl = _io.markdown_table(["setting", "η", "σ", f"val loss @ {horizon}", f"val loss @ {curve_steps}"],
                             [[k, v[0], v[1], at_h[k], float(np.mean(curves[k][:, -1]))] for k, v in configs.items()])
    body = f"""
Objective: log of the validation loss after {horizon} full-batch steps of super-accelerated momentum
(μ = {G}), averaged over {len(seeds)} initialisations, differentiated by reverse mode through the unrolled
training (`dynsim.tuning.tune_training`, hyperparameters in unconstrained coordinates: η = softplus(z),
σ = z). {dcfg['model']}; {n_note} The short horizon and the average over initialisations are the
choices `hypergrad-chaos` motivates: there, at η = 0.5 the hypergradient after ~50 steps has a sign
shared by most initialisations for σ = 4, while for σ = 20 or at long horizons it is dominated by a few
exploding initialisations. Grid points are trained with the shared engine `dynsim.training.train` on the
same data and initialisations (a test checks that engine and this unroll give identical loss curves).
The σ-only run ends with the gradient-sign bisection of `dynsim.tuning.minimize`; the joint run is Adam
only (two free hyperparameters; step sizes 0.15 in softplus⁻¹(η) and 1.0 in σ, cosine-decayed).
Runtime {elapsed:.0f} s on the shared 2-core CPU.

* σ alone (η = {eta0}): grid best σ = {s_grid_best:g} (grid step {sigma_grid[1] - sigma_grid[0]:g}), hypergradient
  descent from σ = 4 ends at σ̂ = {s_tuned:.3f} (objective {np.exp(r_1d.best_value):.5f} vs grid best
  {g1_mean.min():.5f}).
* (η, σ) jointly: grid best (η, σ) = ({e2_best:g}, {s2_best:g}) with loss {g2_mean.min():.5f};
  hypergradient descent from (0.5, 4) ends at ({e_j:.3f}, {s_j:.2f}) with loss {np.exp(r_2d.best_value):.5f}.

{tbl}

| quantity | paper (Nakerst §4, Fig. 5a) | ours |
|---|---|---|
| σ = 4 vs smaller σ at η = 0.5 | σ = 4 clearly better | grid: loss {g1_mean[np.argmin(np.abs(sigma_grid - 4))]:.4f} at σ = 4 vs {g1_mean[0]:.4f} at σ = 0 |
| σ = 20 | works well, beyond the 1-D optimum | grid: loss at σ = {sigma_grid[-1]:g} {g1_mean[-1]:.4f} |
| best σ (short horizon, η = 0.5) | not tuned in the paper | grid {s_grid_best:g}, hypergradient {s_tuned:.2f} |
"""
    _io.save_notes(out, "tune-mnist: hypergradient-tuned σ (and η) vs the grid-swept best", body)
