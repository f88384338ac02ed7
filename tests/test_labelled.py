"""Labelled arrays (dynsim.labelled): the closed forms of dynsim.analysis broadcast DataArrays by name."""
import inspect

import numpy as np
import pytest
import xarray as xr

from dynsim import analysis

LR = xr.DataArray([0.05, 0.2], dims=["learning_rate"], coords={"learning_rate": [0.05, 0.2]})
SIGMA = xr.DataArray([0.0, 3.0], dims=["sigma"], coords={"sigma": [0.0, 3.0]})
MU = 0.9


def test_two_axes_give_the_outer_product_not_pairs():
    out = analysis.stability_threshold(LR, MU, SIGMA)
    assert out.dims == ("learning_rate", "sigma") and out.shape == (2, 2)
    want = np.asarray(analysis.stability_threshold(LR.values[:, None], MU, SIGMA.values[None, :]))
    np.testing.assert_array_equal(out.values, want)
    np.testing.assert_array_equal(out.sigma.values, SIGMA.values)
    # plain numpy keeps numpy broadcasting: paired element by element
    assert np.shape(analysis.stability_threshold(LR.values, MU, SIGMA.values)) == (2,)


def test_the_same_dimension_pairs_up():
    k = xr.DataArray([0.01, 0.1], dims=["point"])
    s = xr.DataArray([1.0, 2.0], dims=["point"])
    out = analysis.spectral_radius(k, MU, s)
    assert out.dims == ("point",)
    np.testing.assert_array_equal(out.values, np.asarray(analysis.spectral_radius(k.values, MU, s.values)))


KE = xr.DataArray([0.01, 0.1, 0.3], dims=["k_eta"])
G = xr.DataArray([0.5, 0.9], dims=["momentum"])
S2 = xr.DataArray([-1.0, 2.0], dims=["sigma"])
OUTER = (KE.values[:, None, None], G.values[None, :, None], S2.values[None, None, :])


@pytest.mark.parametrize("name", ["spectral_radius", "regime", "timescale", "eigenvalues", "companion_matrix",
                                  "characteristic_coefficients"])
def test_every_three_argument_form_broadcasts_by_name(name):
    fn = getattr(analysis, name)
    got, want = fn(KE, G, S2), fn(*OUTER)
    for g, w in zip(*((got, want) if isinstance(got, tuple) else ((got,), (want,)))):
        assert g.dims[:3] == ("k_eta", "momentum", "sigma")
        np.testing.assert_array_equal(g.values, np.broadcast_to(np.asarray(w), g.shape))


@pytest.mark.parametrize("name", ["critical_sigma", "stable_sigma_interval", "sigma_star_ode12", "sigma_star_ode13",
                                  "sigma_star_ode14"])
def test_two_argument_forms_broadcast_by_name(name):
    fn = getattr(analysis, name)
    got, want = fn(KE, G), fn(KE.values[:, None], G.values[None, :])
    for g, w in zip(*((got, want) if isinstance(got, tuple) else ((got,), (want,)))):
        assert g.dims == ("k_eta", "momentum")
        np.testing.assert_array_equal(g.values, np.asarray(w))


@pytest.mark.slow
def test_curvature_forms_and_spectrum_forms():
    for name in ("stable_curvature_interval", "stability_threshold", "preconditioned_stability_threshold"):
        got = getattr(analysis, name)(LR, G, SIGMA)
        for g in (got if isinstance(got, tuple) else (got,)):
            assert g.dims == ("learning_rate", "momentum", "sigma")
    eig = np.array([0.5, 2.0, 7.0])
    r = analysis.spectral_radius_quadratic(eig, LR, G, SIGMA)
    assert r.dims == ("learning_rate", "momentum", "sigma")
    want = analysis.spectral_radius_quadratic(eig, LR.values[:, None, None], G.values[None, :, None],
                                              SIGMA.values[None, None, :])
    np.testing.assert_array_equal(r.values, np.asarray(want))
    assert analysis.superacceleration_helps(eig, LR, G).dims == ("learning_rate", "momentum")
    s, rho = analysis.optimal_sigma_spectrum(eig, LR, G)
    assert s.dims == ("learning_rate", "momentum")
    np.testing.assert_allclose(s.values[1, 1], float(analysis.optimal_sigma_spectrum(eig, 0.2, 0.9)[0]), rtol=1e-12)
    assert analysis.min_spectral_radius(KE).dims == ("k_eta",)
    assert analysis.k_eta_sigma_star_zero(G).dims == ("momentum",)


def test_plain_arrays_among_labelled_ones_are_refused():
    with pytest.raises(ValueError, match="sigma is a plain array"):
        analysis.stability_threshold(LR, MU, np.array([0.0, 1.0]))


def test_every_public_array_function_is_covered():
    skip = {"two_mode_optimal_sigma", "spectrum_family", "late_rate_check"}  # scalars, a family, a time series
    for name in analysis.__all__:
        fn = getattr(analysis, name)
        if inspect.isfunction(fn) and name not in skip:
            assert hasattr(fn, "__wrapped__"), name
