"""Tests of dynsim.control against python-control, scipy and numpy, and Wu et al.'s numbers."""
import jax

jax.config.update("jax_enable_x64", True)  # also set by tests/conftest.py; harmless duplicate

import math

import jax.numpy as jnp
import numpy as np
import pytest
from scipy import signal

from dynsim import control as C

ct = pytest.importorskip("control")


def _random_systems(n=12, seed=0):
    """Stable closed loops of all three kinds, seeded."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        kind = C.KINDS[i % 3]
        kw = dict(K0=float(rng.uniform(10, 200)), r=float(rng.uniform(2e-3, 0.1)))
        if kind != "sgd":
            kw["mu"] = float(rng.uniform(0.1, 0.95))
        if kind == "nag":
            kw["alpha"] = float(rng.choice([rng.uniform(0.1, 1.0), rng.uniform(1.0, 20.0)]))
        out.append((kind, kw))
    return out


def _grid(num, den, n=40001):
    """Time grid long enough to settle: 12 slowest time constants."""
    decay = float(-np.max(np.real(np.asarray(C.poles(den)))))
    return np.linspace(0.0, 12.0 / decay, n)


def _assert_same_roots(a, b, tol=1e-9):
    """Equal as multisets (order-free; robust to conjugate pairs with equal real parts)."""
    a, b = np.asarray(a, complex).ravel(), list(np.asarray(b, complex).ravel())
    assert len(a) == len(b)
    for z in a:
        k = int(np.argmin([abs(z - w) for w in b]))
        assert abs(z - b[k]) <= tol * max(1.0, abs(z)), (a, b)
        b.pop(k)


def _norm(num, den):
    num, den = np.trim_zeros(np.asarray(num, float), "f"), np.asarray(den, float)
    return num / den[0], den / den[0]


# --------------------------------------------------------------------------- transfer functions


def test_open_and_closed_loops_match_paper_and_python_control():
    K0, r, mu, alpha = 100.0, 0.1, 0.9, 0.5
    num, den = C.sgd_open_loop(K0, r)
    assert np.asarray(num).tolist() == pytest.approx([10.0]) and np.asarray(den).tolist() == [1.0, 0.0]
    num, den = C.momentum_open_loop(K0, r, mu)
    assert np.asarray(den).tolist() == pytest.approx([0.9, 1.0, 0.0])
    num, den = C.nag_open_loop(K0, r, mu, alpha)
    assert np.asarray(num).tolist() == pytest.approx([9.0, 5.0])
    # closed loops, eqs. (13), (25) and the derived NAG loop
    expected = {
        "sgd": ([10.0], [1.0, 10.0]),
        "momentum": ([10.0], [0.9, 1.0, 10.0]),
        "nag": ([9.0, 5.0], [0.9, 10.0, 5.0]),
    }
    g_alt = lambda m: m / (1 - m)  # any g(μ) > 0
    for kind, (n_exp, d_exp) in expected.items():
        kw = dict(mu=mu, alpha=alpha) if kind == "nag" else dict(mu=mu) if kind == "momentum" else {}
        num, den = C.closed_loop(kind, K0, r, **kw)
        assert _norm(num, den)[0] == pytest.approx(_norm(n_exp, d_exp)[0])
        assert _norm(num, den)[1] == pytest.approx(_norm(n_exp, d_exp)[1])
        # python-control's feedback of the open loop
        on, od = C.open_loop(kind, K0, r, **kw, g=g_alt if kind != "sgd" else None)
        ref = ct.feedback(ct.tf(np.asarray(on), np.asarray(od)), 1)
        cn, cd = C.closed_loop(kind, K0, r, **kw, g=g_alt if kind != "sgd" else None)
        rn, rd = _norm(np.squeeze(ref.num[0][0]), np.squeeze(ref.den[0][0]))
        mn, md = _norm(cn, cd)
        np.testing.assert_allclose(mn, rn, rtol=1e-12)
        np.testing.assert_allclose(md, rd, rtol=1e-12)


def test_nag_closed_loop_reproduces_eq43_and_eq44_is_garbled():
    K0, r, mu, alpha = 100.0, 0.05, 0.9, 0.7
    K1 = K0 * alpha
    # paper (43): ((g/α)s + 1) / ((g/(K1 r))s² + ((K1 r g/α + 1)/(K1 r))s + 1)
    n43 = [mu / alpha, 1.0]
    d43 = [mu / (K1 * r), (K1 * r * mu / alpha + 1) / (K1 * r), 1.0]
    num, den = C.closed_loop("nag", K0, r, mu, alpha)
    np.testing.assert_allclose(_norm(num, den)[0], _norm(n43, d43)[0], rtol=1e-12)
    np.testing.assert_allclose(_norm(num, den)[1], _norm(n43, d43)[1], rtol=1e-12)
    assert float(C.dc_gain(num, den)) == pytest.approx(1.0)
    # (44) as printed: φ1 + φ2 has DC gain μ/α, not 1
    d1 = [alpha / (K0 * r), (K0 * r**2 * alpha + alpha) / (K0 * r * mu), alpha / mu]
    d2 = [alpha / (K1 * r), (K1 * r * mu + alpha) / (K1 * r * mu), alpha / mu]
    dc44 = 1 / d1[-1]  # φ2 = s/d2 vanishes at s = 0
    assert dc44 == pytest.approx(mu / alpha) and abs(dc44 - 1) > 0.1
    # ... while φ2's denominator is (43)'s, up to scale
    np.testing.assert_allclose(np.array(d2) / d2[-1], np.array(d43) / d43[-1], rtol=1e-12)
    # damping ratio: derived formula vs Table 1's (which misplaces α)
    xi = float(C.characteristics(num, den)["DampingRatio"])
    assert xi == pytest.approx(float(C.nag_damping_ratio(K0, r, mu, alpha)), rel=1e-12)
    table1 = (mu * K0 * r * alpha + 1) / (2 * math.sqrt(mu * K0 * r * alpha))
    assert abs(table1 - xi) > 0.05


# --------------------------------------------------------------------------- step responses


@pytest.mark.parametrize("kind,kw", _random_systems())
def test_step_response_exact_vs_expm_vs_python_control(kind, kw):
    num, den = C.closed_loop(kind, **kw)
    t = _grid(num, den, n=4001)
    y = np.asarray(C.step_response(num, den, t))
    ye = np.asarray(C.step_response_expm(num, den, t[::40]))
    _, yc = ct.step_response(ct.tf(np.asarray(num), np.asarray(den)), T=t)
    _, ys = signal.step(_norm(num, den), T=t)
    np.testing.assert_allclose(y[::40], ye, atol=1e-10)
    np.testing.assert_allclose(y, yc, atol=1e-10)
    np.testing.assert_allclose(y, ys, atol=1e-8)


def test_step_response_rk4_state_space():
    for kind, kw in [("sgd", dict(K0=100.0, r=0.01)), ("momentum", dict(K0=100.0, r=0.1, mu=0.9)),
                     ("nag", dict(K0=100.0, r=0.1, mu=0.9, alpha=18.3))]:
        num, den = C.closed_loop(kind, **kw)
        t, y = C.step_response_rk4(num, den, 1e-3, 10_000)
        np.testing.assert_allclose(y, C.step_response(num, den, t), atol=1e-9)


def test_step_response_is_vectorised_over_parameters():
    r = jnp.array([0.001, 0.002, 0.00278, 0.01, 0.1])
    num, den = C.closed_loop("momentum", 100.0, r, 0.9)
    assert num.shape == (5, 3) and den.shape == (5, 3)
    t = jnp.linspace(0, 30, 61)
    batch = C.step_response(num, den, t)
    assert batch.shape == (5, 61)
    for i in range(5):
        np.testing.assert_allclose(batch[i], C.step_response(num[i], den[i], t), rtol=1e-14)
    via_vmap = jax.vmap(lambda n, d: C.step_response_expm(n, d, t))(num, den)
    np.testing.assert_allclose(via_vmap, batch, atol=1e-10)


def test_step_response_is_differentiable():
    g = jax.grad(lambda rr: C.step_response(*C.closed_loop("momentum", 100.0, rr, 0.9), 1.0))(0.1)
    h = 1e-6
    f = lambda rr: float(C.step_response(*C.closed_loop("momentum", 100.0, rr, 0.9), 1.0))
    assert float(g) == pytest.approx((f(0.1 + h) - f(0.1 - h)) / (2 * h), rel=1e-6)
    # differentiable in the parameters
    dpeak = jax.grad(lambda rr: C.step_response(*C.closed_loop("momentum", 100.0, rr, 0.9), 1.0))(0.1)
    assert np.isfinite(float(dpeak))


@pytest.mark.parametrize("threshold", [0.02, 0.05])
@pytest.mark.parametrize("kind,kw", _random_systems(n=9, seed=1))
def test_step_info_matches_python_control(kind, kw, threshold):
    num, den = C.closed_loop(kind, **kw)
    t = _grid(num, den)
    dt = t[1] - t[0]
    y = np.asarray(C.step_response(num, den, t))
    ours = C.step_info(t, y, settling_threshold=threshold, sys=(num, den))
    ref = ct.step_info(ct.tf(np.asarray(num), np.asarray(den)), T=t, SettlingTimeThreshold=threshold)
    for key in ("RiseTime", "SettlingTime"):
        assert ours[key] == pytest.approx(ref[key], abs=1.01 * dt), key
    for key in ("Overshoot", "Peak", "SteadyStateValue", "SettlingMin", "SettlingMax", "Undershoot"):
        assert ours[key] == pytest.approx(ref[key], abs=1e-7), key
    if ref["Overshoot"] > 0.1:
        assert ours["PeakTime"] == pytest.approx(ref["PeakTime"], abs=1.01 * dt)
    # on identical data the two implementations agree exactly
    same = ct.step_info(y, T=t, SettlingTimeThreshold=threshold)
    ours_data = C.step_info(t, y, settling_threshold=threshold)
    for key, val in same.items():
        assert ours_data[key] == pytest.approx(val, rel=1e-12, abs=1e-12), key
    assert ours["Order"] == (1 if kind == "sgd" else 2)
    assert ours["Regime"] in ("first-order", "underdamped", "overdamped", "critical")


# --------------------------------------------------------------------------- Wu's numbers


@pytest.mark.parametrize("K0,r", [(100.0, 0.001), (100.0, 0.01), (10.0, 0.05)])
def test_sgd_settling_time_is_3_over_K0r_at_5_percent(K0, r):
    num, den = C.closed_loop("sgd", K0, r)
    t = np.linspace(0, 10 / (K0 * r), 100001)
    info = C.step_info(t, C.step_response(num, den, t), settling_threshold=0.05, sys=(num, den))
    assert info["SteadyStateValue"] == 1.0  # the DC gain, not y[-1] (as python-control with a system)
    assert info["SettlingTime"] == pytest.approx(math.log(20) / (K0 * r), abs=t[1])
    assert info["SettlingTime"] == pytest.approx(3 / (K0 * r), rel=2e-3)  # Wu's rounding of ln 20
    assert float(C.first_order_settling_time(K0, r, 0.05)) == pytest.approx(math.log(20) / (K0 * r))
    assert info["Overshoot"] == 0.0


def test_momentum_critical_damping_at_K0_r_mu_quarter():
    ch = C.characteristics(*C.closed_loop("momentum", 100.0, 0.00278, 0.9))
    assert float(ch["DampingRatio"]) == pytest.approx(1.0, abs=1e-3)  # Wu's r = 0.00278
    assert float(C.momentum_theory(100.0, 0.00278, 0.9)["DampingRatio"]) == pytest.approx(
        float(ch["DampingRatio"]), rel=1e-12)
    g = 0.9
    num, den = C.closed_loop("momentum", 100.0, 0.25 / (100.0 * g), g)
    ch = C.characteristics(num, den)
    assert ch["Regime"] == "critical"
    np.testing.assert_allclose(np.asarray(ch["Poles"]), -1 / (2 * g), atol=1e-6)
    # eq. (33) with T = 1/ωₙ = 2g: y = 1 − (1 + t/(2g)) e^{−t/(2g)} (the paper prints 2g·t)
    t = np.linspace(0, 30, 301)
    np.testing.assert_allclose(C.step_response(num, den, t), 1 - (1 + t / (2 * g)) * np.exp(-t / (2 * g)),
                               atol=1e-12)
    # the poles meet on the real axis exactly there: root locus over K0 r μ
    r = np.array([0.9, 0.999, 1.001, 1.1]) * 0.25 / (100.0 * g)
    p = np.asarray(C.closed_loop_poles("momentum", 100.0, r, g))
    assert np.all(np.abs(p[:2].imag) < 1e-12) and np.all(np.abs(p[2:].imag) > 1e-3)
    assert [C.characteristics(*C.closed_loop("momentum", 100.0, rr, g))["Regime"] for rr in r] == [
        "overdamped", "overdamped", "underdamped", "underdamped"]


def test_momentum_overshoot_formula():
    rng = np.random.default_rng(2)
    for prod in rng.uniform(0.3, 20.0, 8):  # K0 r μ
        mu = float(rng.uniform(0.2, 0.95))
        K0 = 100.0
        r = prod / (K0 * mu)
        num, den = C.closed_loop("momentum", K0, r, mu)
        peak, _ = C.step_peak(num, den, t_max=60 * mu)
        expected = math.exp(-math.pi / math.sqrt(4 * prod - 1))
        assert peak - 1 == pytest.approx(expected, rel=1e-8)
        assert float(C.momentum_theory(K0, r, mu)["Overshoot"]) == pytest.approx(100 * expected, rel=1e-12)


def test_momentum_peak_is_1_6_at_paper_parameters():
    num, den = C.closed_loop("momentum", 100.0, 0.1, 0.9)
    peak, tp = C.step_peak(num, den, t_max=10.0)
    assert peak == pytest.approx(1 + math.exp(-math.pi / math.sqrt(35)), rel=1e-10)
    assert abs(peak - 1.6) < 0.015  # the paper's "1.6", ≈ 60% overshoot
    # peak time π/ω_d with ω_d = √(4K₀rμ−1)/(2μ)
    assert tp == pytest.approx(math.pi / (math.sqrt(35) / 1.8), rel=1e-6)


def test_nag_peak_1_35_needs_alpha_about_18_3():
    K0, r, mu = 100.0, 0.1, 0.9
    alpha = C.nag_alpha_for_peak(1.35, K0, r, mu)
    assert alpha == pytest.approx(18.2969, abs=2e-3)
    num, den = C.closed_loop("nag", K0, r, mu, alpha)
    t = np.linspace(0, 5, 50001)
    y = np.asarray(C.step_response(num, den, t))
    ref = ct.step_info(ct.tf(np.asarray(num), np.asarray(den)), T=t)
    assert ref["Peak"] == pytest.approx(1.35, abs=1e-6)
    assert ref["SettlingTime"] < 3.0  # "less than 3 s in NAG"
    assert C.step_info(t, y)["PeakTime"] < 1.5
    # for α ≤ 1 (the paper's constraint) there is no overshoot at all ...
    for a in np.linspace(0.05, 1.0, 20):
        num, den = C.closed_loop("nag", K0, r, mu, a)
        p = np.asarray(C.poles(den))
        assert np.all(np.abs(p.imag) < 1e-12)  # real poles
        # zero −α/g lies between them: den(z0) = α(α−1)/g ≤ 0
        z0 = -a / mu
        assert float(np.polyval(np.asarray(den), z0)) == pytest.approx(a * (a - 1) / mu, abs=1e-9)
        tt = np.linspace(0, 12 / float(-p.real.max()), 20001)
        yy = np.asarray(C.step_response(num, den, tt))
        assert yy.max() <= 1 + 1e-12 and np.all(np.diff(yy) >= -1e-12)
    # ... and α = 1 is exactly SGD
    num, den = C.closed_loop("nag", K0, r, mu, 1.0)
    np.testing.assert_allclose(C.step_response(num, den, t), 1 - np.exp(-K0 * r * t), atol=1e-12)


# --------------------------------------------------------------------------- root locus


def test_closed_form_roots_match_numpy_roots():
    rng = np.random.default_rng(3)
    a, b, c = rng.normal(size=(3, 50))
    b[:5] = 0.0
    c[5:10] = 0.0
    r = np.asarray(C.quadratic_roots(a, b, c))
    for i in range(50):
        _assert_same_roots(r[i], np.roots([a[i], b[i], c[i]]), tol=1e-10)
    # the +√Δ root comes first
    np.testing.assert_allclose(np.asarray(C.quadratic_roots(1.0, -3.0, 2.0)), [2.0, 1.0])
    np.testing.assert_allclose(np.asarray(C.quadratic_roots(1.0, 3.0, 2.0)), [-1.0, -2.0])


@pytest.mark.parametrize("kind,sweep,fixed", [
    ("sgd", "r", dict(K0=100.0)),
    ("momentum", "r", dict(K0=100.0, mu=0.9)),
    ("momentum", "mu", dict(K0=100.0, r=0.05)),
    ("nag", "r", dict(K0=100.0, mu=0.9, alpha=18.3)),
    ("nag", "alpha", dict(K0=100.0, r=0.1, mu=0.9)),
])
def test_root_locus_matches_python_control_poles(kind, sweep, fixed):
    values = np.geomspace(1e-3, 1.0, 25) if sweep != "alpha" else np.geomspace(0.01, 100, 25)
    if sweep == "mu":
        values = np.linspace(0.01, 0.95, 25)
    v, p = C.root_locus(kind, sweep, values, **fixed)
    assert p.shape == (25, 1 if kind == "sgd" else 2)
    for i, val in enumerate(values):
        kw = dict(fixed, **{sweep: float(val)})
        num, den = C.closed_loop(kind, **kw)
        ref = ct.poles(ct.tf(np.asarray(num), np.asarray(den)))
        _assert_same_roots(p[i], ref)
        assert np.all(np.asarray(p[i]).real < 0)  # all of Wu's loops are stable


# --------------------------------------------------------------------------- SA map in z


def _sa_map(k_eta, g, sigma, steps, theta0=1.0):
    th, m = theta0, 0.0
    thetas, looks = [th], [th]
    for _ in range(steps):
        m = g * m - k_eta * (th + sigma * m)
        th = th + m
        thetas.append(th)
        looks.append(th + sigma * m)  # the look-ahead point θ_i + σ m_{i−1}
    return np.array(thetas), np.array(looks)


def test_sa_closed_loop_poles_are_companion_eigenvalues():
    rng = np.random.default_rng(4)
    ke = rng.uniform(0.001, 1.5, 40)
    g = rng.uniform(0.0, 0.99, 40)
    s = rng.uniform(-1.0, 20.0, 40)
    p = np.asarray(C.sa_poles_z(ke, g, s))
    M = np.asarray(C.sa_companion(ke, g, s))
    for i in range(40):
        b = g[i] - ke[i] * s[i]
        np.testing.assert_allclose(M[i], [[1 - ke[i], b], [-ke[i], b]])
        _assert_same_roots(p[i], np.linalg.eigvals(M[i]), tol=1e-8)
    # unity feedback around G(z) = kη((1+σ)z − σ)/((z−1)(z−g)) gives the characteristic polynomial
    num, den = C.sa_closed_loop_z(ke, g, s, output="lookahead")
    b = g - ke * s
    np.testing.assert_allclose(den, np.stack([np.ones(40), -(1 + b - ke), b], -1), atol=1e-14)
    try:
        from dynsim import analysis

        lam = np.asarray(analysis.eigenvalues(ke, g, s))
    except (ImportError, AttributeError):
        return
    for i in range(40):
        _assert_same_roots(lam[i], p[i], tol=1e-10)


@pytest.mark.parametrize("k_eta,g,sigma", [(0.01, 0.9, 1.0), (0.1, 0.9, 5.0), (0.5, 0.5, 0.0), (0.01, 0.9, 9.0)])
def test_sa_step_response_is_one_minus_map_trajectory(k_eta, g, sigma):
    """Reference step 0 → 1 from rest ≡ (by linearity) 1 − trajectory from θ₀ = 1, m₋₁ = 0."""
    n = 300
    thetas, looks = _sa_map(k_eta, g, sigma, n)
    num, den = C.sa_closed_loop_z(k_eta, g, sigma)
    y = np.asarray(C.discrete_step_response(num, den, n))
    np.testing.assert_allclose(y, 1 - thetas, atol=1e-12)
    _, ys = signal.dstep((np.trim_zeros(np.asarray(num), "f"), np.asarray(den), 1.0), n=n + 1)
    np.testing.assert_allclose(y, np.squeeze(ys[0]), atol=1e-12)
    num_l, den_l = C.sa_closed_loop_z(k_eta, g, sigma, output="lookahead")
    yl = np.asarray(C.discrete_step_response(num_l, den_l, n))
    np.testing.assert_allclose(yl, 1 - looks, atol=1e-12)
    assert float(jnp.sum(num) / jnp.sum(den)) == pytest.approx(1.0)  # DC gain at z = 1
    u = np.ones(n + 1)
    np.testing.assert_allclose(y, signal.lfilter(np.asarray(num), np.asarray(den), u), atol=1e-12)


def test_characteristics_and_argument_errors():
    ch = C.characteristics(*C.closed_loop("sgd", 100.0, 0.1))
    assert ch["Order"] == 1 and ch["Regime"] == "first-order"
    assert float(ch["NaturalFrequency"]) == pytest.approx(10.0)
    ch = C.characteristics(*C.closed_loop("momentum", 100.0, jnp.array([0.001, 0.1]), 0.9))
    assert list(ch["Regime"]) == ["overdamped", "underdamped"]
    with pytest.raises(ValueError, match="kind="):
        C.closed_loop("adam", 1.0, 1.0)
    with pytest.raises(ValueError, match="needs mu"):
        C.closed_loop("momentum", 1.0, 1.0)
    with pytest.raises(ValueError, match="improper"):
        C.step_response([1.0, 2.0, 3.0], [1.0, 1.0], [0.0, 1.0])
