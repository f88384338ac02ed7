"""locate (dynsim.engine.optimum) by any stored metric: the best grid point, against numpy arg-min/max."""
import warnings

import jax.numpy as jnp
import numpy as np
import optax
import pytest

import dynsim
from dynsim import data, models


def _loss(t):
    # minimiser (2.0, -1.0), away from the origin
    return (t[0] - 2.0) ** 2 + 3.0 * (t[1] + 1.0) ** 2 + 0.1 * (t[0] - 2.0) ** 4


def test_locate_the_learning_rate_minimising_final_loss_of_a_user_loss():
    lrs = np.geomspace(0.005, 0.5, 9)
    ds = dynsim.sweep(optax.sgd, _loss, {"learning_rate": lrs, "momentum": np.array([0.0, 0.5])}, 60,
                      ["final_loss", "diverged"], theta0=[0.0, 0.0], dtype="float64", progress=False)
    loc = dynsim.locate(ds, "learning_rate", by="final_loss")
    assert loc.learning_rate_star.dims == ("momentum",)
    assert (loc.status.values == "ok").all()  # interior optima: the largest rates diverge
    vals = ds.final_loss.transpose("momentum", "learning_rate").values
    best = np.nanargmin(vals, axis=1)
    np.testing.assert_array_equal(loc.learning_rate_star.values, lrs[best])
    np.testing.assert_array_equal(loc.final_loss_star.values, vals[np.arange(2), best])
    assert loc.attrs["locate_mode"] == "min"


def test_mode_max_and_the_defaults():
    from dynsim.engine.optimum import default_mode

    assert default_mode("test_accuracy") == "max" and default_mode("rate") == "max"
    assert default_mode("final_loss") == "min" and default_mode("timescale") == "min"
    lrs = np.array([0.01, 0.1, 0.3, 0.6])
    ds = dynsim.sweep(optax.sgd, _loss, {"learning_rate": lrs}, 40, ["final_loss"], theta0=[0.0, 0.0],
                      dtype="float64", progress=False)
    with pytest.warns(UserWarning, match="1 edge"):  # the largest loss: the largest rate, at the grid's edge
        loc = dynsim.locate(ds, "learning_rate", by="final_loss", mode="max")
    assert float(loc.learning_rate_star) == lrs[np.nanargmax(ds.final_loss.values)]


@pytest.mark.parametrize("kwargs, match", [
    (dict(by="speed"), "by='speed'"), (dict(by="final_loss", mode="lowest"), "mode="),
    (dict(mode="min"), "mode='min' with by='rate'"), (dict(by="final_loss", over="sigma"), "over='sigma'"),
])
def test_bad_locate_arguments(kwargs, match):
    ds = dynsim.sweep(optax.sgd, _loss, {"learning_rate": np.array([0.01, 0.1, 0.2])}, 12, ["final_loss"],
                      theta0=[0.0, 0.0], progress=False)
    with pytest.raises(ValueError, match=match):
        dynsim.locate(ds, kwargs.pop("over", "learning_rate"), **kwargs)


def _train(model, dataset, optimizer, grid, **kw):
    """The one call of dynsim.train here (its argument order is being changed on another branch)."""
    return dynsim.train(model, dataset, optimizer, grid, **kw)


def test_locate_the_best_learning_rate_of_a_training_result_by_final_test_loss():
    d = data.load("digits")
    tiny = d._replace(x_train=d.x_train[:120], y_train=d.y_train[:120], x_test=d.x_test[:40], y_test=d.y_test[:40])
    lrs = np.array([0.1, 1.0, 3.0, 10.0, 30.0])
    ds = _train(models.nielsen_mlp((5,), input_dim=64), tiny, "gd", {"learning_rate": lrs}, steps=12,
                metrics_every=4, eval_on=("test",), dtype="float64", progress=False)
    loc = dynsim.locate(ds, "learning_rate", by="test_loss")
    assert (loc.status.values == "ok").all(), ds.test_loss.isel(step=-1).values
    final = ds.test_loss.isel(step=-1).transpose("seed", "learning_rate").values
    best = np.argmin(np.where(np.isfinite(final), final, np.inf), axis=1)
    np.testing.assert_array_equal(loc.learning_rate_star.values, lrs[best])
    np.testing.assert_array_equal(loc.test_loss_star.values, final[np.arange(final.shape[0]), best])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ties of accuracy on 40 images may sit at an edge
        acc = dynsim.locate(ds, "learning_rate", by="test_accuracy")  # accuracies default to the maximum
    fa = ds.test_accuracy.isel(step=-1).transpose("seed", "learning_rate").values
    assert acc.attrs["locate_mode"] == "max"
    np.testing.assert_array_equal(acc.test_accuracy_star.values, fa.max(axis=1))
    assert jnp.isfinite(jnp.asarray(loc.test_loss_star.values)).all()
