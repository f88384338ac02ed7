"""dynsim.training.kernel: the minibatch order, and the Hessian record against dense oracles."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import dynsim
from dynsim import models, optim
from dynsim import training as train
from dynsim.hessian import Hessian
from dynsim.training import Placement


def _net(hidden=(5,)):
    return models.nielsen_mlp(hidden, input_dim=64)


def test_minibatches_are_seeded_and_cover_each_example_once():
    b = train.epoch_batches(seed=4, epoch=2, n_train=100, batch_size=10)
    assert b.shape == (10, 10)
    assert sorted(b.ravel().tolist()) == list(range(100))  # every example exactly once
    np.testing.assert_array_equal(b, train.epoch_batches(4, 2, 100, 10))  # deterministic
    assert not np.array_equal(b, train.epoch_batches(4, 3, 100, 10))  # reshuffled each epoch
    assert not np.array_equal(b, train.epoch_batches(5, 2, 100, 10))  # seed matters
    r = train.epoch_batches(0, 0, 103, 10)  # remainder of 3 dropped, no repeats
    assert r.shape == (10, 10) and len(set(r.ravel().tolist())) == 100 and r.max() < 103
    with pytest.raises(ValueError, match="batch_size"):
        train.epoch_batches(0, 0, 10, 11)


@pytest.mark.slow
def test_engine_feeds_exactly_those_minibatches(tiny):
    """A plain float64 loop over epoch_batches with θ ← θ − η∇L reproduces the engine."""
    net = _net()
    ds = train.train("gd", net, tiny, {"learning_rate": 0.7}, epochs=2, batch_size=20,
                     seeds=[5], train_subset=60, dtype="float64", eval_on=("train",), progress=False)
    d = tiny.flatten()
    x, y = jnp.asarray(d.x_train[:60], jnp.float64), jnp.asarray(d.y_train[:60])
    params = jax.tree.map(jnp.asarray, net.init(5, (64,), jnp.float64))
    grad, full_loss = jax.jit(jax.grad(net.loss_fn)), jax.jit(net.loss_fn)
    for epoch in range(2):
        for rows in train.epoch_batches(5, epoch, 60, 20):
            g = grad(params, x[rows], y[rows])
            params = jax.tree.map(lambda p, gi: p - 0.7 * gi, params, g)
        np.testing.assert_allclose(float(ds.train_loss.isel(seed=0, step=epoch + 1)),
                                   float(full_loss(params, x, y)), rtol=1e-12)


# --------------------------------------------------------------------------- Hessian metrics (issue #14)


def _replay(net, tiny, rule, steps):
    """Θ (optax params) and state after each step, by a plain optax loop (float64): the oracle's path."""
    import optax
    from jax.flatten_util import ravel_pytree  # noqa: F401

    x = jnp.asarray(tiny.x_train.reshape(len(tiny.x_train), -1), jnp.float64)
    y = jnp.asarray(tiny.y_train, jnp.int32)
    loss = lambda p: net.loss_fn(p, x, y)  # noqa: E731
    params = jax.tree.map(jnp.asarray, net.init(0, (64,), jnp.float64))
    state = rule.init(params)
    out = [(params, state)]
    for _ in range(steps):
        u, state = rule.update(jax.grad(loss)(params), state, params)
        params = optax.apply_updates(params, u)
        out.append((params, state))
    return loss, out


def _dense_eigs(loss, params):
    from jax.flatten_util import ravel_pytree

    flat, unravel = ravel_pytree(params)
    return np.linalg.eigvalsh(np.asarray(jax.hessian(lambda f: loss(unravel(f)))(flat)))[::-1]


@pytest.mark.slow
def test_sharpness_is_dense_hessian_spectrum_at_the_lookahead_point(tiny):
    """float64, σ = 2: every Hessian record equals eigvalsh of jax.hessian of the full training loss
    at Θ (the replayed optax parameters); Hessian(at='theta') gives the one at θ = rule.to_paper(Θ)."""
    net = _net()
    grid = {"learning_rate": 0.5, "momentum": 0.9, "sigma": [2.0]}
    kw = dict(steps=6, seeds=[0], metrics_every=3, dtype="float64", progress=False, eval_on=("train",))
    ds = train.train("super_accelerated", net, tiny, grid, hessian=Hessian(3, k=3, iters=60), **kw)
    ds_t = train.train("super_accelerated", net, tiny, grid, hessian=Hessian(3, k=3, iters=60, at="theta"), **kw)
    rule = optim.super_accelerated(0.5, 0.9, 2.0)
    loss, path = _replay(net, tiny, rule, 6)
    assert ds.hessian_eigenvalues.dims[-1] == "eig" and ds.sizes["eig"] == 3
    for j, step in enumerate((0, 3, 6)):
        big_theta, state = path[step]
        ref = _dense_eigs(loss, big_theta)[:3]
        got = ds.hessian_eigenvalues.isel(sigma=0, seed=0, step=j).values
        np.testing.assert_allclose(got, ref, rtol=1e-7)
        assert float(ds.sharpness.isel(sigma=0, seed=0, step=j)) == pytest.approx(ref[0], rel=1e-7)
        ref_t = _dense_eigs(loss, rule.to_paper(big_theta, state))[0]
        assert float(ds_t.sharpness.isel(sigma=0, seed=0, step=j)) == pytest.approx(ref_t, rel=1e-7)
        assert float(ds.sharpness_residual.isel(sigma=0, seed=0, step=j)) < 1e-6 * ref[0]
    # Θ ≠ θ once the velocity is non-zero, and the two Hessians differ measurably
    assert abs(float(ds.sharpness.isel(step=1).squeeze()) / float(ds_t.sharpness.isel(step=1).squeeze()) - 1) > 1e-6
    assert ds.attrs["hessian_at"] == "lookahead" and ds_t.attrs["hessian_at"] == "theta"


@pytest.mark.slow
def test_preconditioned_sharpness_of_adam_sa_matches_oracle(tiny):
    net = _net()
    ds = train.train("adam_sa", net, tiny, {"learning_rate": 0.05, "sigma": [1.0]}, steps=4, seeds=[0],
                     metrics_every=2, hessian=Hessian(2, iters=60), dtype="float64", progress=False,
                     eval_on=("train",))
    rule = optim.adam_sa(0.05, sigma=1.0)
    loss, path = _replay(net, tiny, rule, 4)
    from jax.flatten_util import ravel_pytree

    assert np.isnan(float(ds.preconditioned_sharpness.isel(step=0).squeeze()))  # no preconditioner before step 1
    for j, step in ((1, 2), (2, 4)):
        params, state = path[step]
        p = np.asarray(ravel_pytree(dynsim.run.preconditioner(rule, state))[0])
        np.testing.assert_allclose(p, np.sqrt(np.asarray(ravel_pytree(state.inner[0].nu)[0]) / (1 - 0.999 ** step))
                                   + 1e-8, rtol=1e-12)
        flat, unravel = ravel_pytree(params)
        h = np.asarray(jax.hessian(lambda f: loss(unravel(f)))(flat))
        ref = np.max(np.linalg.eigvals(h / p[:, None]).real)
        got = float(ds.preconditioned_sharpness.isel(step=j).squeeze())
        assert got == pytest.approx(ref, rel=1e-6)


@pytest.mark.slow
def test_hessian_records_vmapped_equal_alone_and_nan_between(tiny):
    """A σ × seed grid in one program == each model alone (chunk_size=1); NaN at off-records."""
    net = _net()
    grid = {"learning_rate": 0.5, "momentum": 0.9, "sigma": [0.0, 4.0]}
    kw = dict(steps=6, seeds=2, metrics_every=1, hessian=Hessian(2, k=2, iters=10), dtype="float64",
              progress=False, eval_on=("train",))
    together = train.train("super_accelerated", net, tiny, grid, **kw)
    alone = train.train("super_accelerated", net, tiny, grid, **kw, placement=Placement(chunk_size=1))
    for v in ("sharpness", "hessian_eigenvalues", "sharpness_residual"):
        np.testing.assert_allclose(together[v].values, alone[v].values, rtol=1e-10, atol=1e-300, err_msg=v)
    s = together.sharpness.values
    assert np.all(np.isfinite(s[..., ::2])) and np.all(np.isnan(s[..., 1::2]))
    assert "preconditioned_sharpness" not in together  # only for the adaptive rules
    off = train.train("super_accelerated", net, tiny, grid, steps=2, seeds=1, progress=False)
    assert "sharpness" not in off and "eig" not in off.dims


@pytest.mark.parametrize("kwargs, match", [
    (dict(metrics_every=2, hessian=dict(every=3)), r"Hessian\(every=3\) must be a multiple of metrics_every=2"),
    (dict(hessian=dict(every=2, k=5, iters=4)), "k=5"),
    (dict(hessian=dict(every=2, at="phi")), "at='phi'"),
    (dict(hessian=dict(every=-1)), "every=-1"),
    (dict(hessian=dict(every=2, iters=0)), "iters=0"),
])
def test_bad_hessian_arguments(tiny, kwargs, match):
    """Checked where they are given: the Hessian object at construction, the record spacing by train."""
    with pytest.raises(ValueError, match=match):
        kwargs["hessian"] = Hessian(**kwargs["hessian"])
        train.train("super_accelerated", _net(), tiny, {"learning_rate": 0.1, "momentum": 0.9, "sigma": 1.0},
                    steps=6, progress=False, **kwargs)
