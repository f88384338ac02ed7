"""dynsim.view.page: the page's bokeh models (one selector per dimension longer than one)."""
import numpy as np
import pytest

pytest.importorskip("bokeh")
import viewpages as vp  # noqa: E402

import dynsim  # noqa: E402
from dynsim import view as dview  # noqa: E402


def test_one_swept_dimension_and_a_one_long_dimension(tmp_path):
    ds = dynsim.sweep("super_accelerated", "quadratic", {"k_eta": [0.05], "momentum": 0.9, "sigma": vp.SIGMA},
                      vp.STEPS, ["rate", "diverged"], progress=False, out=tmp_path / "line")
    page = vp.page(tmp_path / "line")
    assert page.default_axes("rate") == ("sigma", None)
    cols = page.slice2d("rate", "sigma", None, page.default_selection())
    np.testing.assert_array_equal(cols["image"][0], ds.rate.values.reshape(1, -1).astype(np.float32))
    html = dview.save_html(tmp_path / "line", tmp_path / "line.html").read_text()
    assert '"sel-sigma"' in html and '"sel-k_eta"' not in html     # no selector for a 1-long dim


@pytest.mark.slow
def test_build_refuses_a_page_of_the_other_kind(land_store):
    with pytest.raises(ValueError, match=r"build\(live=True\) needs a PageData\(static=False\)"):
        dview.build(vp.page(land_store, static=True), live=True)
    with pytest.raises(ValueError, match="live=False a static one"):
        dview.build(vp.page(land_store), live=False)
