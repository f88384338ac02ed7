"""dynsim.engine.plot: the located optimum beside its closed form, where one applies."""
import numpy as np
import pytest

import dynsim
from dynsim import analysis
from dynsim.engine.plot import exact_sigma_star, located_config, plot_located


@pytest.fixture(scope="module")
def located():
    grid = {"k_eta": np.array([0.02, 0.1]), "momentum": np.array([0.8, 0.9]), "sigma": np.linspace(-5.0, 15.0, 41)}
    ds = dynsim.sweep("super_accelerated", "quadratic", grid, 1024, ["rate"], progress=False)
    return dynsim.locate(ds, "sigma", refine=False)


def test_exact_sigma_star_is_the_closed_form_on_the_located_grid(located):
    ex = exact_sigma_star(located)
    assert ex.dims == located.sigma_star.dims
    for ke in located.k_eta.values:
        for mu in located.momentum.values:
            want = (mu - (1 - np.sqrt(ke)) ** 2) / ke  # Nakerst eq. (12) − 1: critical damping of the map
            np.testing.assert_allclose(float(ex.sel(k_eta=ke, momentum=mu)), want, rtol=1e-12)
            np.testing.assert_allclose(want, float(analysis.critical_sigma(ke, mu)), rtol=1e-6)
    assert located_config(located)["optimizer"] == "super_accelerated"


def test_no_closed_form_for_other_problems(located):
    other = located.copy()
    other.attrs = {**located.attrs, "config": located.attrs["config"].replace('"quadratic"', '"rosenbrock"')}
    assert exact_sigma_star(other) is None
    assert located_config(other.assign_attrs(config="not json")) == {}


def test_plot_writes_three_panels_with_the_exact_curve(located, tmp_path):
    import matplotlib.image

    path = plot_located(located, tmp_path / "loc.png")
    img = matplotlib.image.imread(path)
    assert img.shape[1] > 2.5 * img.shape[0] / 1.2  # three panels side by side
    assert plot_located(located.isel(k_eta=0, momentum=0), tmp_path / "none.png") is None  # nothing to plot against
    assert not (tmp_path / "none.png").exists()
