"""dynsim.models: Nielsen initialisation, losses and gradients against numpy oracles."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dynsim import models


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def test_nielsen_init_statistics():
    """w ~ N(0, 1/fan_in) untruncated, b ~ N(0, 1) (Nielsen ch. 3, as Nakerst §4 say)."""
    m = models.nielsen_mlp((30,))
    ws, bs = {0: [], 1: []}, {0: [], 1: []}
    for seed in range(20):
        p = m.init(seed, (784,), jnp.float64)
        for i in (0, 1):
            ws[i].append(np.asarray(p[f"dense{i}"]["kernel"]).ravel())
            bs[i].append(np.asarray(p[f"dense{i}"]["bias"]).ravel())
    for i, fan_in in ((0, 784), (1, 30)):
        w = np.concatenate(ws[i]) * np.sqrt(fan_in)  # should be standard normal
        b = np.concatenate(bs[i])
        n = w.size
        assert abs(w.mean()) < 5 / np.sqrt(n)
        assert abs(w.std() - 1) < 5 / np.sqrt(2 * n)
        kurt = np.mean(w**4) / w.var() ** 2
        assert abs(kurt - 3) < 0.15  # Gaussian (a 2σ-truncated normal has kurtosis 2.6)
        # untruncated: flax's default truncates at 2σ; a Gaussian of this size exceeds 3.5σ
        assert np.abs(w).max() > 3.5
        assert abs(b.mean()) < 5 / np.sqrt(b.size)
        assert abs(b.std() - 1) < 5 / np.sqrt(2 * b.size)
    # different seeds give different parameters, the same seed the same
    p0 = m.init(3, (784,))
    p1 = m.init(3, (784,))
    p2 = m.init(4, (784,))
    assert np.array_equal(p0["dense0"]["kernel"], p1["dense0"]["kernel"])
    assert not np.array_equal(p0["dense0"]["kernel"], p2["dense0"]["kernel"])


def _numpy_forward_backward(params, x, labels, n_classes):
    """Nielsen's backprop (BP1-BP4) for a sigmoid net with C = 1/(2n) Σ ||y − a||², float64."""
    layers = sorted(params)
    a, acts, zs = x, [x], []
    for name in layers:
        z = a @ params[name]["kernel"] + params[name]["bias"]
        zs.append(z)
        a = _sigmoid(z)
        acts.append(a)
    y = np.eye(n_classes)[labels]
    n = x.shape[0]
    loss = 0.5 * np.sum((a - y) ** 2) / n
    grads = {}
    delta = (a - y) * _sigmoid(zs[-1]) * (1 - _sigmoid(zs[-1])) / n  # BP1
    for li in range(len(layers) - 1, -1, -1):
        grads[layers[li]] = {"kernel": acts[li].T @ delta, "bias": delta.sum(0)}  # BP3, BP4
        if li:
            s = _sigmoid(zs[li - 1])
            delta = (delta @ params[layers[li]]["kernel"].T) * s * (1 - s)  # BP2
    return loss, grads


@pytest.mark.parametrize("hidden", [(3,), (4, 3)])
def test_quadratic_loss_and_grad_match_numpy_backprop(hidden, rng):
    m = models.nielsen_mlp(hidden, num_classes=2, input_dim=5)
    params = m.init(1, (5,), jnp.float64)
    x = rng.random((7, 5))
    labels = rng.integers(0, 2, 7)
    loss, grads = jax.value_and_grad(m.loss_fn)(params, jnp.asarray(x), jnp.asarray(labels))
    np_params = jax.tree.map(np.asarray, params)
    ref_loss, ref_grads = _numpy_forward_backward(np_params, x, labels, 2)
    np.testing.assert_allclose(float(loss), ref_loss, rtol=1e-13)
    for layer in ref_grads:
        for k in ("kernel", "bias"):
            np.testing.assert_allclose(np.asarray(grads[layer][k]), ref_grads[layer][k],
                                       rtol=1e-11, atol=1e-15)


def test_cross_entropy_matches_numpy(rng):
    m = models.softmax_mlp((6,), num_classes=4, input_dim=3)
    params = m.init(2, (3,), jnp.float64)
    x = rng.normal(size=(9, 3))
    labels = rng.integers(0, 4, 9)
    p = jax.tree.map(np.asarray, params)
    h = np.maximum(x @ p["dense0"]["kernel"] + p["dense0"]["bias"], 0)
    z = h @ p["dense1"]["kernel"] + p["dense1"]["bias"]
    logp = z - np.log(np.exp(z - z.max(1, keepdims=True)).sum(1, keepdims=True)) - z.max(1, keepdims=True)
    ref = -logp[np.arange(9), labels].mean()
    np.testing.assert_allclose(float(m.loss_fn(params, jnp.asarray(x), jnp.asarray(labels))), ref,
                               rtol=1e-13)
    # metrics() returns exact sums: loss * n and the number of argmax hits
    loss_sum, correct = m.metrics(params, jnp.asarray(x), jnp.asarray(labels))
    np.testing.assert_allclose(float(loss_sum), 9 * ref, rtol=1e-13)
    assert int(correct) == int(np.sum(z.argmax(1) == labels))


@pytest.mark.slow
def test_shapes_and_parameter_counts():
    assert models.nielsen_mlp((30,)).num_params((784,)) == 784 * 30 + 30 + 30 * 10 + 10
    assert models.nielsen_mlp((15, 15)).num_params((784,)) == 784 * 15 + 15 + 15 * 15 + 15 + 15 * 10 + 10
    for shape in [(28, 28, 1), (32, 32, 3), (8, 8, 1)]:
        m = models.cnn((4, 8), (16,))
        p = m.init(0, shape)
        out = m.apply(p, jnp.zeros((2, *shape)))
        assert out.shape == (2, 10)
    m = models.nielsen_mlp((30,))
    out = m.apply(m.init(0, (784,)), jnp.zeros((3, 28, 28, 1)))
    assert out.shape == (3, 10) and bool(jnp.all((out > 0) & (out < 1)))  # sigmoid outputs


def test_bad_arguments():
    with pytest.raises(ValueError, match="model="):
        models.get("resnet")
    with pytest.raises(ValueError, match="hidden="):
        models.nielsen_mlp(())
    with pytest.raises(ValueError, match="activation="):
        models.softmax_mlp((3,), activation="swishy")
    assert models.get("nielsen_15_15").name.startswith("784-15-15-10")


def test_default_init_is_truncated_lecun_normal():
    """softmax_mlp / cnn: flax's default (LeCun normal truncated at ±2 std), zero biases."""
    m = models.softmax_mlp((200,))
    w = np.concatenate([np.asarray(m.init(s, (784,), jnp.float64)["dense0"]["kernel"]).ravel()
                        for s in range(3)])
    bound = 2 / 0.87962566103423978 / np.sqrt(784)
    assert np.abs(w).max() < bound and np.abs(w).max() > 0.95 * bound
    assert abs(w.std() * np.sqrt(784) - 1) < 5 / np.sqrt(2 * w.size)
    assert not np.any(m.init(0, (784,))["dense0"]["bias"])
    c = models.cnn((4,), ())
    k = np.asarray(c.init(0, (8, 8, 3), jnp.float64)["conv0"]["kernel"])
    assert k.shape == (3, 3, 3, 4) and np.abs(k).max() < 2 / 0.87962566103423978 / np.sqrt(27)


@pytest.mark.parametrize("shape", [(2, 8, 8, 3), (1, 7, 9, 2)])
def test_max_pool_matches_flax(shape, rng):
    import flax.linen as nn

    x = jnp.asarray(rng.normal(size=shape))
    np.testing.assert_array_equal(models.max_pool_2x2(x), nn.max_pool(x, (2, 2), strides=(2, 2)))
