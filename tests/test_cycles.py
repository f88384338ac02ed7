"""dynsim.cycles: attractor detection, rates and the optimal σ on a spectrum (float64 oracles)."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import dynsim
from dynsim import cycles, landscapes, optim

CODE = {name: i for i, name in enumerate(cycles.CLASSES)}


# --------------------------------------------------------------------------- constructed sequences


def _logistic(r, x0=0.3, n=600):
    xs = [x0]
    for _ in range(n):
        xs.append(r * xs[-1] * (1 - xs[-1]))
    return np.array(xs)[:, None]


def test_orbit_period_constructed_sequences():
    t = np.arange(200)
    fixed = np.tile([[1.0, -2.0]], (200, 1))
    two = np.where(t[:, None] % 2 == 0, [0.5, 1.0], [0.7, 0.9])
    three = np.array([[0.0, 1.0], [1.0, 0.0], [2.0, 2.0]])[t % 3]
    drift = np.stack([1e-3 * t, np.zeros(200)], 1)  # moving, never periodic
    seqs = jnp.asarray(np.stack([fixed, two, three, drift]))
    per = np.asarray(cycles.orbit_period(seqs, window=16))
    assert per.tolist() == [1, 2, 3, 0]
    # a 2-cycle with a tiny perturbation above the tolerance is not periodic
    noisy = two + 1e-4 * np.random.default_rng(0).standard_normal(two.shape)
    assert int(cycles.orbit_period(jnp.asarray(noisy), window=16)) == 0
    assert int(cycles.orbit_period(jnp.asarray(noisy), window=16, atol=1e-2)) == 2


def test_classify_orbit_classes():
    t = np.arange(300)
    minimum = np.array([1.0, 2.0])
    conv = minimum + np.stack([0.9 ** t, (-0.8) ** t], 1)  # converging, oscillating
    cyc = minimum + np.where(t[:, None] % 2 == 0, 0.3, -0.3) * np.array([1.0, 0.5])
    far_fp = np.tile([[5.0, 5.0]], (300, 1))
    div = conv.copy()
    div[-5:] = np.nan
    unsettled = np.stack([np.sin(0.1 * t * np.sqrt(2)), np.cos(0.1 * t)], 1) + 10
    code, per = cycles.classify_orbit(jnp.asarray(np.stack([conv, cyc, far_fp, div, unsettled])), minimum)
    assert [cycles.CLASSES[int(c)] for c in code] == ["minimum", "cycle", "fixed_point", "diverged", "unsettled"]
    assert int(per[1]) == 2 and int(per[2]) == 1
    # without a known minimum the converged run is a fixed point
    code, _ = cycles.classify_orbit(jnp.asarray(conv))
    assert int(code) == CODE["fixed_point"]


def test_bad_inputs():
    with pytest.raises(ValueError, match="theta"):
        cycles.orbit_period(jnp.ones(10))
    with pytest.raises(ValueError, match="time points"):
        cycles.orbit_period(jnp.ones((10, 1)), window=32)
    with pytest.raises(ValueError, match="max_period"):
        cycles.orbit_period(jnp.ones((100, 1)), max_period=0)


# --------------------------------------------------------------------------- a map known to cycle


@pytest.mark.parametrize("r,period,kind", [(2.8, 1, "fixed_point"), (3.2, 2, "cycle"), (3.5, 4, "cycle"),
                                           (3.9, 0, "unsettled")])
def test_logistic_map(r, period, kind):
    code, per = cycles.classify_orbit(jnp.asarray(_logistic(r)), max_period=8, window=64)
    assert cycles.CLASSES[int(code)] == kind and int(per) == period


def test_logistic_two_cycle_points_and_floquet():
    r = 3.2
    disc = math.sqrt((r - 3) * (r + 1))
    exact = sorted([(r + 1 + disc) / (2 * r), (r + 1 - disc) / (2 * r)])
    got = sorted(np.asarray(cycles.cycle_points(jnp.asarray(_logistic(r)), 2))[:, 0])
    np.testing.assert_allclose(got, exact, rtol=0, atol=1e-12)
    step = lambda x: r * x * (1 - x)
    x, res = cycles.refine_cycle(step, jnp.array([0.5]), 2)
    assert float(res) < 1e-14
    assert min(abs(float(x[0]) - e) for e in exact) < 1e-13
    mult = cycles.floquet_multipliers(step, x, 2)
    np.testing.assert_allclose(mult.real, [4 + 2 * r - r * r], atol=1e-12)  # f'(x+) f'(x-) = 4 + 2r − r²


@pytest.mark.slow
def test_nakerst2d_two_cycle_is_a_flip_bifurcation():
    """SA on eq. (15), η = 0.01: θ* loses stability at σ_flip = (1+g)/(k_max η) − ½ into a 2-cycle."""
    L = landscapes.nakerst2d()
    M = jnp.asarray(landscapes.NAKERST2D_MINIMUM)
    k_max = float(np.max(np.linalg.eigvalsh(np.asarray(jax.hessian(L.loss)(M)))))
    eta, g = 0.01, 0.9
    s_flip = (1 + g) / (k_max * eta) - 0.5
    sig = jnp.array([3.0, s_flip - 0.05, s_flip + 0.05, 7.0])
    run = jax.jit(jax.vmap(lambda s: dynsim.simulate(optim.super_accelerated(eta, g, s), L, jnp.array([-1.0, -3.8]),
                                                     5000).theta))
    th = run(sig)
    code, per = cycles.classify_orbit(th, M, window=64)
    assert [cycles.CLASSES[int(c)] for c in code[:2]] == ["minimum", "minimum"]
    assert [cycles.CLASSES[int(c)] for c in code[2:]] == ["cycle", "cycle"]
    assert per[2:].tolist() == [2, 2]
    # σ = 7: Newton-refined 2-cycle away from θ* (paper: "oscillates between two nearby points"), attracting
    step = jax.jit(cycles.state_map(optim.super_accelerated(eta, g, 7.0), L.loss))
    x0 = jnp.concatenate([th[3, -1], th[3, -1] - th[3, -2]])
    x, res = cycles.refine_cycle(step, x0, 2)
    assert float(res) < 1e-10
    p1 = np.asarray(x[:2])
    p2 = np.asarray(step(x)[:2])
    assert np.linalg.norm(p1 - np.asarray(M)) > 0.5 and 0 < np.linalg.norm(p1 - p2) < 0.1
    assert np.max(np.abs(cycles.floquet_multipliers(step, x, 2))) < 1
    assert np.linalg.norm(np.asarray(step(step(x))) - np.asarray(x)) < 1e-12


# --------------------------------------------------------------------------- rates


def test_log_slope_and_mask():
    t = np.arange(100.0)
    y = 3.0 * 0.97 ** t
    y[:10] = 5.0  # transient, masked out
    y[50] = 0.0  # non-positive: ignored
    s, n = cycles.log_slope(jnp.asarray(y), jnp.asarray(t >= 10))
    assert abs(float(s) - math.log(0.97)) < 1e-13 and int(n) == 89
    s, n = cycles.log_slope(jnp.ones(5), jnp.zeros(5, bool))
    assert np.isnan(float(s)) and int(n) == 0


def test_envelope_decay_against_damped_oscillation():
    t = np.arange(3000.0)
    rho = 0.995
    x = rho ** t * np.cos(0.3 * t + 0.2)
    s, T, n, _ = cycles.envelope_decay(jnp.asarray(x), floor=1e-300)
    assert abs(float(s) / math.log(rho) - 1) < 2e-3
    # the floor truncates the fit; a late regrowth after it does not matter
    y = 0.9 ** t
    y[200:] = 0.5
    s, T, n, log_a = cycles.envelope_decay(jnp.asarray(y), floor=1e-8)
    assert abs(float(s) - math.log(0.9)) < 1e-12 and int(n) == int(np.ceil(math.log(1e-8) / math.log(0.9)))
    assert abs(float(log_a)) < 1e-10  # y_0 = 1: the fitted amplitude


def test_envelope_fit_line_matches_numpy_polyfit():
    """Slope and intercept of the envelope fit against numpy's least squares on the same points."""
    t = np.arange(400.0)
    x = 2.5 * 0.98 ** t * np.cos(0.7 * t) + 1e-3 * np.sin(3.1 * t) * 0.98 ** t
    fit = cycles.envelope_decay(jnp.asarray(x), floor=1e-2, start=20)
    stop = int(np.flatnonzero(np.abs(x) < 1e-2)[0])  # the first zero crossing below the floor
    env = np.maximum.accumulate(np.abs(x[:stop])[::-1])[::-1]
    b, a = np.polyfit(t[20:stop], np.log(env[20:]), 1)
    assert int(fit.n_used) == stop - 20
    np.testing.assert_allclose([float(fit.slope), float(fit.log_amplitude)], [b, a], rtol=1e-10)
    assert float(fit.timescale) == pytest.approx(-1 / b, rel=1e-10)


def test_upper_envelope():
    x = jnp.array([[1.0, -0.5, 0.8, 0.1, 1e-9, 2.0], [0.3, jnp.nan, 1.0, 1.0, 1.0, 1.0]])
    env, keep = cycles.upper_envelope(x, floor=1e-6)
    assert keep.tolist() == [[True] * 4 + [False] * 2, [True] + [False] * 5]
    np.testing.assert_array_equal(np.asarray(env[0, :4]), [1.0, 0.8, 0.8, 0.1])
    assert np.all(np.isnan(np.asarray(env)[~np.asarray(keep)])) and float(env[1, 0]) == 0.3


def test_state_map_reproduces_simulate():
    """Iterating state_map on (θ, u) gives dynsim.simulate's θ and velocity, step for step."""
    L = landscapes.nakerst2d()
    rule = optim.super_accelerated(0.01, 0.9, 3.0)
    tr = dynsim.simulate(rule, L, jnp.array([-1.0, -3.8]), 40)
    step = jax.jit(cycles.state_map(rule, L.loss))
    x = jnp.concatenate([tr.theta[0], jnp.zeros(2)])
    for i in range(1, 41):
        x = step(x)
        np.testing.assert_allclose(np.asarray(x), np.concatenate([tr.theta[i], tr.velocity[i]]), rtol=1e-12, atol=1e-14)
