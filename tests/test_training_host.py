"""dynsim.training.host: the host-stepped loop gives the device loop's numbers."""
import jax
import numpy as np
import pytest

from dynsim import models
from dynsim import training as train
from dynsim.hessian import Hessian
from dynsim.training import Placement, kernel

jax.config.update("jax_enable_x64", True)

CURVES = ("train_loss", "train_accuracy", "test_loss", "test_accuracy", "grad_norm", "running_loss",
          "running_accuracy", "diverged", "diverged_at")
HESSIAN = ("sharpness", "hessian_eigenvalues", "preconditioned_sharpness")


def _both(net, tiny, optimizer, grid, **kw):
    kw = dict(seeds=2, progress=False, dtype="float64", **kw)
    a = train.train(optimizer, net, tiny, grid, placement=Placement(loop="device"), **kw)
    b = train.train(optimizer, net, tiny, grid, placement=Placement(loop="host"), **kw)
    assert (a.attrs["step_loop"], b.attrs["step_loop"]) == ("device", "host")
    return a, b


def _assert_equal(a, b, hessian_rtol, rtol=0.0):
    # the steps and records are the same computations: bit for bit (rtol=0), except where XLA
    # picks another convolution algorithm outside a loop than inside one
    for k in CURVES:
        np.testing.assert_allclose(b[k].values, a[k].values, rtol=rtol, atol=0, err_msg=k)
        np.testing.assert_array_equal(np.isnan(a[k].values), np.isnan(b[k].values))
    # the Lanczos loops are unrolled on the host path: XLA may contract them differently
    for k in HESSIAN:
        if k in a:
            np.testing.assert_allclose(b[k].values, a[k].values, rtol=hessian_rtol, err_msg=k)
            np.testing.assert_array_equal(np.isnan(a[k].values), np.isnan(b[k].values))


@pytest.mark.slow
def test_full_batch_adam_sa_with_hessian(tiny):
    a, b = _both(models.nielsen_mlp((6,), input_dim=64), tiny, "adam_sa", {"learning_rate": 0.01, "sigma": [0.0, 2.0]},
                 steps=6, metrics_every=2, hessian=Hessian(4, k=2, iters=6))
    assert np.isfinite(a.sharpness.values).sum() == 2 * 2 * 2  # steps 0 and 4, not 2 and 6
    assert np.isfinite(a.preconditioned_sharpness.values).sum() == 2 * 2  # no preconditioner at step 0
    _assert_equal(a, b, 1e-12)


@pytest.mark.slow
def test_minibatch_super_accelerated(tiny):
    a, b = _both(models.nielsen_mlp((6,), input_dim=64), tiny, "super_accelerated",
                 {"learning_rate": 0.5, "momentum": 0.9, "sigma": [0.0, 2.0]}, epochs=2, batch_size=20,
                 metrics_every=3)
    assert a.sizes["step"] == 1 + 2 * 2
    _assert_equal(a, b, 0)


@pytest.mark.slow
def test_divergence_is_flagged_alike(tiny):
    a, b = _both(models.softmax_mlp((8,), input_dim=64), tiny, "gd", {"learning_rate": [0.1, 1e200]}, steps=4)
    assert a.diverged.values.tolist() == [[False, False], [True, True]]
    assert a.diverged_at.values.tolist() == [[-1, -1], [1, 1]]
    _assert_equal(a, b, 0)


@pytest.mark.slow
def test_cnn_defaults_to_the_host_loop_on_cpu_and_equals_the_device_loop(tiny):
    net = models.cnn((3,), (5,))
    assert kernel.has_convolution(net, (8, 8, 1), "float32")
    assert not kernel.has_convolution(models.nielsen_mlp((6,), input_dim=64), (8, 8, 1), "float32")
    grid = {"learning_rate": 0.1, "momentum": 0.9, "sigma": [0.0, 2.0]}
    auto = train.train("super_accelerated", net, tiny, grid, steps=3, progress=False, dtype="float64", seeds=2,
                       hessian=Hessian(3, iters=4))
    assert auto.attrs["step_loop"] == "host"
    a, b = _both(net, tiny, "super_accelerated", grid, steps=3, hessian=Hessian(3, iters=4))
    _assert_equal(a, b, 1e-10, rtol=1e-13)  # 1 ulp in grad_norm seen (float64)
    _assert_equal(auto, b, 0)
    mlp = train.train("super_accelerated", models.nielsen_mlp((6,), input_dim=64), tiny, grid, steps=1,
                      progress=False)
    assert mlp.attrs["step_loop"] == "device"
