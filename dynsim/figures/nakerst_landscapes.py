r"""Nakerst et al. §3, beyond one dimension: Figs. 3 and 4.

* ``nakerst-fig3`` — GD, heavy ball and super-acceleration on eq. (15); the spurious
  2-cycles (detected by :mod:`dynsim.cycles`, Newton-refined, Floquet multipliers) mapped
  over σ × η.
* ``nakerst-fig4`` — the 51-parameter linear regression; the late, σ-independent regime
  explained mode by mode from the Hessian spectrum (:func:`dynsim.analysis.late_rate_check`).

All maps run in float64 (``jax.enable_x64`` inside the figure): these are cheap problems,
and several results are rates read off 10⁻¹⁰-small quantities.
"""
from __future__ import annotations

import math
import pathlib
import time

import jax
import jax.numpy as jnp
import numpy as np

import dynsim
from dynsim import analysis, cycles, landscapes, optim
from dynsim.engine import map_grid
from dynsim.figures import _io, register
from dynsim.metrics import MetricConfig

G = 0.9  # Nakerst's momentum ("g = 0.9 ... unless explicitly stated")
THETA0_FIG3 = (-1.0, -3.8)


# --------------------------------------------------------------------------- nakerst-fig3


def _fig3_map(eta, sigma, steps_long, window, max_period, steps_short=180):
    L = landscapes.nakerst2d()
    M = jnp.asarray(landscapes.NAKERST2D_MINIMUM)
    th0 = jnp.asarray(THETA0_FIG3)

    def point(eta, sigma):
        tr = dynsim.simulate(optim.super_accelerated(eta, G, sigma), L, th0, steps_long)
        d = jnp.sqrt(jnp.sum((tr.theta - M) ** 2, -1))
        code, period = cycles.classify_orbit(tr.theta, M, max_period=max_period, window=window)
        return {"d180": d[steps_short], "d_end": d[-1], "code": code, "period": period}

    return map_grid(point, {"eta": eta, "sigma": sigma}, chunk_size=1024, desc="fig3 σ×η map")


@register("nakerst-fig3", "Nakerst Fig. 3: GD/HB/SA on eq. (15), spurious 2-cycles, σ×η attractor map", x64=True)
def nakerst_fig3(out: pathlib.Path, quick: bool = False) -> None:
    plt = _io.pyplot()
    t_start = time.perf_counter()
    L = landscapes.nakerst2d()
    M = np.asarray(landscapes.NAKERST2D_MINIMUM)
    th0 = jnp.asarray(THETA0_FIG3)
    eta, steps = 0.01, 180
    steps_long = 600 if quick else 5000
    sigmas = [0.0, 0.9, 2.0, 3.0, 4.0, 6.0, 7.0]
    window, max_period = 64, 8

    # ---- trajectories (paper panels a-e)
    gd = jax.jit(lambda: dynsim.simulate(optim.gd(eta), L, th0, steps_long).theta)
    runs = {"gd": np.asarray(gd())}
    sa = jax.jit(jax.vmap(lambda s: dynsim.simulate(optim.super_accelerated(eta, G, s), L, th0, steps_long).theta))
    for s, th in zip(sigmas, np.asarray(sa(jnp.asarray(sigmas)))):
        runs[f"σ={s:g}"] = th
    labels = list(runs)
    traj = {k: v[: steps + 1] for k, v in runs.items()}
    dist = {k: np.linalg.norm(v - M, axis=-1) for k, v in traj.items()}
    classify = jax.jit(lambda th: cycles.classify_orbit(th, M, max_period=max_period, window=window))
    codes, periods = (np.asarray(a) for a in classify(jnp.stack([jnp.asarray(runs[k]) for k in labels])))
    cls = {k: (cycles.CLASSES[int(c)], int(p)) for k, c, p in zip(labels, codes, periods)}

    # ---- the trapping cycles: Newton-refined, Floquet multipliers of the (θ, u) map
    cyc_rows = []
    for s in (7.0,) if quick else (6.0, 7.0):
        k = f"σ={s:g}"
        name, per = cls[k]
        if name != "cycle":
            continue
        th = runs[k]
        x0 = jnp.concatenate([jnp.asarray(th[-1]), jnp.asarray(th[-1] - th[-2])])
        step = jax.jit(cycles.state_map(optim.super_accelerated(eta, G, s), L.loss))
        x, res = cycles.refine_cycle(step, x0, per)
        mult = cycles.floquet_multipliers(step, x, per)
        pts = [np.asarray(x)]
        for _ in range(per - 1):
            pts.append(np.asarray(step(jnp.asarray(pts[-1]))))
        for i, p in enumerate(pts):
            cyc_rows.append(
                {
                    "sigma": s,
                    "period": per,
                    "point": i,
                    "theta1": p[0],
                    "theta2": p[1],
                    "u1": p[2],
                    "u2": p[3],
                    "distance": float(np.linalg.norm(p[:2] - M)),
                    "max_abs_multiplier": float(np.max(np.abs(mult))),
                    "newton_residual": float(res),
                }
            )

    # ---- σ × η attractor map
    if quick:
        sig_grid = np.linspace(0.0, 10.0, 6)
        eta_grid = 10.0 ** np.linspace(-3.0, -1.5, 4)
    else:
        sig_grid = np.round(np.linspace(0.0, 10.0, 201), 10)
        eta_grid = 10.0 ** np.linspace(-3.0, -1.5, 46)  # η = 0.01 is row 30
    mp = _fig3_map(eta_grid[:, None], sig_grid[None, :], steps_long, window, max_period)
    # the distance map itself through the sweep engine; the simulate run above supplies the tails
    ds = dynsim.sweep("super_accelerated", "nakerst2d", {"learning_rate": eta_grid, "sigma": sig_grid, "momentum": G},
                      steps=steps, options=MetricConfig(every=20), metrics=["final_distance", "diverged"], theta0=list(THETA0_FIG3),
                      dtype="float64", progress=False)
    d180_sweep = np.asarray(ds.final_distance.values, float)
    both = np.isfinite(d180_sweep) & np.isfinite(mp["d180"])
    diff = np.abs(d180_sweep[both] - mp["d180"][both])
    sweep_vs_sim = float(np.max(diff)) if both.any() else float("nan")
    sweep_vs_sim_med = float(np.median(diff)) if both.any() else float("nan")
    worst_code = cycles.CLASSES[int(mp["code"][both][np.argmax(diff)])] if both.any() else "-"
    nan_agree = bool(np.all(np.isfinite(d180_sweep) == (np.isfinite(mp["d180"]) & (mp["d180"] < 1e6))))
    mp["d180"] = np.where(np.asarray(ds.diverged.values), np.nan, d180_sweep)
    hess_min, hess_max = (float(v) for v in np.linalg.eigvalsh(np.asarray(jax.jit(jax.hessian(L.loss))(jnp.asarray(M)))))
    flip = lambda e: (1 + G) / (hess_max * e) - 0.5  # Jury χ(−1) = 0 of the stiffest mode
    i01 = int(np.argmin(np.abs(np.log10(eta_grid) + 2)))
    row_cycle = np.flatnonzero(mp["code"][i01] == 2)
    onset = float(sig_grid[row_cycle[0]]) if row_cycle.size else float("nan")
    S, E = np.meshgrid(sig_grid, eta_grid)
    dsig = sig_grid[1] - sig_grid[0]
    below = S < flip(E) - dsig
    above = S > flip(E) + dsig
    is_cyc = mp["code"] == 2
    n_cyc_below = int(np.sum(is_cyc & below))
    n_cyc = int(np.sum(is_cyc))
    live_above = above & (mp["code"] != 3)
    frac_above_trapped = float(np.mean(mp["code"][live_above] != 0)) if live_above.any() else float("nan")

    # ---- plot
    fig = plt.figure(figsize=(17, 15))
    gs = fig.add_gridspec(3, 3, hspace=0.32, wspace=0.25)
    pairs = [("gd", "σ=0"), ("σ=0.9", "σ=2"), ("σ=4", "σ=7")]
    allpts = np.concatenate([traj[k] for k in labels])
    xlim = (min(-3.0, allpts[:, 0].min() - 0.3), max(4.0, allpts[:, 0].max() + 0.3))
    ylim = (min(-5.0, allpts[:, 1].min() - 0.3), max(5.0, allpts[:, 1].max() + 0.3))
    for j, (ka, kb) in enumerate(pairs):
        ax = fig.add_subplot(gs[0, j])
        _io.loss_contour(ax, L.loss, xlim, ylim, n=80 if quick else 240)
        ta, tb = traj[ka], traj[kb]
        ax.plot(ta[:, 0], ta[:, 1], "-o", color="tab:red", mfc="none", ms=6, lw=0.8, label=ka + (" (heavy ball)" if ka == "σ=0" else ""))
        ax.plot(tb[:, 0], tb[:, 1], "-*", color="tab:blue", ms=4, lw=0.8, label=kb + (" (heavy ball)" if kb == "σ=0" else ""))
        ax.plot(*M, "o", color="green", ms=12, mfc="none", mew=2)
        ax.plot(*THETA0_FIG3, "ks", ms=5)
        ax.set(xlim=xlim, ylim=ylim, xlabel="θ₁", ylabel="θ₂", title=f"({'abc'[j]}) first {steps} steps, η={eta}")
        ax.legend(loc="lower right", fontsize=8)
    ax = fig.add_subplot(gs[1, 0])
    for k in ("gd", "σ=0", "σ=0.9", "σ=2"):
        ax.semilogy(dist[k], label=k)
    ax.set(xlabel="step i", ylabel="‖θ − θ*‖", title="(d) distance to the minimum")
    ax.legend(fontsize=8)
    ax = fig.add_subplot(gs[1, 1])
    for k in ("σ=2", "σ=3", "σ=4", "σ=6", "σ=7"):
        ax.semilogy(dist[k], label=k)
        ax.annotate(k, (steps, dist[k][-1]), fontsize=8, xytext=(2, 0), textcoords="offset points")
    ax.set(xlabel="step i", ylabel="‖θ − θ*‖", title="(e) larger σ; inset: σ = 6")
    ax.legend(fontsize=8, loc="lower left")
    ins = ax.inset_axes([0.58, 0.55, 0.38, 0.4])
    ins.plot(np.arange(100, steps + 1), dist["σ=6"][100:], color="tab:red", lw=0.8)
    ins.set_title("σ=6, steps 100-180", fontsize=7)
    ins.tick_params(labelsize=6)
    ax = fig.add_subplot(gs[1, 2])
    colors = {0: "tab:green", 1: "tab:olive", 2: "tab:red", 3: "0.4", 4: "tab:orange"}
    row = mp["d180"][i01]
    for c in np.unique(mp["code"][i01]):
        sel = mp["code"][i01] == c
        ax.semilogy(sig_grid[sel], np.where(np.isfinite(row[sel]), row[sel], np.nan), ".", color=colors[int(c)],
                    label=f"long run: {cycles.CLASSES[int(c)]}")
    ax.axvline(flip(eta_grid[i01]), color="k", ls="--", lw=0.8, label=f"flip edge of stiffest mode σ={flip(eta_grid[i01]):.2f}")
    ax.set(xlabel="σ", ylabel="‖θ₁₈₀ − θ*‖", title=f"(f) cut of the map at η = {eta_grid[i01]:.3g}")
    ax.legend(fontsize=7)
    ax = fig.add_subplot(gs[2, 0:2])
    d = np.where(np.isfinite(mp["d180"]) & (mp["d180"] < 1e6), mp["d180"], np.nan)
    pc = ax.pcolormesh(sig_grid, eta_grid, np.log10(d), shading="nearest", cmap="viridis", vmin=-4, vmax=1)
    fig.colorbar(pc, ax=ax, label="log₁₀ ‖θ₁₈₀ − θ*‖ (blank: diverged)")
    for per, mk in ((2, "x"), (4, "+"), (8, "1")):
        sel = (mp["code"] == 2) & (mp["period"] == per)
        if sel.any():
            ax.plot(S[sel], E[sel], mk, color="red", ms=3, mew=0.7, label=f"period-{per} attractor")
    sel = (mp["code"] == 2) & ~np.isin(mp["period"], (2, 4, 8))
    if sel.any():
        ax.plot(S[sel], E[sel], "^", color="red", ms=2, label="other period ≤ 8")
    sel = mp["code"] == 4
    if sel.any():
        ax.plot(S[sel], E[sel], ".", color="orange", ms=2, label="unsettled")
    sel = mp["code"] == 1
    if sel.any():
        ax.plot(S[sel], E[sel], "s", color="white", ms=2, label="fixed point ≠ θ*")
    ee = np.geomspace(eta_grid[0], eta_grid[-1], 200)
    ax.plot(flip(ee), ee, "w--", lw=1.2, label="σ_flip(η) = (1+g)/(k_max η) − ½")
    ax.axhline(eta, color="w", lw=0.5, ls=":")
    ax.set(yscale="log", xlim=(sig_grid[0], sig_grid[-1]), ylim=(eta_grid[0], eta_grid[-1]), xlabel="σ", ylabel="η",
           title=f"(g) distance after 180 steps; markers: attractor after {steps_long} steps (g = {G})")
    ax.legend(fontsize=7, loc="upper right", framealpha=0.6)
    ax = fig.add_subplot(gs[2, 2])
    zoom = [k for k in ("σ=6", "σ=7") if cls[k][0] == "cycle"]
    zpts = np.concatenate([runs[k][-200:] for k in zoom] + [M[None]]) if zoom else M[None]
    zx = (zpts[:, 0].min() - 0.25, zpts[:, 0].max() + 0.25)
    zy = (zpts[:, 1].min() - 0.25, zpts[:, 1].max() + 0.25)
    _io.loss_contour(ax, L.loss, zx, zy, n=80 if quick else 200)
    for k, c in zip(zoom, ("tab:orange", "tab:blue")):
        th = runs[k]
        ax.plot(th[steps:, 0], th[steps:, 1], "-", color=c, lw=0.3, alpha=0.5)
        rows = [r for r in cyc_rows if f"σ={r['sigma']:g}" == k]
        ax.plot([r["theta1"] for r in rows], [r["theta2"] for r in rows], "o", color=c, ms=7,
                label=f"{k}: period {cls[k][1]}, max|Floquet| = {rows[0]['max_abs_multiplier']:.3f}" if rows else k)
    ax.plot(*M, "o", color="green", ms=12, mfc="none", mew=2)
    ax.set(xlim=zx, ylim=zy, xlabel="θ₁", ylabel="θ₂", title="(h) the trapping cycles (Newton-refined)")
    ax.legend(fontsize=7)
    fig.suptitle("Nakerst et al. Fig. 3 — eq. (15), start (−1, −3.8), η = 0.01, g = 0.9", fontsize=13)
    fig.savefig(out / "nakerst-fig3.png", dpi=50 if quick else 110, bbox_inches="tight")
    plt.close(fig)

    # ---- data
    cols = {"step": np.arange(steps + 1)}
    for k in labels:
        tag = k.replace("σ=", "sigma")
        cols[f"{tag}_theta1"] = traj[k][:, 0]
        cols[f"{tag}_theta2"] = traj[k][:, 1]
        cols[f"{tag}_distance"] = dist[k]
    _io.save_csv(out / "nakerst-fig3.csv", cols)
    _io.save_csv(
        out / "nakerst-fig3-map.csv",
        {
            "eta": E.ravel(),
            "sigma": S.ravel(),
            "distance_step180": mp["d180"].ravel(),
            "distance_end": mp["d_end"].ravel(),
            "class": np.array([cycles.CLASSES[int(c)] for c in mp["code"].ravel()]),
            "period": mp["period"].ravel(),
        },
    )
    if cyc_rows:
        _io.save_csv(out / "nakerst-fig3-cycles.csv", {k: [r[k] for r in cyc_rows] for k in cyc_rows[0]})
    _io.save_config(
        out,
        "nakerst-fig3",
        {
            "landscape": "nakerst2d (eq. 15)",
            "minimum": M,
            "theta0": THETA0_FIG3,
            "learning_rate": eta,
            "momentum": G,
            "sigmas": sigmas,
            "steps_shown": steps,
            "steps_long": steps_long,
            "classify": {"window": window, "max_period": max_period, "atol": 1e-9, "rtol": 1e-7, "min_tol": 1e-3},
            "map_sigma": sig_grid,
            "map_eta": eta_grid,
            "hessian_at_minimum": [hess_min, hess_max],
            "quick": quick,
            "engine": "distance map: dynsim.sweep (final_distance, steps=180); attractor classes: vmapped "
                      "dynsim.simulate (tails needed by dynsim.cycles), chunks of 1024 points",
            "sweep_vs_simulate_max_abs_diff_d180": sweep_vs_sim,
            "runtime_s": time.perf_counter() - t_start,
        },
    )

    # ---- notes
    best = min((k for k in labels if k != "gd"), key=lambda k: dist[k][steps])
    dips = {k: _dips(dist[k]) for k in ("σ=2", "σ=3", "σ=4")}
    c7 = [r for r in cyc_rows if r["sigma"] == 7.0]
    c6 = [r for r in cyc_rows if r["sigma"] == 6.0]
    table = [
        ["GD, heavy ball reach θ* in 180 steps?", "no, both fall short",
         f"no: ‖θ₁₈₀−θ*‖ = {_io.fmt(dist['gd'][steps])} (gd), {_io.fmt(dist['σ=0'][steps])} (σ=0)"],
        ["Nesterov σ=0.9 vs σ=2", "σ=2 much faster",
         f"‖θ₁₈₀−θ*‖ = {_io.fmt(dist['σ=0.9'][steps])} (σ=0.9) vs {_io.fmt(dist['σ=2'][steps])} (σ=2)"],
        ["best σ", "≈ 3–4",
         f"{best}: ‖θ₁₈₀−θ*‖ = {_io.fmt(dist[best][steps])}; σ=3: {_io.fmt(dist['σ=3'][steps])}, σ=4: {_io.fmt(dist['σ=4'][steps])}"],
        ["σ=3 dip (overshoot), σ=4 none", "yes", f"dips with ≥50% rebound: σ=2: {dips['σ=2']}, σ=3: {dips['σ=3']}, σ=4: {dips['σ=4']}"],
        ["σ=7", "trapped, oscillates between two nearby points",
         f"{cls['σ=7'][0]}, period {cls['σ=7'][1]}"
         + (f": ({c7[0]['theta1']:.4f}, {c7[0]['theta2']:.4f}) ↔ ({c7[1]['theta1']:.4f}, {c7[1]['theta2']:.4f}), "
            f"distance {c7[0]['distance']:.3f}; largest Floquet multiplier modulus {c7[0]['max_abs_multiplier']:.4f} (< 1: attractor)" if len(c7) >= 2 else "")],
        ["σ=6", "approaching a similar situation (inset)",
         f"{cls['σ=6'][0]}, period {cls['σ=6'][1]}" + (f" after the 180 shown steps; distance {c6[0]['distance']:.3f}, "
                                                        f"largest Floquet modulus {c6[0]['max_abs_multiplier']:.4f}" if c6 else "")],
        ["trapping onset (η=0.01)", "σ ≳ 4 (§6)",
         f"first cycle on the map row η={eta_grid[i01]:.3g}: σ = {_io.fmt(onset)}; flip edge of the stiffest Hessian mode "
         f"(k_max = {hess_max:.3f}) σ_flip = (1+g)/(k_max η) − ½ = {flip(eta_grid[i01]):.3f}"],
        ["cycles below the flip edge (whole map)", "—",
         f"{n_cyc_below} of {n_cyc} cycle points lie more than one σ-step below σ_flip(η); "
         f"{100 * frac_above_trapped:.0f}% of non-diverged points beyond σ_flip end away from θ*"],
    ]
    body = f"""
Setup: eq. (15), start (−1, −3.8), η = {eta}, g = {G}, {steps} steps shown (as in the paper), then
continued to {steps_long} steps to classify the attractor (dynsim.cycles.classify_orbit on the last
{window + max_period} points: period ≤ {max_period}, tolerance 1e-9 + 1e-7·‖θ‖, "minimum" within 1e-3 of θ* =
({M[0]:.5f}, {M[1]:.5f})). Map: σ ∈ [{sig_grid[0]:g}, {sig_grid[-1]:g}] ({sig_grid.size} values) × η ∈
[{eta_grid[0]:.3g}, {eta_grid[-1]:.3g}] ({eta_grid.size} log-spaced), {steps_long} steps each, vmapped
dynsim.simulate for the attractor classes (the tails must be kept, which dynsim.sweep's online metrics do not do);
the distance-after-180-steps map comes from dynsim.sweep (metric final_distance) and agrees with the simulate runs
to {sweep_vs_sim_med:.1e} (median abs difference; worst {sweep_vs_sim:.1e}, at a point whose long run is
"{worst_code}" — round-off differences between the two engines' loops are amplified there; divergence flags
agree: {nan_agree}).

{_io.markdown_table(["quantity", "paper", "ours"], table)}

**Why the traps appear.** At θ* the Hessian of eq. (15) has eigenvalues {hess_min:.4f} and {hess_max:.3f}.
Linearised there, the super-accelerated map is the 1-D companion map of each mode, which loses
stability through an eigenvalue −1 (Jury χ(−1) = 0, a flip / period-doubling bifurcation) at
σ_flip = (1+g)/(k_max η) − ½ = {flip(eta):.3f} for η = {eta}. Beyond it the minimum itself is
unstable and the orbit settles on the period-2 attractor born there — the "two nearby points" of
the paper. The white dashed line in panel (g) is σ_flip(η); the detected 2-cycles sit on and beyond
it, which is the quantitative version of the paper's "σ ≳ 4". Orange points (unsettled: no period
≤ {max_period}) sit between the cycle band and the diverged region at larger η, consistent with the
longer periods / irregular orbits that follow period doubling.

Runtime: {time.perf_counter() - t_start:.1f} s ({'quick' if quick else 'full'} run, CPU).
"""
    _io.save_notes(out, "nakerst-fig3: eq. (15) — super-acceleration and its trapping attractors", body)


def _dips(d, rebound=1.5, start=10):
    """Local minima of a distance curve followed by a rise of ``rebound``× (overshoots)."""
    d = np.asarray(d)
    n = 0
    for t in range(max(start, 1), len(d) - 1):
        if d[t] < d[t - 1] and d[t] <= d[t + 1] and np.max(d[t:]) > rebound * d[t]:
            n += 1
    return n


# --------------------------------------------------------------------------- nakerst-fig4

FIG4_METHODS = (("gd", 0.0, 0.0), ("σ=0", G, 0.0), ("σ=0.9", G, 0.9), ("σ=2", G, 2.0), ("σ=4", G, 4.0), ("σ=8", G, 8.0))


def fig4_runs(steps: int, eta: float = 0.005, methods=FIG4_METHODS):
    """Loss and exact excess loss ``½δᵀHδ`` of each method on :func:`landscapes.linear_regression`.

    GD is the map with ``g = σ = 0``. Returns ``(loss, excess)`` of shape
    ``(len(methods), steps + 1)`` (float64 under ``jax.enable_x64``).
    """
    L = landscapes.linear_regression()
    th0 = jnp.full(51, 0.2)
    theta_star = L.minimum
    H = jax.hessian(L.loss)(theta_star)  # exact: the loss is quadratic

    def one(g, s):
        tr = dynsim.simulate(optim.super_accelerated(eta, g, s), L, th0, steps)
        d = tr.theta - theta_star
        return tr.loss, 0.5 * jnp.einsum("ti,ij,tj->t", d, H, d)

    gs = jnp.asarray([m[1] for m in methods])
    ss = jnp.asarray([m[2] for m in methods])
    loss, exc = jax.jit(jax.vmap(one))(gs, ss)
    return np.asarray(loss), np.asarray(exc)


@register("nakerst-fig4", "Nakerst Fig. 4: 51-parameter linear regression; late σ-independent regime from the Hessian spectrum", x64=True)
def nakerst_fig4(out: pathlib.Path, quick: bool = False) -> None:
    plt = _io.pyplot()
    t_start = time.perf_counter()
    eta = 0.005
    steps = 3000 if quick else 30000
    L = landscapes.linear_regression()
    eig = np.asarray(L.hessian_eigenvalues)
    L_star = float(L.loss(L.minimum))
    loss, exc = fig4_runs(steps, eta)
    labels = [m[0] for m in FIG4_METHODS]
    thr = float(analysis.k_eta_sigma_star_zero(G))

    checks = []
    for (lab, g, s), e in zip(FIG4_METHODS, exc):
        meas, pred, t_a = analysis.late_rate_check(e, eig, eta, g, s)
        rho_top = float(analysis.spectral_radius(eig[-1] * eta, g, s))
        checks.append({"method": lab, "momentum": g, "sigma": s, "measured": meas, "predicted": pred,
                       "rel_err": abs(meas / pred - 1), "t_a": t_a, "rho_top": rho_top,
                       "rho_worst": math.exp(pred / 2)})
    # initial minimisation: the step after which the loss stays below a level
    def first_below(x, lev):
        i = np.flatnonzero(x > lev)
        return -1 if i.size and i[-1] == len(x) - 1 else (int(i[-1]) + 1 if i.size else 0)
    levels = (1e-1, 1e-3, 2e-4)
    reach = {lab: [first_below(curve, lev) for lev in levels] for lab, curve in zip(labels, loss)}

    # ---- plot
    fig, axs = plt.subplots(2, 2, figsize=(14, 11))
    t = np.arange(steps + 1)
    ax = axs[0, 0]
    for lab, curve in zip(labels, loss):
        ax.loglog(t[1:], curve[1:], label=lab)
    ax.axhline(L_star, color="k", lw=0.6, ls=":", label=f"L* = {L_star:.3g}")
    ax.set(xlabel="step i", ylabel="L(θ)", title=f"(a) loss, η = {eta}, θ₀ = 0.2 (inset: excess loss, late times)")
    ax.legend(fontsize=8, loc="lower left")
    ins = ax.inset_axes([0.55, 0.55, 0.42, 0.42])
    t0 = steps // 3
    for e, c in zip(exc, checks):
        ins.semilogy(t[t0:], e[t0:], lw=1)
        ins.semilogy(t[t0:], e[-1] * np.exp(c["predicted"] * (t[t0:] - steps)), "k:", lw=0.6)
    ins.set_title("L − L* (dotted: ρ_worst^{2t})", fontsize=7)
    ins.tick_params(labelsize=6)

    ax = axs[0, 1]
    ke = np.geomspace(1e-5, 1.0, 400)
    ax.semilogx(ke, np.asarray(analysis.critical_sigma(ke, G)), "k", label="exact σ*(kη), g = 0.9")
    ax.axvspan(1e-5, thr, color="0.9", label=f"kη < (1−√g)² = {thr:.5f}: σ* < 0")
    for (lab, _, s) in FIG4_METHODS[1:]:
        ax.axhline(s, lw=0.6, ls="--", color="0.5")
        ax.text(1.2e-5, s + 0.15, lab, fontsize=7)
    ax.plot(eig * eta, np.asarray(analysis.critical_sigma(eig * eta, G)), "o", color="tab:red", ms=4,
            label=f"the {eig.size} Hessian modes kᵢη")
    for x in eig * eta:
        ax.axvline(x, ymin=0, ymax=0.03, color="tab:red", lw=0.6)
    ax.set_yscale("symlog", linthresh=10)
    ax.set(ylim=(-3e3, 20), xlabel="kᵢ η", ylabel="σ*  (symlog)", title="(b) the modes on the 1-D σ* curve")
    ax.legend(fontsize=8, loc="upper left")

    ax = axs[1, 0]
    styles = ["k-", "C0-", "C1--", "C2-.", "C3:", "C4-"]
    for (lab, g, s), st in zip(FIG4_METHODS, styles):
        r = np.asarray(analysis.spectral_radius(ke, g, s))
        ax.loglog(ke, -np.log(np.where((r < 1) & (r > 0), r, np.nan)), st, lw=1, label=lab)
    for x in eig * eta:
        ax.axvline(x, ymin=0, ymax=0.03, color="tab:red", lw=0.6)
    ax.axvline(thr, color="0.5", lw=0.6, ls=":")
    ax.set(xlabel="kη", ylabel="−ln ρ(kη, g, σ)  (rate per step)", title="(c) per-mode rate: σ matters only for stiff modes")
    ax.legend(fontsize=8)

    ax = axs[1, 1]
    x = np.arange(len(checks))
    ax.bar(x - 0.2, [-c["measured"] for c in checks], 0.4, label="measured −d ln(L−L*)/dt (late)")
    ax.bar(x + 0.2, [-c["predicted"] for c in checks], 0.4, label="−2 ln spectral_radius_quadratic")
    ax.set_yscale("log")
    ax.set_xticks(x, [c["method"] for c in checks])
    for i, c in enumerate(checks):
        ax.text(i, -c["predicted"] * 0.5, f"rel. err\n{c['rel_err']:.1e}", ha="center", fontsize=7, color="w")
    ax.set(ylabel="late-time loss decay rate per step", title="(d) late rate vs worst-mode prediction (rel. error)")
    ax.legend(fontsize=8, loc="upper left")
    fig.suptitle("Nakerst et al. Fig. 4 — 51-parameter linear regression (N_data = 1000)", fontsize=13)
    _io.save_figure(fig, out / "nakerst-fig4.png", dpi=50 if quick else 110)

    # ---- data
    stride = 1 if quick else 10
    cols = {"step": t[::stride]}
    for lab, curve, e in zip(labels, loss, exc):
        tag = lab.replace("σ=", "sigma")
        cols[f"{tag}_loss"] = curve[::stride]
        cols[f"{tag}_excess"] = e[::stride]
    _io.save_csv(out / "nakerst-fig4.csv", cols)
    _io.save_csv(out / "nakerst-fig4-rates.csv", {k: [c[k] for c in checks] for k in checks[0]})
    _io.save_csv(out / "nakerst-fig4-spectrum.csv", {"k": eig, "k_eta": eig * eta,
                                                     "sigma_star": np.asarray(analysis.critical_sigma(eig * eta, G))})
    _io.save_config(out, "nakerst-fig4", {
        "landscape": "linear_regression(n_features=50, n_data=1000, seed=0)", "learning_rate": eta,
        "theta0": 0.2, "methods": [{"label": m[0], "momentum": m[1], "sigma": m[2]} for m in FIG4_METHODS],
        "steps": steps, "csv_stride": stride, "quick": quick,
        "rate_fit": "least-squares slope of log(L−L*) from t_a (second mode down 1e-8 in loss) to the end",
        "engine": "vmapped dynsim.simulate", "runtime_s": time.perf_counter() - t_start})

    n_below = int(np.sum(eig * eta < thr))
    spread = (max(-c["measured"] for c in checks[1:]) / min(-c["measured"] for c in checks[1:]) - 1)
    rows = [[c["method"], _io.fmt(c["rho_top"], 4), "/".join(str(r) for r in reach[c["method"]]),
             f"{-c['measured']:.6e}", f"{-c['predicted']:.6e}", f"{c['rel_err']:.1e}", c["t_a"]] for c in checks]
    body = f"""
Setup: linear_regression() (N_f = 50, N_data = 1000, x ~ U(0,1), y = Σ(x/N_f)³), θ₀ = 0.2, η = {eta},
g = {G}, {steps} steps, float64. L − L* is computed exactly as ½δᵀHδ (δ = θ − θ*), so the late decay is
measurable far below L* = {L_star:.3g}.

| paper (§3.2) | ours |
|---|---|
| at late times all momentum curves follow one σ-independent path | late loss-decay rates of σ = 0…8 agree within {100 * spread:.2f}% (table below) |
| pure GD is slower than every momentum method at late times | GD late rate {-checks[0]['measured']:.4e}/step (predicted −2 ln(1 − k_min η) = {-checks[0]['predicted']:.4e}) vs ≈ {-checks[1]['measured']:.4e} with momentum: ≈ 1/(1−g) = 10× faster |
| initially σ = 0 is slower than GD, σ = 0.9 ≈ GD, σ ≳ 1 faster | stiffest mode k_max η = {eig[-1] * eta:.4f}: ρ = {checks[0]['rho_top']:.3f} (gd), {checks[1]['rho_top']:.3f} (σ=0 = √g), {checks[2]['rho_top']:.3f} (σ=0.9), {checks[3]['rho_top']:.3f} (σ=2), {checks[4]['rho_top']:.3f} (σ=4) |
| explanation: shallow modes with kη below ≈ 0.0027 (2.7e-3) are over-damped and σ barely matters | {n_below} of {eig.size} modes have kᵢη < (1−√g)² = {thr:.6f}; the slowest, k_min η = {eig[0] * eta:.3g}, sets the late rate |

Late-time check (loss ~ ρ^{{2t}}, ρ = dynsim.analysis.spectral_radius_quadratic(eigs, η, g, σ)); "steps until L stays
≤ 1e-1/1e-3/2e-4" shows the initial phase (−1: not within the run; "nan": the run is shorter than the
fit start t_a):

{_io.markdown_table(["method", "ρ stiffest mode", "steps until L ≤ 1e-1/1e-3/2e-4", "measured late rate", "−2 ln ρ_worst", "rel. err", "fit from step"], rows)}

Why: the loss is Σᵢ kᵢγᵢ²/2 over Hessian modes, each a 1-D problem of §2 with its own kᵢη. The σ-dependence
of a mode enters only through b = g − kᵢησ; for the slowest mode kη·σ ≤ {eig[0] * eta * 8:.1e} ≪ 1 − g, so
its (over-damped) rate ρ ≈ 1 − kη/(1 − g + kησ) is σ-independent to {100 * spread:.2f}%. A tiny residual σ-dependence
remains and is exactly the predicted one: larger σ is slightly *slower* late on (over-damped side of σ*).
The fast modes decide the early phase, where σ ≳ 1 helps (panel c). Which modes can profit at all is
decided by kᵢη against (1−√g)² — see quadratic-spectrum for the general statement.

Runtime: {time.perf_counter() - t_start:.1f} s ({'quick' if quick else 'full'} run, CPU).
"""
    _io.save_notes(out, "nakerst-fig4: 51-parameter linear regression", body)
