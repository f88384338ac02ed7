r"""Wu et al. (2021): SGD, momentum and NAG as feedback control systems — Figs. 2, 3, 5, Table 1.

* ``wu-fig2`` — SGD, first-order loop ``K₀r/(s+K₀r)``: step responses over r and the
  root locus (a single pole ``−K₀r``);
* ``wu-fig3`` — momentum ``K₀r/(μs² + s + K₀r)``: step responses and root loci over r
  (``μ = 0.9``) and over μ;
* ``wu-fig5`` — NAG, closed loop derived in :mod:`dynsim.control`, with the α that
  reproduces the paper's peak of 1.35 (``α ≈ 18.30``; for the paper's ``α < 1`` there
  is no overshoot at all);
* ``wu-table1`` — order, overshoot, settling times for the paper's parameters.

Parameters the paper states: ``K₀ = 100``; Fig. 3(a) ``μ = 0.9`` with the critical
``r = 0.00278`` (``K₀rμ = 0.25``), ``r = 0.001, 0.002`` monotone, ``r = 0.01, 0.1``
oscillating; §3.3 ``μ = 0.9, K₀ = 100, r = 0.1`` (momentum peak 1.6, NAG 1.35) and
``r = 0.05`` for the μ-sweep of Fig. 5(c). Not stated (our choice, in config.json):
the r-set of Fig. 2 (we reuse Fig. 3(a)'s), the μ-set ``0.01 … 0.9`` and ``r = 0.05``
for both μ-sweeps. All computations in float64 with the exact step responses.
"""
from __future__ import annotations

import math
import pathlib
from typing import Any

import jax
import numpy as np

from dynsim import control as C
from dynsim.figures import _io, register

K0 = 100.0
MU = 0.9
R_SET = (0.001, 0.002, 0.00278, 0.01, 0.1)
MU_SET = (0.01, 0.1, 0.3, 0.5, 0.9)
R_MU_SWEEP = 0.05
R_PEAK = 0.1  # §3.3 example: momentum peak 1.6, NAG peak 1.35
PAPER_NAG_PEAK = 1.35
COLORS = ("tab:blue", "tab:orange", "gold", "tab:green", "tab:red")


def _alpha_star():
    return C.nag_alpha_for_peak(PAPER_NAG_PEAK, K0, R_PEAK, MU)


def _responses(kind, t, sweep, values, **fixed):
    rows = []
    for v in values:
        kw = dict(fixed, **{sweep: v})
        num, den = C.closed_loop(kind, K0, **kw)
        y = np.asarray(C.step_response(num, den, t))
        info2 = C.step_info(t, y, sys=(num, den))
        info5 = C.step_info(t, y, settling_threshold=0.05, sys=(num, den))
        rows.append((v, y, info2, info5))
    return rows


def _step_panel(ax, t, rows, label, title, vlines=()):
    for (v, y, _, _), c in zip(rows, COLORS):
        ax.plot(t, y, color=c, lw=1.4, label=f"{label}={v:g}")
    ax.axhline(1.0, color="k", lw=0.6)
    for x, c, lab in vlines:
        ax.axvline(x, color=c, ls="--", lw=1.0, label=lab)
    _io.label(ax, "t (s)", "y(t)", title)


def _locus_panel(ax, kind, sweep, dense, marks, title, **fixed):
    _, p = C.root_locus(kind, sweep, dense, **fixed)
    p = np.asarray(p)
    for j in range(p.shape[-1]):
        ax.plot(p[:, j].real, p[:, j].imag, ".", ms=1.5, color="0.5")
    _, pm = C.root_locus(kind, sweep, np.asarray(marks, float), **fixed)
    pm = np.asarray(pm)
    for i, c in enumerate(COLORS[: len(marks)]):
        ax.plot(pm[i].real, pm[i].imag, "x", color=c, ms=7, mew=2, label=f"{sweep}={marks[i]:g}")
    ax.axvline(0, color="k", lw=0.6)
    ax.axhline(0, color="k", lw=0.6)
    _io.label(ax, "Re s", "Im s", title)
    return p


def _info_columns(rows, name):
    return {
        name: [v for v, *_ in rows],
        "regime": [i2.get("Regime") for _, _, i2, _ in rows],
        "damping_ratio": [i2["DampingRatio"] for _, _, i2, _ in rows],
        "natural_frequency": [i2["NaturalFrequency"] for _, _, i2, _ in rows],
        "overshoot_pct": [i2["Overshoot"] for _, _, i2, _ in rows],
        "peak": [i2["Peak"] for _, _, i2, _ in rows],
        "peak_time": [i2["PeakTime"] for _, _, i2, _ in rows],
        "rise_time": [i2["RiseTime"] for _, _, i2, _ in rows],
        "settling_time_2pct": [i2["SettlingTime"] for _, _, i2, _ in rows],
        "settling_time_5pct": [i5["SettlingTime"] for _, _, _, i5 in rows],
    }


def _save_curves(out, fname, t, rows, name):
    cols = {"t": t}
    cols.update({f"{name}={v:g}": y for v, y, *_ in rows})
    _io.save_csv(out / fname, cols)


# --------------------------------------------------------------------------- Fig. 2


@register("wu-fig2", "Wu Fig. 2: SGD as a first-order loop — step responses and root locus")
def fig2(out: pathlib.Path, quick: bool = False) -> None:
    plt = _io.pyplot()
    with jax.enable_x64(True):
        t = np.linspace(0, 50, 2001 if quick else 20001)
        rows = _responses("sgd", t, "r", R_SET)
        fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
        _step_panel(a, t, rows, "r", f"(a) SGD step response, K0={K0:g}")
        dense = np.geomspace(1e-4, 0.2, 400)
        _locus_panel(b, "sgd", "r", dense, R_SET, "(b) root locus: pole −K0·r (r ∈ [1e-4, 0.2])", K0=K0)
        b.set_xscale("symlog", linthresh=0.1)
        _io.save_figure(fig, out / "wu-fig2.png")
        _save_curves(out, "wu-fig2_step.csv", t, rows, "r")
        info = _info_columns(rows, "r")
        info["settling_time_5pct_wu"] = [3 / (K0 * r) for r in R_SET]
        _io.save_csv(out / "wu-fig2.csv", info)
        _io.save_config(out, "wu-fig2", {"K0": K0, "r": R_SET, "t_max": 50, "n_t": len(t), "quick": quick,
                                         "r_set_note": "not stated for Fig. 2; Fig. 3(a)'s r values reused"})
    table = _io.markdown_table(
        ["r", "paper t_s(5%) = 3/(K0 r)", "ours t_s(5%)", "ours t_s(2%)", "overshoot %"],
        [[r, 3 / (K0 * r), i5["SettlingTime"], i2["SettlingTime"], i2["Overshoot"]] for r, _, i2, i5 in rows],
    )
    _io.save_notes(out, "Wu et al. Fig. 2 — SGD as a first-order system", f"""
Closed loop (13): φ(s) = K0 r/(s + K0 r), y(t) = 1 − exp(−K0 r t): no overshoot, a single real
pole at −K0 r (root locus = the negative real axis as the gain K0 r grows).
The paper's r values for this figure are not given; we show Fig. 3(a)'s set at K0 = {K0:g}.

{table}

The paper's 5% settling time 3/(K0 r) rounds the exact ln 20/(K0 r) = 2.996/(K0 r); our grid
values agree with the exact one to the grid step. The slowest curve (r = 0.001) settles at ≈ 30 s,
as in the paper's statement that smaller r needs more time.
""")


# --------------------------------------------------------------------------- Fig. 3


@register("wu-fig3", "Wu Fig. 3: momentum as a second-order loop — step responses, root loci")
def fig3(out: pathlib.Path, quick: bool = False) -> None:
    plt = _io.pyplot()
    with jax.enable_x64(True):
        n = 2001 if quick else 20001
        ta = np.linspace(0, 50, n)
        tc = np.linspace(0, 20, n)
        rows_a = _responses("momentum", ta, "r", R_SET, mu=MU)
        rows_c = _responses("momentum", tc, "mu", MU_SET, r=R_MU_SWEEP)
        fig, ax = plt.subplots(2, 2, figsize=(11, 8))
        _step_panel(ax[0, 0], ta, rows_a, "r", f"(a) momentum, K0={K0:g}, μ={MU}",
                    vlines=[(6 * MU, "tab:blue", "t_s = 6μ (5%)"), (8 * MU, "tab:red", "t_s = 8μ (2%)")])
        ax[0, 0].set_xlim(0, 50)
        _locus_panel(ax[0, 1], "momentum", "r", np.geomspace(1e-4, 1.0, 600), R_SET,
                     "(b) root locus over r ∈ [1e-4, 1]", K0=K0, mu=MU)
        _step_panel(ax[1, 0], tc, rows_c, "μ", f"(c) momentum, K0={K0:g}, r={R_MU_SWEEP}")
        _locus_panel(ax[1, 1], "momentum", "mu", np.geomspace(1e-3, 0.99, 600), MU_SET,
                     f"(d) root locus over μ ∈ [1e-3, 0.99], r={R_MU_SWEEP}", K0=K0, r=R_MU_SWEEP)
        ax[1, 1].set_xscale("symlog", linthresh=1.0)
        _io.save_figure(fig, out / "wu-fig3.png")
        _save_curves(out, "wu-fig3a_step.csv", ta, rows_a, "r")
        _save_curves(out, "wu-fig3c_step.csv", tc, rows_c, "mu")
        ia, ic = _info_columns(rows_a, "r"), _info_columns(rows_c, "mu")
        _io.save_csv(out / "wu-fig3.csv", {
            "panel": ["a"] * len(R_SET) + ["c"] * len(MU_SET),
            "r": list(R_SET) + [R_MU_SWEEP] * len(MU_SET),
            "mu": [MU] * len(R_SET) + list(MU_SET),
            **{k: ia[k] + ic[k] for k in ia if k not in ("r", "mu")},
        })
        theory = [C.momentum_theory(K0, r, MU) for r in R_SET]
        _io.save_config(out, "wu-fig3", {"K0": K0, "mu_a": MU, "r_a": R_SET, "r_c": R_MU_SWEEP,
                                         "mu_c": MU_SET, "quick": quick,
                                         "unstated": "mu set and r for panels (c),(d) are our choice"})
    rows_tab = []
    for (r, _, i2, i5), th in zip(rows_a, theory):
        rows_tab.append([r, K0 * r * MU, i2["Regime"], i2["DampingRatio"], float(th["Overshoot"]),
                         i2["Overshoot"], 6 * MU, i5["SettlingTime"], 8 * MU, i2["SettlingTime"]])
    table = _io.markdown_table(
        ["r", "K0 r μ", "regime", "ξ", "overshoot % (eq. 31)", "ours overshoot %",
         "paper t_s 5% ≈ 6μ", "ours t_s 5%", "paper t_s 2% ≈ 8μ", "ours t_s 2%"], rows_tab)
    peak = rows_a[-1][2]["Peak"]
    _io.save_notes(out, "Wu et al. Fig. 3 — momentum as a second-order system", f"""
Closed loop (25): φ(s) = K0 r/(μ s² + s + K0 r), ωn = √(K0 r/μ), ξ = 1/√(4 K0 r μ).

{table}

* Critical damping at K0 r μ = 0.25: the paper's r = 0.00278 gives ξ = {rows_a[2][2]['DampingRatio']:.4f}
  (K0 r μ = 0.2502, just under-damped: overshoot {rows_a[2][2]['Overshoot']:.2g} %, invisible). r = 0.001, 0.002
  are over-damped (monotone), r = 0.01, 0.1 oscillate — as the paper says.
* Peak at r = 0.1: ours {peak:.4f} (= 1 + exp(−π/√35)); paper "reaches 1.6 … about 60 %". Agrees.
* The paper's settling-time lines 6μ (5%) and 8μ (2%) are the envelope estimates 3/(ξωn),
  4/(ξωn) = 6μ, 8μ, independent of r; they only describe under-damped curves, and the actual
  settling time (above) differs from them by the oscillation phase. The paper says momentum at
  r = 0.1 "takes about 10 s" to settle; we get {rows_a[-1][2]['SettlingTime']:.2f} s (2 %).
* Typos found in the paper while checking: eq. (30) second line should have 2μ, not 2K0 r, in
  the frequency; eq. (33) should read 1 − (1 + t/(2μ)) e^(−t/(2μ)) (T = 1/ωn = 2μ), not
  e^(−2μ t); Table 1's momentum ξ = 1/√(4K0rμ − 1) should be 1/√(4K0rμ) (Theorem 2).
* Panels (c),(d): the paper does not give r for the μ sweep; we use r = {R_MU_SWEEP} (the value it quotes
  for NAG's μ sweep). Small μ (K0 r μ < 0.25) is over-damped, μ = 0.9 overshoots strongly — as stated.
""")


# --------------------------------------------------------------------------- Fig. 5


@register("wu-fig5", "Wu Fig. 5: NAG as a second-order loop with a zero — step responses, root loci")
def fig5(out: pathlib.Path, quick: bool = False) -> None:
    plt = _io.pyplot()
    with jax.enable_x64(True):
        alpha = _alpha_star()
        n = 2001 if quick else 20001
        ta = np.linspace(0, 30, n)
        tc = np.linspace(0, 4, n)
        rows_a = _responses("nag", ta, "r", R_SET, mu=MU, alpha=alpha)
        rows_c = _responses("nag", tc, "mu", MU_SET, r=R_MU_SWEEP, alpha=alpha)
        t_cmp = np.linspace(0, 12, n)
        mom = _responses("momentum", t_cmp, "r", (R_PEAK,), mu=MU)[0]
        nag = _responses("nag", t_cmp, "r", (R_PEAK,), mu=MU, alpha=alpha)[0]
        small_alpha = [_responses("nag", t_cmp, "r", (R_PEAK,), mu=MU, alpha=a)[0] for a in (0.5, 1.0)]
        fig, ax = plt.subplots(2, 3, figsize=(16, 8))
        _step_panel(ax[0, 0], ta, rows_a, "r", f"(a) NAG, K0={K0:g}, μ={MU}, α={alpha:.2f}")
        _locus_panel(ax[0, 1], "nag", "r", np.geomspace(1e-4, 1.0, 600), R_SET,
                     f"(b) root locus over r, α={alpha:.2f}", K0=K0, mu=MU, alpha=alpha)
        ax[0, 1].set_xscale("symlog", linthresh=1.0)
        _step_panel(ax[1, 0], tc, rows_c, "μ", f"(c) NAG, K0={K0:g}, r={R_MU_SWEEP}, α={alpha:.2f}")
        _locus_panel(ax[1, 1], "nag", "mu", np.geomspace(1e-3, 0.99, 600), MU_SET,
                     f"(d) root locus over μ, r={R_MU_SWEEP}, α={alpha:.2f}", K0=K0, r=R_MU_SWEEP, alpha=alpha)
        ax[1, 1].set_xscale("symlog", linthresh=1.0)
        e = ax[0, 2]
        e.plot(t_cmp, mom[1], color="tab:red", label=f"momentum (peak {mom[2]['Peak']:.3f})")
        e.plot(t_cmp, nag[1], color="tab:blue", label=f"NAG α={alpha:.2f} (peak {nag[2]['Peak']:.3f})")
        for (_, y, i2, _), a, st in zip(small_alpha, (0.5, 1.0), (":", "--")):
            e.plot(t_cmp, y, color="tab:green", ls=st, label=f"NAG α={a:g} (peak {i2['Peak']:.3f})")
        e.axhline(1.0, color="k", lw=0.6)
        e.axhline(PAPER_NAG_PEAK, color="tab:blue", lw=0.6, ls="--")
        e.axhline(1.6, color="tab:red", lw=0.6, ls="--")
        e.set_xlim(0, 12)
        e.set_title(f"(e) μ={MU}, K0={K0:g}, r={R_PEAK}: paper peaks 1.6 / 1.35 (dashed)", fontsize=10)
        e.set_xlabel("t (s)")
        e.legend(fontsize=7)
        alphas = np.geomspace(0.05, 200, 60 if quick else 200)
        peaks = []
        for a in alphas:
            num, den = C.closed_loop("nag", K0, R_PEAK, MU, float(a))
            decay = float(-np.max(np.real(np.asarray(C.poles(den)))))
            peaks.append(C.step_peak(num, den, t_max=20 / decay, n=4001)[0])
        f = ax[1, 2]
        f.semilogx(alphas, peaks, color="tab:blue")
        f.axhline(PAPER_NAG_PEAK, color="k", ls="--", lw=0.8, label="paper: 1.35")
        f.axvline(alpha, color="tab:blue", ls=":", label=f"α* = {alpha:.3f}")
        f.axvline(1.0, color="tab:green", ls=":", label="α = 1 (NAG ≡ SGD)")
        _io.label(f, "α", "peak of the step response", f"(f) NAG peak vs α (μ={MU}, K0={K0:g}, r={R_PEAK})")
        _io.save_figure(fig, out / "wu-fig5.png")
        _save_curves(out, "wu-fig5a_step.csv", ta, rows_a, "r")
        _save_curves(out, "wu-fig5c_step.csv", tc, rows_c, "mu")
        _io.save_csv(out / "wu-fig5_peak_vs_alpha.csv", {"alpha": alphas, "peak": peaks})
        ia, ic = _info_columns(rows_a, "r"), _info_columns(rows_c, "mu")
        _io.save_csv(out / "wu-fig5.csv", {
            "panel": ["a"] * len(R_SET) + ["c"] * len(MU_SET),
            "r": list(R_SET) + [R_MU_SWEEP] * len(MU_SET),
            "mu": [MU] * len(R_SET) + list(MU_SET),
            **{k: ia[k] + ic[k] for k in ia if k not in ("r", "mu")},
        })
        _io.save_config(out, "wu-fig5", {"K0": K0, "mu": MU, "alpha": alpha, "alpha_rule":
                                         "solves peak = 1.35 at K0=100, r=0.1, mu=0.9",
                                         "r_a": R_SET, "r_c": R_MU_SWEEP, "mu_c": MU_SET, "quick": quick})
    c05 = next(x for x in rows_c if x[0] == 0.9)
    table = _io.markdown_table(["quantity", "paper", "ours"], [
        ["momentum peak (μ=0.9, K0=100, r=0.1)", "1.6", f"{mom[2]['Peak']:.4f}"],
        ["momentum settling time", "about 10 s", f"{mom[2]['SettlingTime']:.2f} s (2%), {mom[3]['SettlingTime']:.2f} s (5%)"],
        ["NAG peak, same parameters", "1.35", f"{nag[2]['Peak']:.4f} at α = {alpha:.3f} (solved)"],
        ["NAG peak for α < 1 (paper's Remark 3)", "—", "1 (no overshoot for any α ≤ 1)"],
        ["NAG settling time", "less than 3 s", f"{nag[2]['SettlingTime']:.2f} s (2%)"],
        ["NAG peak time, μ=0.9, r=0.05", "less than 1.5 s", f"{c05[2]['PeakTime']:.3f} s"],
        ["NAG at α = 0.5: peak / settling (2%)", "—", f"{small_alpha[0][2]['Peak']:.4f} / {small_alpha[0][2]['SettlingTime']:.2f} s"],
    ])
    _io.save_notes(out, "Wu et al. Fig. 5 — NAG as a second-order system with a zero", f"""
Closed loop, derived (the paper's (44) is garbled; (43) is right once K1 = K0 α):
φ(s) = (K0 r μ s + K0 α r)/(μ s² + (1 + K0 r μ) s + K0 α r), zero at −α/μ,
ξ = (1 + K0 r μ)/(2√(K0 α r μ)).

{table}

**Which α gives the paper's NAG peak of 1.35?** None with the paper's own constraint α < 1:
the numerator's zero −α/μ satisfies den(−α/μ) = α(α − 1)/μ < 0, so it lies between the two
(real) poles and the step response is monotone (panel (f), green). At α = 1 the zero cancels
the pole −1/μ and NAG is exactly SGD. The peak grows monotonically for α > 1 and equals 1.35 at
α = {alpha:.4f}; we use that value for all NAG panels. The paper's description of Fig. 5(b)
("most eigenroots have imaginary parts") also needs α > 1 — for α ≤ 1 the NAG poles are always
real — so its figure was evidently drawn with a large α.

The panel-(a)/(c) parameter sets follow Fig. 3 (see config.json); the paper does not list them.
""")


# --------------------------------------------------------------------------- Table 1


@register("wu-table1", "Wu Table 1: order, overshoot and settling time of SGD, momentum, NAG")
def table1(out: pathlib.Path, quick: bool = False) -> None:
    plt = _io.pyplot()
    with jax.enable_x64(True):
        alpha = _alpha_star()
        t = np.linspace(0, 60, 6001 if quick else 60001)
        cases = [
            ("SGD", "sgd", {}, "1", "No", "Long", "—"),
            ("SGD momentum", "momentum", {"mu": MU}, "2", "Depend on ξ = 1/√(4K0rμ − 1)", "Middle-long",
             1 / math.sqrt(4 * K0 * R_PEAK * MU - 1)),
            (f"NAG (α = {alpha:.3f}, peak 1.35)", "nag", {"mu": MU, "alpha": alpha}, "2",
             "Depend on ξ = (μK0rα + 1)/(2√(μK0rα))", "Middle-short",
             (MU * K0 * R_PEAK * alpha + 1) / (2 * math.sqrt(MU * K0 * R_PEAK * alpha))),
            ("NAG (α = 0.5)", "nag", {"mu": MU, "alpha": 0.5}, "2",
             "Depend on ξ = (μK0rα + 1)/(2√(μK0rα))", "Middle-short",
             (MU * K0 * R_PEAK * 0.5 + 1) / (2 * math.sqrt(MU * K0 * R_PEAK * 0.5))),
        ]
        rows: list[list[Any]] = []
        csv: dict[str, list[Any]] = {k: [] for k in (
            "model", "order", "zeta", "zeta_paper_formula", "overshoot_pct", "peak", "peak_time",
            "settling_time_2pct", "settling_time_5pct", "rise_time", "regime")}
        fig, axp = plt.subplots(figsize=(7, 4))
        for name, kind, kw, p_order, p_over, p_settle, xi_paper in cases:
            num, den = C.closed_loop(kind, K0, R_PEAK, **kw)
            y = np.asarray(C.step_response(num, den, t))
            i2 = C.step_info(t, y, sys=(num, den))
            i5 = C.step_info(t, y, settling_threshold=0.05, sys=(num, den))
            axp.plot(t, y, label=name)
            rows.append([name, p_order, i2["Order"], p_over, f"{i2['Overshoot']:.2f} %",
                         xi_paper if isinstance(xi_paper, str) else f"{xi_paper:.4f}",
                         f"{i2['DampingRatio']:.4f}" if kind != "sgd" else "— (1st order)",
                         p_settle, f"{i2['SettlingTime']:.3f} / {i5['SettlingTime']:.3f}"])
            for k, v in (("model", name), ("order", i2["Order"]),
                         ("zeta", i2["DampingRatio"] if kind != "sgd" else math.nan),
                         ("zeta_paper_formula", xi_paper if not isinstance(xi_paper, str) else math.nan),
                         ("overshoot_pct", i2["Overshoot"]), ("peak", i2["Peak"]),
                         ("peak_time", i2["PeakTime"] if i2["Overshoot"] > 0 else math.nan),
                         ("settling_time_2pct", i2["SettlingTime"]), ("settling_time_5pct", i5["SettlingTime"]),
                         ("rise_time", i2["RiseTime"]), ("regime", i2["Regime"])):
                csv[k].append(v)
        axp.axhline(1.0, color="k", lw=0.6)
        axp.set_xscale("symlog", linthresh=1.0)
        axp.set_xlim(0, 60)
        _io.label(axp, "t (s)", "y(t)", f"Table 1 systems: K0={K0:g}, r={R_PEAK}, μ={MU}", legend=8)
        _io.save_figure(fig, out / "wu-table1.png")
        _io.save_csv(out / "wu-table1.csv", csv)
        # settling time (2%) of the three loops at the same r, over Fig. 3(a)'s r values
        ts_rows = []
        for r in R_SET:
            row = [r]
            for kind, kw in (("sgd", {}), ("momentum", {"mu": MU}), ("nag", {"mu": MU, "alpha": alpha}),
                             ("nag", {"mu": MU, "alpha": 0.5})):
                num, den = C.closed_loop(kind, K0, r, **kw)
                decay = float(-np.max(np.real(np.asarray(C.poles(den)))))
                tt = np.linspace(0, 12 / decay, 4001 if quick else 40001)
                row.append(C.step_info(tt, C.step_response(num, den, tt), sys=(num, den))["SettlingTime"])
            ts_rows.append(row)
        _io.save_csv(out / "wu-table1_settling_vs_r.csv",
                     {k: [row[i] for row in ts_rows] for i, k in enumerate(
                         ("r", "sgd", "momentum", "nag_alpha_star", "nag_alpha_0.5"))})
        _io.save_config(out, "wu-table1", {"K0": K0, "r": R_PEAK, "mu": MU, "alpha_star": alpha,
                                           "alpha_cifar_table3": 0.5, "t_max": 60, "quick": quick})
    ts_table = _io.markdown_table(["r", "SGD", "momentum", f"NAG α={alpha:.2f}", "NAG α=0.5"], ts_rows)
    table = _io.markdown_table(
        ["model", "paper order", "ours order", "paper overshoot", "ours overshoot", "paper ξ formula",
         "ours ξ (poles)", "paper settling", "ours t_s 2% / 5% (s)"], rows)
    _io.save_notes(out, "Wu et al. Table 1 — step-signal response of SGD, momentum and NAG", f"""
Parameters: K0 = {K0:g}, r = {R_PEAK}, μ = {MU} (the paper's §3.3 example); NAG with the α that
reproduces the paper's peak 1.35 (α = {alpha:.4f}) and with α = 0.5 (its CIFAR Table 3 value).

{table}

* Orders agree. The qualitative settling ranking (SGD long, momentum middle-long, NAG
  middle-short) is not a property of the transfer functions. 2 % settling times (s) of the three
  loops at the same K0 = {K0:g}, r (μ = {MU}):

{ts_table}

  Momentum (SGD in series with the lag 1/(μs + 1)) beats SGD only near critical damping
  (r ≤ 0.00278 here); for r ≥ 0.01 SGD settles faster. NAG is fastest only with the large α that
  reproduces the paper's 1.35 peak; with α = 0.5 (< 1, as the paper requires) it is the slowest.
* Table 1's ξ formulas are wrong: momentum's should be 1/√(4K0rμ) (Theorem 2; the table writes
  the overshoot exponent's √(4K0rμ − 1)); NAG's should be (1 + K0rμ)/(2√(K0αrμ)) — the table
  puts α in the numerator (μK0rα + 1). The "paper ξ formula" column evaluates the printed
  formulas.
* NAG's ξ describes the poles only; the zero at −α/μ adds overshoot (α > 1) or removes it
  (α < 1: monotone, see wu-fig5).
""")
