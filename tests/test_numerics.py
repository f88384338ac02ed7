"""dynsim.numerics: searches and least-squares slopes against closed forms and numpy's polyfit."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dynsim import numerics

# --------------------------------------------------------------------------- searches


def test_golden_section_host_and_traced_find_known_minima():
    c = np.array([0.3, 1.7, 2.9, 0.0123])
    smooth = lambda x: (x - c) ** 2 + 1.0
    x, fx = numerics.golden_section(smooth, np.zeros(4), np.full(4, 3.0), 1e-10)
    assert np.max(np.abs(x - c)) < 1e-5  # a smooth minimum is resolved to √ε in x
    np.testing.assert_allclose(fx, 1.0, atol=1e-10)
    kink = lambda x: np.abs(x - c)
    x, _ = numerics.golden_section(kink, np.zeros(4), np.full(4, 3.0), 1e-12)
    assert np.max(np.abs(x - c)) < 1e-11  # a kink to the bracket width
    # the traced version takes the same steps, under jit and vmap
    tr = jax.jit(jax.vmap(lambda ci: numerics.golden_section_traced(lambda s: jnp.abs(s - ci), 0.0, 3.0, 80)))
    xt, ft = tr(jnp.asarray(c))
    assert np.max(np.abs(np.asarray(xt) - c)) < 1e-12 and np.max(np.asarray(ft)) < 1e-12


def test_golden_section_traced_equals_host_step_for_step():
    f_np = lambda x: np.cos(3 * x) + 0.1 * x
    f_j = lambda x: jnp.cos(3 * x) + 0.1 * x
    a, b = np.array([0.0, 1.0]), np.array([2.0, 2.5])
    host = numerics.golden_section(f_np, a, b, tol_abs=0.0, maxiter=25)
    traced = numerics.golden_section_traced(f_j, jnp.asarray(a), jnp.asarray(b), 25)
    np.testing.assert_allclose(np.asarray(traced[0]), host[0], rtol=1e-14)


def test_bracket_sign_change_and_bisect_sign():
    target = np.array([-3.0, 0.5, 40.0])
    f = lambda x: x ** 3 - target  # roots ∛target
    lo, hi, ok = numerics.bracket_sign_change(f, np.zeros(3), 0.1)
    assert ok.all() and np.all(f(lo) < 0) and np.all(f(hi) > 0)
    root = numerics.bisect_sign(f, lo, hi, rtol=0.0, atol=1e-13)
    np.testing.assert_allclose(root, np.cbrt(target), atol=1e-12)
    # a jump without a zero (the derivative at a kink) is bracketed and located as well
    jump = lambda x: np.where(x > 1.25, 1.0, -2.0)
    lo, hi, ok = numerics.bracket_sign_change(jump, np.array([1.0]), 0.01)
    assert ok[0] and abs(numerics.bisect_sign(jump, lo, hi, rtol=0.0, atol=1e-12)[0] - 1.25) < 1e-12
    # no sign change within 12 doublings: reported, not invented
    lo, hi, ok = numerics.bracket_sign_change(lambda x: np.ones_like(x), np.array([0.0]), 0.1)
    assert not ok[0]


def test_bracket_walk():
    grid = np.linspace(0.0, 10.0, 101)
    c = np.array([2.05, 7.93, 10.5])  # the last one's minimum is beyond the grid
    f = lambda x: (x - c) ** 2
    i, edge = numerics.bracket_walk(f, grid, np.array([50, 50, 50]))
    assert i[:2].tolist() == [20, 79] and edge.tolist() == [False, False, True]


def test_grid_argmin_parabolic():
    x = np.linspace(-1.0, 2.0, 31)
    y = np.stack([3 * (x - 0.4321) ** 2 + 1, np.full_like(x, np.inf), x])  # parabola; nothing finite; at the edge
    x_min, y_min = numerics.grid_argmin_parabolic(x, y)
    assert abs(x_min[0] - 0.4321) < 1e-12 and y_min[0] == y[0].min()
    assert np.isnan(x_min[1]) and x_min[2] == -1.0  # no refinement at the grid edge


# --------------------------------------------------------------------------- least-squares slopes


def test_taper():
    n = 7
    i = np.arange(n)
    np.testing.assert_array_equal(numerics.taper(n, "none"), np.ones(n))
    np.testing.assert_allclose(numerics.taper(n, "hann"), np.sin(np.pi * (i + 0.5) / n) ** 2, rtol=1e-15)
    np.testing.assert_allclose(numerics.taper(n, "hann2"), np.sin(np.pi * (i + 0.5) / n) ** 4, rtol=1e-15)
    with pytest.raises(ValueError, match="taper"):
        numerics.taper(n, "cosine")


def test_slope_coefficients_and_fit_weights_equal_weighted_polyfit(rng):
    t = np.sort(rng.uniform(0, 100, 40))
    y = rng.standard_normal(40) + 0.3 * t
    w = rng.uniform(0.1, 2.0, 40)
    expected = np.polyfit(t, y, 1, w=np.sqrt(w))[0]  # polyfit weights multiply residuals
    assert float(np.sum(numerics.slope_coefficients(t, w) * y)) == pytest.approx(expected, rel=1e-12)
    assert float(np.sum(numerics.fit_weights(t, w) * np.diff(y))) == pytest.approx(expected, rel=1e-12)
    # JAX arrays, a 0/1 mask as weights, a batch axis: the slope of the kept points
    mask = t > 30
    c = numerics.slope_coefficients(jnp.asarray(t), jnp.asarray(np.stack([mask, ~mask]), float))
    got = np.asarray(jnp.sum(c * jnp.asarray(y), axis=-1))
    np.testing.assert_allclose(got, [np.polyfit(t[mask], y[mask], 1)[0], np.polyfit(t[~mask], y[~mask], 1)[0]],
                               rtol=1e-12)


def test_hann_window_weights():
    times = np.arange(0.0, 101.0, 4.0)
    h = numerics.hann_window_weights(times, 100, 0.5)
    inside = times >= 50
    assert np.all(h[~inside] == 0)
    np.testing.assert_allclose(h[inside], numerics.taper(int(inside.sum()), "hann"), rtol=1e-15)
    assert numerics.hann_window_weights(np.array([0.0, 10.0]), 10, 0.01).tolist() == [0.0, 1.0]
    assert math.isclose(float(np.sum(numerics.fit_weights(times, h) * np.diff(-0.25 * times))), -0.25, rel_tol=1e-12)
