"""Metric options (dynsim.metrics.config): MetricConfig checked at construction, passed as options=,
and the checkpoint interval of short runs."""
import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import dynsim
from dynsim.metrics import FITTED_METRICS, MetricConfig


@pytest.mark.parametrize("kwargs, name", [
    (dict(every=0), "every"), (dict(every=2.5), "every"), (dict(every="8"), "every"),
    (dict(window=0), "window"), (dict(window=1.5), "window"), (dict(eps=0.0), "eps"),
    (dict(divergence_factor=1.0), "divergence_factor"), (dict(renormalise="yes"), "renormalise"),
    (dict(floor_eps=-1.0), "floor_eps"), (dict(unroll=0), "unroll"), (dict(pack=1), "pack"),
    (dict(fit_every=0), "fit_every"), (dict(tangent_steps=16), "tangent_steps"),
    (dict(tangent_steps=-8), "tangent_steps"),
])
def test_bad_options_are_refused_at_construction(kwargs, name):
    with pytest.raises(ValueError, match=f"^{name}="):
        MetricConfig(**kwargs)


def test_unknown_option_in_a_mapping_is_named():
    with pytest.raises(ValueError, match="'evry'"):
        MetricConfig.from_options({"evry": 8})
    assert MetricConfig.from_options({"every": 16, "window": None}) == MetricConfig(every=16)


def test_default_interval_is_kept_where_it_fits_and_adapts_where_it_does_not():
    # default runs keep their interval (their numbers are unchanged)
    assert MetricConfig().resolved(4096, "float32", linear=True).every == 32
    assert MetricConfig().resolved(4096, "float64", linear=True).every == 64
    assert MetricConfig().resolved(96, "float32", linear=True).every == 32
    assert MetricConfig().resolved(24, "float32", linear=False).every == 8
    # shorter runs: 3 checkpoints still
    assert MetricConfig().resolved(50, "float32", linear=True).every == 16
    assert MetricConfig().resolved(20, "float32", linear=False).every == 6
    # an interval the user gave is never changed
    with pytest.raises(ValueError, match="3\\*every=48"):
        MetricConfig(every=16).resolved(20, "float32", linear=False)
    # fewer than 3 steps: only metrics that are not fitted
    assert MetricConfig().resolved(1, "float32", linear=False, fitted=False).every == 1
    with pytest.raises(ValueError, match="fitted metrics"):
        MetricConfig().resolved(2, "float32", linear=False, fitted=True)


def _loss(t):
    # minimiser (1.5, -0.7), away from the origin; not quadratic
    d = t - jnp.array([1.5, -0.7], t.dtype)
    return jnp.sum(d ** 2) + 0.1 * jnp.sum(d ** 4)


def _optax_loop(lr, steps, theta0):
    """The oracle: optax's own init/update in a Python loop, float64."""
    tx = optax.sgd(lr)
    theta = jnp.asarray(theta0, jnp.float64)
    state = tx.init(theta)
    grad = jax.grad(_loss)
    for _ in range(steps):
        upd, state = tx.update(grad(theta), state, theta)
        theta = optax.apply_updates(theta, upd)
    return float(_loss(theta))


@pytest.mark.parametrize("steps", [1, 2, 20])
def test_short_final_loss_sweep_of_a_user_loss_equals_a_plain_optax_loop(steps):
    lrs = np.array([0.05, 0.1, 0.2])
    ds = dynsim.sweep(optax.sgd, _loss, {"learning_rate": lrs}, steps=steps, metrics=["final_loss", "diverged"],
                      theta0=[0.0, 0.0], dtype="float64", progress=False)
    want = [_optax_loop(lr, steps, [0.0, 0.0]) for lr in lrs]
    np.testing.assert_allclose(ds.final_loss.values, want, rtol=1e-13)
    assert not ds.diverged.values.any()


def test_short_sweep_with_fitted_metrics_needs_three_steps():
    with pytest.raises(ValueError, match="fitted metrics"):
        dynsim.sweep(optax.sgd, _loss, {"learning_rate": np.array([0.1, 0.2])}, steps=2, metrics=["rate"],
                     theta0=[0.0, 0.0], progress=False)
    assert set(FITTED_METRICS) <= set(dynsim.metrics.METRICS)


def test_sweep_takes_options_as_one_metric_config():
    grid = {"k_eta": 0.1, "momentum": 0.9, "sigma": np.array([0.0, 1.0])}
    ds = dynsim.sweep("sa", "quadratic", grid, 256, ["rate"], options=MetricConfig(every=16, window=0.25),
                      progress=False)
    opts = json.loads(ds.attrs["config"])["options"]
    assert opts["every"] == 16 and opts["window"] == 0.25
    with pytest.raises(ValueError, match="options="):
        dynsim.sweep("sa", "quadratic", grid, 256, ["rate"], options={"every": 16}, progress=False)
    with pytest.raises(TypeError):
        dynsim.sweep("sa", "quadratic", grid, 256, ["rate"], every=16, progress=False)
