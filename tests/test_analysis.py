"""dynsim.analysis against independent oracles: numpy eigvals, matrix powers, dense grids."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import dynsim
from dynsim import analysis, landscapes, optim


def random_points(rng, n=500):
    k_eta = rng.uniform(1e-3, 2.5, n)
    mu = rng.uniform(0.0, 0.999, n)
    sigma = rng.uniform(-5, 30, n)
    return k_eta, mu, sigma


def test_spectral_radius_equals_numpy_eigvals(rng):
    k_eta, mu, sigma = random_points(rng)
    mats = np.asarray(analysis.companion_matrix(k_eta, mu, sigma))
    ref = np.max(np.abs(np.linalg.eigvals(mats)), axis=-1)
    np.testing.assert_allclose(analysis.spectral_radius(k_eta, mu, sigma), ref, rtol=1e-10)
    def canonical(ev):  # conjugate pairs share a real part only up to rounding: order by imag, then real
        order = np.lexsort((ev.real, np.round(ev.imag, 9)), axis=-1)
        return np.take_along_axis(ev, order, -1)

    ev = np.asarray(analysis.eigenvalues(k_eta, mu, sigma))
    np.testing.assert_allclose(canonical(ev), canonical(np.linalg.eigvals(mats)), rtol=1e-8, atol=1e-12)


def test_companion_matrix_powers_equal_trajectory(rng):
    for k_eta, mu, sigma in zip(*random_points(rng, 5)):
        k_eta = min(k_eta, 0.5)
        t = dynsim.simulate(optim.super_accelerated(k_eta, mu, sigma), landscapes.quadratic(1.0), jnp.array([1.0]), 60)
        m = np.asarray(analysis.companion_matrix(k_eta, mu, sigma))
        x = np.array([1.0, 0.0])  # (θ_0, m_{-1})
        for i in range(61):
            np.testing.assert_allclose(t.theta[i, 0], x[0], rtol=1e-9, atol=1e-12)
            np.testing.assert_allclose(t.velocity[i, 0], x[1], rtol=1e-9, atol=1e-12)
            x = m @ x


def test_critical_sigma_is_double_root_and_minimises_rho():
    for k_eta in [0.003, 0.01, 0.05, 0.2, 0.6, 1.5]:
        for mu in [0.5, 0.9, 0.99]:
            s_star = float(analysis.critical_sigma(k_eta, mu))
            p, b = analysis.characteristic_coefficients(k_eta, mu, s_star)
            assert abs(float(p * p - 4 * b)) < 1e-12
            # dense-grid argmin of ρ brackets σ* (independent of the closed form)
            grid = np.linspace(s_star - 2, s_star + 2, 400001)
            rho = np.asarray(analysis.spectral_radius(k_eta, mu, grid))
            assert abs(grid[np.argmin(rho)] - s_star) <= 2e-5 * max(1, abs(s_star))
            # At Δ = 0, ρ depends on √Δ: a rounding-level Δ ~ 1e-16 moves ρ by ~1e-8 (float64).
            rho_star = float(analysis.spectral_radius(k_eta, mu, s_star))
            np.testing.assert_allclose(rho_star, analysis.min_spectral_radius(k_eta), rtol=3e-8)
            assert rho.min() >= float(analysis.min_spectral_radius(k_eta)) - 3e-8  # no grid point does better


def test_sigma_star_negative_threshold():
    k0 = float(analysis.k_eta_sigma_star_zero(0.9))
    assert abs(k0 - 0.0026334) < 1e-7  # the paper reports ≈ 0.0027 numerically
    assert abs(float(analysis.critical_sigma(k0, 0.9))) < 1e-9
    assert float(analysis.critical_sigma(k0 * 0.9, 0.9)) < 0 < float(analysis.critical_sigma(k0 * 1.1, 0.9))


def test_exact_is_ode12_minus_one_and_ode_formulas_match_paper():
    k_eta = np.logspace(-2.5, 0, 50)
    np.testing.assert_allclose(
        analysis.critical_sigma(k_eta, 0.9), analysis.sigma_star_ode12(k_eta, 0.9) - 1, rtol=1e-12
    )
    ke, g = 0.01, 0.9
    assert np.isclose(analysis.sigma_star_ode12(ke, g), 2 / np.sqrt(ke) - (1 - g) / ke)
    assert np.isclose(analysis.sigma_star_ode13(ke, g), -2 + 2 * np.sqrt(1 + 1 / ke) - (1 - g) / ke)
    assert np.isclose(analysis.sigma_star_ode14(ke, g), -1 + np.sqrt(1 + 4 / ke) - (1 - g) / ke)
    # ODE (11) is the paper's best; it is also closest to the exact σ* here
    errs = [abs(f(ke, g) - analysis.critical_sigma(ke, g)) for f in
            (analysis.sigma_star_ode12, analysis.sigma_star_ode13, analysis.sigma_star_ode14)]
    assert np.argmin(errs) == 2


def test_regimes_and_stability_interval(rng):
    k_eta, mu, sigma = random_points(rng, 2000)
    reg = np.asarray(analysis.regime(k_eta, mu, sigma))
    rho = np.max(np.abs(np.linalg.eigvals(np.asarray(analysis.companion_matrix(k_eta, mu, sigma)))), -1)
    ev = np.linalg.eigvals(np.asarray(analysis.companion_matrix(k_eta, mu, sigma)))
    complex_pair = np.abs(ev[:, 0].imag) > 1e-9
    assert np.all((reg == 3) == (rho >= 1))
    assert np.all(reg[(rho < 1) & complex_pair] == 0)
    assert np.all(reg[(rho < 1) & ~complex_pair & (np.abs(ev[:, 0] - ev[:, 1]) > 1e-6)] == 2)
    lo, hi = analysis.stable_sigma_interval(k_eta, mu)
    inside = (sigma > np.asarray(lo)) & (sigma < np.asarray(hi))
    assert np.all(inside == (rho < 1 - 1e-12) | (np.abs(rho - 1) < 1e-9))
    assert int(analysis.regime(0.01, 0.9, 9.0)) == 1
    assert np.isinf(analysis.timescale(0.01, 0.9, -100.0))
    rho = analysis.spectral_radius(0.01, 0.9, 1.0)
    np.testing.assert_allclose(analysis.timescale(0.01, 0.9, 1.0), -1 / np.log(rho))


def test_n_dim_rate_is_worst_mode(rng):
    eig = np.sort(rng.uniform(0.05, 2.0, 6))
    land = landscapes.quadratic_nd(eig, rotation_seed=1)
    h = np.asarray(jax.hessian(land.loss)(jnp.zeros(6)))
    lr, mu, s = 0.3, 0.8, 1.5
    # the full 12x12 linear map on (θ, m) for SA on L = θᵀHθ/2
    a = np.eye(6) - lr * h
    bm = mu * np.eye(6) - lr * s * h
    full = np.block([[a, bm], [-lr * h, bm]])
    ref = np.max(np.abs(np.linalg.eigvals(full)))
    np.testing.assert_allclose(analysis.spectral_radius_quadratic(eig, lr, mu, s), ref, rtol=1e-10)


def test_spectral_radius_gradient_matches_analytic_away_from_kink():
    k_eta, mu = 0.01, 0.9
    s_star = float(analysis.critical_sigma(k_eta, mu))
    d = jax.grad(analysis.spectral_radius, argnums=2)
    for s in [s_star - 3, s_star - 0.5]:  # underdamped: ρ = √b, dρ/dσ = −kη/(2√b)
        b = mu - k_eta * s
        np.testing.assert_allclose(d(k_eta, mu, s), -k_eta / (2 * np.sqrt(b)), rtol=1e-10)
    for s in [s_star + 0.5, s_star + 3]:  # overdamped: finite differences
        h = 1e-6
        fd = (analysis.spectral_radius(k_eta, mu, s + h) - analysis.spectral_radius(k_eta, mu, s - h)) / (2 * h)
        np.testing.assert_allclose(d(k_eta, mu, s), fd, rtol=1e-6)
        assert float(d(k_eta, mu, s)) > 0


# --------------------------------------------------------------------------- optimal σ on a spectrum


def _rho_np(keta, g, s):
    """Float64 numpy oracle (complex arithmetic): largest |root| of λ² − (1 + b − kη)λ + b, b = g − kησ."""
    keta, s = np.broadcast_arrays(np.asarray(keta, float), np.asarray(s, float))
    b = g - keta * s
    p = 1 + b - keta
    sq = np.sqrt(p * p - 4 * b + 0j)
    return np.maximum(np.abs((p + sq) / 2), np.abs((p - sq) / 2))


def test_optimal_sigma_single_mode_is_critical_sigma():
    for keta in (0.003, 0.01, 0.1, 0.5, 1.5):
        s, r = analysis.optimal_sigma_spectrum(jnp.array([1.0]), keta, 0.9)
        assert abs(float(s) - float(analysis.critical_sigma(keta, 0.9))) < 1e-6 * max(1, abs(float(s)))
        # ρ has a √-kink at σ*: evaluated there in float64 its error is ~√ε, not ε
        assert abs(float(r) - abs(1 - math.sqrt(keta))) < 3e-8


def test_optimal_sigma_brute_force_random_spectra():
    rng = np.random.default_rng(1)
    for _ in range(8):
        eig = np.exp(rng.uniform(np.log(1e-3), 0, size=8))
        eig /= eig.max()
        eta = float(np.exp(rng.uniform(np.log(0.01), np.log(2.0))))
        g = float(rng.uniform(0.5, 0.95))
        s, r = (float(v) for v in analysis.optimal_sigma_spectrum(jnp.asarray(eig), eta, g))
        lo, hi = (g - 1) / eta, (g + 1) / eta - 0.5
        grid = np.linspace(lo, hi, 4001)[1:-1]
        brute = _rho_np(eig[None, :] * eta, g, grid[:, None]).max(axis=1)
        assert r <= brute.min() + 1e-12
        assert abs(_rho_np(eig * eta, g, s).max() - r) < 3e-8  # √ε at a kink
        # the theorem: σ_opt > 0 iff every mode is under-damped under heavy ball
        helps = bool(analysis.superacceleration_helps(jnp.asarray(eig), eta, g))
        assert helps == (s > 0)


def test_two_mode_closed_form_matches_numeric():
    g = 0.9
    for kappa in (1.5, 10.0, 100.0, 1000.0):
        for eta in (0.003, 0.05, 0.3, 1.0, 2.5):
            s_num, r_num = (float(v) for v in analysis.optimal_sigma_spectrum(jnp.array([1 / kappa, 1.0]), eta, g))
            s_cf, r_cf, kind = analysis.two_mode_optimal_sigma(eta / kappa, eta, g)
            assert abs(r_cf - r_num) < 1e-7, (kappa, eta, kind)
            assert abs(s_cf - s_num) < 1e-4 * max(1.0, abs(s_cf)), (kappa, eta, kind)
            assert abs(_rho_np(np.array([eta / kappa, eta]), g, s_cf).max() - r_cf) < 3e-8  # √ε at a kink


def test_optimal_sigma_unstable_and_bad_input():
    s, r = analysis.optimal_sigma_spectrum(jnp.array([1.0]), 5.0, 0.9)  # kη ≥ 4: no stable σ
    assert np.isnan(float(s)) and np.isnan(float(r))
    with pytest.raises(ValueError, match="eigenvalues"):
        analysis.optimal_sigma_spectrum(jnp.array([1.0, -1.0]), 0.1, 0.9)
    with pytest.raises(ValueError, match="k_eta"):
        analysis.two_mode_optimal_sigma(0.0, 1.0, 0.9)
    s, r = analysis.optimal_sigma_spectrum(jnp.array([0.1, 1.0]), jnp.array([0.1, 0.5]), 0.9)
    assert s.shape == (2,) and r.shape == (2,)


# --------------------------------------------------------------------------- spectra: test families, runs of the map


def test_spectrum_family():
    for kappa in (1.0, 7.7, 1e4):
        two = np.asarray(analysis.spectrum_family("two-point", kappa))
        assert two.tolist() == [1 / kappa, 1.0]
        lu = np.asarray(analysis.spectrum_family("log-uniform", kappa))
        assert lu[0] == 1 / kappa and lu[-1] == 1.0  # the extremes exactly, as numpy.geomspace
        np.testing.assert_allclose(lu, np.geomspace(1 / kappa, 1.0, 50), rtol=1e-14)
    traced = jax.jit(lambda k: analysis.spectrum_family("log-uniform", k, 5))(100.0)
    np.testing.assert_allclose(np.asarray(traced), [0.01, 10 ** -1.5, 0.1, 10 ** -0.5, 1.0], rtol=1e-14)
    with pytest.raises(ValueError, match="kind"):
        analysis.spectrum_family("uniform", 10.0)


def _simulated_rates(eig, eta, g, sigmas, steps, seed=0):
    """Independent of analysis: run the map on a randomly rotated quadratic; exp of the
    least-squares slope of log ‖θ_t‖ over the second half."""
    from dynsim import cycles

    L = landscapes.quadratic_nd(eig, rotation_seed=seed)
    th0 = jnp.asarray(np.random.default_rng(seed).standard_normal(len(eig)))

    def one(s):
        th = dynsim.simulate(optim.super_accelerated(eta, g, s), L, th0, steps).theta
        slope, _ = cycles.log_slope(jnp.linalg.norm(th, axis=-1), jnp.arange(steps + 1) >= steps // 2)
        return jnp.exp(slope)

    return np.asarray(jax.jit(jax.vmap(one))(jnp.asarray(sigmas)))


def test_quadratic_spectrum_optimum_vs_simulation():
    """The exact optimum is what a real run of the map on a rotated quadratic achieves, and beats σ ± δ."""
    g = 0.9
    eig = np.geomspace(0.01, 1.0, 20)
    eta = 0.5
    s, r = (float(v) for v in analysis.optimal_sigma_spectrum(jnp.asarray(eig), eta, g))
    d = 0.1 * max(1.0, abs(s))
    meas = _simulated_rates(eig, eta, g, np.array([s - d, s, s + d]), steps=6000)
    assert abs(math.log(meas[1]) / math.log(r) - 1) < 5e-3
    assert meas[1] < meas[0] and meas[1] < meas[2]
    exact = np.asarray(analysis.spectral_radius_quadratic(jnp.asarray(eig), eta, g, jnp.array([s - d, s + d])))
    np.testing.assert_allclose(meas[[0, 2]], exact, rtol=5e-3)


@pytest.mark.slow
def test_late_rate_equals_worst_mode_rate():
    """Linear regression (Nakerst §3.2): loss − L* decays as ρ_worst^{2t} for each σ."""
    L = landscapes.linear_regression()
    eig = np.asarray(L.hessian_eigenvalues)
    H = jax.hessian(L.loss)(L.minimum)  # exact: the loss is quadratic
    eta, steps = 0.005, 3000

    def excess(g, s):  # ½ δᵀHδ, δ = θ − θ*: exact far below L*
        d = dynsim.simulate(optim.super_accelerated(eta, g, s), L, jnp.full(51, 0.2), steps).theta - L.minimum
        return 0.5 * jnp.einsum("ti,ij,tj->t", d, H, d)

    methods = ((0.9, 0.0), (0.9, 4.0), (0.9, 8.0))
    exc = np.asarray(jax.jit(jax.vmap(excess))(jnp.array([m[0] for m in methods]), jnp.array([m[1] for m in methods])))
    rates = []
    for (g, s), e in zip(methods, exc):
        meas, pred, t_a = analysis.late_rate_check(e, eig, eta, g, s)
        assert t_a < 2200
        assert abs(meas / pred - 1) < 1e-6
        rates.append(meas)
    # σ-independent to < 1%, but resolvably slower with larger σ (over-damped flattest mode)
    assert rates[0] < rates[1] < rates[2] and abs(rates[2] / rates[0] - 1) < 1e-2


# --------------------------------------------------------------------------- edge of stability (issue #14)


def _rho_companion_np(k_eta, mu, sigma):
    b = mu - k_eta * sigma
    m = np.stack([np.stack([1 - k_eta, b], -1), np.stack([-k_eta, b], -1)], -2)
    return np.max(np.abs(np.linalg.eigvals(m)), -1)


def test_stability_threshold_is_where_companion_spectral_radius_crosses_one():
    rng = np.random.default_rng(11)
    n = 2000
    eta = np.exp(rng.uniform(np.log(1e-3), np.log(10.0), n))
    mu = rng.uniform(-0.95, 0.999, n)
    sigma = rng.uniform(-(1 - mu) / 4, 40.0)  # the closed form's domain
    thr = np.asarray(analysis.stability_threshold(eta, mu, sigma))
    np.testing.assert_allclose(thr, 2 * (1 + mu) / (eta * (1 + 2 * sigma)), rtol=1e-12)
    for d in (1e-6, 1e-3, 0.1):
        assert np.all(_rho_companion_np(thr * (1 - d) * eta, mu, sigma) < 1)
        assert np.all(_rho_companion_np(thr * (1 + d) * eta, mu, sigma) > 1)
    # at the edge itself the eigenvalue is −1: a flip (period doubling)
    b = mu - thr * eta * sigma
    p = 1 + b - thr * eta
    np.testing.assert_allclose(1 + p + b, 0, atol=1e-9)  # χ(−1) = 0
    # the named special cases (Cohen et al. 2021: GD 2/η, heavy ball (2+2β)/η, Nesterov (2+2β)/((1+2β)η))
    assert float(analysis.stability_threshold(0.1, 0.0, 0.0)) == pytest.approx(20.0)
    assert float(analysis.stability_threshold(0.1, 0.9, 0.0)) == pytest.approx(38.0)
    assert float(analysis.stability_threshold(0.1, 0.9, 0.9)) == pytest.approx(38.0 / 2.8)


def test_stable_curvature_interval_everywhere_against_dense_k_grid():
    """Outside the closed form's domain too (σ < −(1−μ)/4, |μ| ≥ 1): the interval is exact."""
    rng = np.random.default_rng(12)
    ks = np.linspace(-2, 60, 6201)
    for _ in range(300):
        eta = float(np.exp(rng.uniform(np.log(0.05), np.log(2.0))))
        mu = float(rng.uniform(-1.3, 1.3))
        sigma = float(rng.uniform(-4.0, 8.0))
        lo, hi = (float(v) for v in analysis.stable_curvature_interval(eta, mu, sigma))
        stable = _rho_companion_np(ks * eta, mu, sigma) < 1 - 1e-9
        unstable = _rho_companion_np(ks * eta, mu, sigma) > 1 + 1e-9
        if np.isnan(lo):
            assert not stable.any()
            continue
        inside = (ks > lo + 1e-6) & (ks < min(hi, 1e9) - 1e-6)
        outside = (ks < lo - 1e-6) | (ks > hi + 1e-6)
        assert stable[inside].all() and unstable[outside].all(), (eta, mu, sigma, lo, hi)
        in_domain = abs(mu) < 1 and sigma >= -(1 - mu) / 4
        if in_domain:
            assert lo == 0 and hi == pytest.approx(2 * (1 + mu) / (eta * (1 + 2 * sigma)), rel=1e-12)


def test_simulate_diverges_just_above_and_converges_just_below_threshold():
    """dynsim.simulate on L = kθ²/2 at k = threshold·(1 ± δ), random (η, μ, σ), vmapped."""
    rng = np.random.default_rng(13)
    n = 64
    eta = np.exp(rng.uniform(np.log(0.01), np.log(2.0), n))
    mu = rng.uniform(0.0, 0.99, n)
    sigma = rng.uniform(0.0, 25.0, n)
    thr = np.asarray(analysis.stability_threshold(eta, mu, sigma))
    steps = 3000

    @jax.jit
    @jax.vmap
    def final(e, m, s, k):
        t = dynsim.simulate(optim.super_accelerated(e, m, s), lambda th: 0.5 * k * jnp.sum(th**2),
                            jnp.ones(1), steps)
        return jnp.abs(t.theta[-1, 0]) + jnp.abs(t.velocity[-1, 0])

    for d in (0.02, 0.05):
        below = np.asarray(final(eta, mu, sigma, thr * (1 - d)))
        above = np.asarray(final(eta, mu, sigma, thr * (1 + d)))
        rho_b = _rho_companion_np(thr * (1 - d) * eta, mu, sigma)
        rho_a = _rho_companion_np(thr * (1 + d) * eta, mu, sigma)
        # far enough from ρ = 1 to see in 3000 steps (log to avoid overflow)
        clear = (steps * np.log(rho_b) < np.log(1e-3)) & (steps * np.log(rho_a) > np.log(1e3))
        assert clear.mean() > 0.8
        above = np.where(np.isfinite(above), above, np.inf)  # overflow (inf, or inf − inf = NaN) is divergence
        assert np.all(below[clear] < 1e-1) and np.all(above[clear] > 10), d


def _jacobian_rho(rule, h, theta0_state):
    """Spectral radius of the real rule's one-step map (θ, full state) at a fixed point."""
    from jax.flatten_util import ravel_pytree

    theta, state = theta0_state
    flat, unravel = ravel_pytree((theta, state.velocity, state.inner))
    grad_fn = lambda t: h @ t  # noqa: E731

    def step(f):
        th, vel, inner = unravel(f)
        th2, st2 = rule.map_step(grad_fn, th, state._replace(velocity=vel, inner=inner))
        return ravel_pytree((th2, st2.velocity, st2.inner))[0]

    j = np.asarray(jax.jacfwd(step)(flat))
    return np.max(np.abs(np.linalg.eigvals(j)))


@pytest.mark.parametrize("name", ["adam_sa", "rmsprop_sa"])
def test_preconditioned_threshold_against_jacobian_of_the_real_rule(name):
    """At a fixed point (θ = 0 of L = θᵀHθ/2, zero momentum) the second moment decouples, so the
    real rule's Jacobian is the frozen-P map exactly: it turns unstable where
    λ_max(P⁻¹H) crosses preconditioned_stability_threshold."""
    rng = np.random.default_rng(14 if name == "adam_sa" else 15)
    n, count = 5, 10_000  # β₁^count = 0: Adam's first-moment bias correction is gone
    for _ in range(12):
        eta = float(np.exp(rng.uniform(np.log(1e-3), np.log(0.3))))
        b1 = float(rng.uniform(0.0, 0.99))
        sigma = float(rng.uniform(0.0, 10.0))
        b2 = float(rng.uniform(0.9, 0.9999))
        q, _ = np.linalg.qr(rng.standard_normal((n, n)))
        h0 = (q * rng.uniform(0.1, 1.0, n)) @ q.T
        nu = jnp.asarray(rng.uniform(0.01, 4.0, n))
        if name == "adam_sa":
            eps = 1e-8
            rule = optim.adam_sa(eta, b1, b2, sigma, eps)
            st = rule.init(jnp.zeros(n))
            st = st._replace(count=jnp.asarray(count), inner=(st.inner[0]._replace(nu=nu, count=jnp.asarray(count)),
                                                               st.inner[1]))
            p_next = np.sqrt(b2 * np.asarray(nu) / (1 - b2 ** (count + 1))) + eps  # v after a g = 0 step
            thr = float(analysis.preconditioned_stability_threshold(eta, b1, sigma, ema=True))
        else:
            eps = 1e-7
            rule = optim.rmsprop_sa(eta, b1, sigma, b2, eps)
            st = rule.init(jnp.zeros(n))
            st = st._replace(count=jnp.asarray(count), inner=(st.inner[0]._replace(nu=nu), st.inner[1]))
            p_next = np.sqrt(b2 * np.asarray(nu) + eps)
            thr = float(analysis.preconditioned_stability_threshold(eta, b1, sigma))
        lam = np.max(np.linalg.eigvals(h0 / p_next[:, None]).real)
        c_edge = thr / lam
        for d, unstable in ((1e-3, False), (-1e-3, True)):
            h = jnp.asarray(h0 * c_edge * (1 - d))
            rho = _jacobian_rho(rule, h, (jnp.zeros(n), st))
            assert (rho > 1) == unstable, (eta, b1, sigma, d, rho)


def test_adam_threshold_reduces_to_cohen_2022():
    for eta, b1 in ((1e-3, 0.9), (3e-4, 0.99), (0.01, 0.0)):
        assert float(analysis.preconditioned_stability_threshold(eta, b1, 0.0, ema=True)) == pytest.approx(
            (2 + 2 * b1) / ((1 - b1) * eta), rel=1e-12)
    with pytest.raises(ValueError, match="momentum"):
        analysis.preconditioned_stability_threshold(0.1, 1.0, 0.0, ema=True)
    with pytest.raises(ValueError, match="learning_rate"):
        analysis.stability_threshold(0.0, 0.9, 1.0)
    with pytest.raises(ValueError, match="ema"):
        analysis.preconditioned_stability_threshold(0.1, 0.9, 0.0, ema=1)
