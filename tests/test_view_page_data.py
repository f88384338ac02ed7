"""dynsim.view.page_data: the page's data read from real stores -- slices, seed reductions,
the static page's strides, and a clicked point's trajectory and curves against dynsim computed here."""
import json

import numpy as np
import pytest

pytest.importorskip("bokeh")
import viewpages as vp  # noqa: E402

from dynsim import analysis  # noqa: E402
from dynsim.view.page_data import fmt  # noqa: E402


def test_slice_reads_the_store_and_strides_large_axes(land_store):
    page = vp.page(land_store)
    ds = page.ds
    cols = page.slice2d("rate", "k_eta", "sigma", {"momentum": "0.8"})
    np.testing.assert_array_equal(cols["image"][0], ds.rate.sel(momentum=0.8).values.T.astype(np.float32))
    assert cols["xv"][0] == vp.K_ETA.tolist() and json.loads(cols["fixed"][0]) == {"momentum": 0.8}
    # transposed axes and a cap: every 3rd σ, every 2nd kη
    cols = page.slice2d("rho", "sigma", "k_eta", {"momentum": "0.9"}, cap=7)
    want = ds.rho.sel(momentum=0.9).values[::2, ::3]
    np.testing.assert_array_equal(cols["image"][0], want.astype(np.float32))
    assert cols["xv"][0] == vp.SIGMA[::3].tolist() and cols["xi"][0] == list(range(0, 21, 3))
    with pytest.raises(ValueError, match="cannot show"):
        page.slice2d("rate", "sigma", "sigma", {})


@pytest.mark.slow
def test_seed_reductions_and_training_defaults(train_store):
    page = vp.page(train_store)
    ds = page.ds
    assert page.kind == "train" and page.default_var() == "test_accuracy"
    assert page.default_axes("test_accuracy") == ("learning_rate", "sigma")
    sel = page.default_selection()
    assert sel["seed"] == "mean" and sel["step"] == page.options["step"][-1]
    assert page.options["seed"] == ["mean", "min", "max", "seed 0", "seed 1"]
    last = ds.train_loss.isel(step=-1).values.astype(np.float64)       # (lr, sigma, seed)
    for how, fn in (("mean", np.nanmean), ("min", np.nanmin), ("max", np.nanmax)):
        cols = page.slice2d("train_loss", "learning_rate", "sigma", {**sel, "seed": how})
        np.testing.assert_allclose(cols["image"][0], fn(last, axis=-1).T, rtol=1e-6)
    cols = page.slice2d("train_loss", "learning_rate", "sigma", {**sel, "seed": "seed 1"})
    np.testing.assert_array_equal(cols["image"][0], last[..., 1].T.astype(np.float32))


def test_static_page_strides_every_variable_under_its_budget(land_store):
    page = vp.page(land_store, static=True, cells=300)
    emb = page.embedded()
    for v, a in emb["arrays"].items():
        assert a["data"].size == np.prod(a["shape"]) <= 300, v
        strided = page.ds[v].isel({d: slice(None, None, page.strides[d]) for d in a["dims"]}).values
        np.testing.assert_array_equal(a["data"], strided.astype(np.float32).ravel())
    # the selectors offer exactly the embedded values
    assert page.options["sigma"] == [fmt(s) for s in vp.SIGMA[::page.strides["sigma"]]]
    assert max(page.strides.values()) > 1


def test_trajectory_is_simulate_at_the_clicked_point(land_store):
    page = vp.page(land_store)
    idx = page.point("k_eta", "sigma", 4, 13, {"momentum": "0.8"})
    assert idx == {"k_eta": 4, "sigma": 13, "momentum": 0}
    t = page.trajectory(idx)
    want = vp.sa_loss(vp.K_ETA[4], 0.8, vp.SIGMA[13])
    np.testing.assert_array_equal(t["loss"]["step"], np.arange(vp.STEPS + 1))
    np.testing.assert_allclose(t["loss"]["loss"], np.where(want > 0, want, np.nan), rtol=1e-6)
    assert t["labels"][:2] == ["θ", "m (θ_i − θ_(i−1))"] and "sigma=" in t["labels"][2]


@pytest.mark.slow
def test_training_curves_and_exact_threshold(train_store):
    page = vp.page(train_store)
    ds = page.ds
    out = page.curves({"learning_rate": 2, "sigma": 1, "seed": 0, "step": 0})
    cols, hess = out["curves"], out["hessian"]
    np.testing.assert_array_equal(cols["step"], ds.step.values.astype(float))
    np.testing.assert_array_equal(hess["step"], [0.0, 10.0, 20.0])      # Hessian(10)
    for s in (0, 1):
        np.testing.assert_allclose(cols[f"train_loss_{s}"], ds.train_loss.values[2, 1, s], rtol=1e-7)
        np.testing.assert_allclose(hess[f"sharpness_{s}"], ds.sharpness.values[2, 1, s, ::10], rtol=1e-7)
        assert np.isfinite(hess[f"sharpness_{s}"]).all()
    np.testing.assert_allclose(hess["threshold"], float(analysis.stability_threshold(1.0, 0.9, 1.0)), rtol=1e-12)
