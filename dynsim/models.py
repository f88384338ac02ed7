r"""Networks for the training experiments (flax.linen), each bundled with its loss.

A :class:`Model` is a flax module plus the loss it is trained with and the
initialisation it is started from; its methods are pure functions of an explicit
parameter pytree, so :mod:`dynsim.training` can ``vmap`` them over many models.

**Nakerst §4 networks** (:func:`nielsen_mlp`): fully connected 784-30-10 and
784-15-15-10, sigmoid on *every* layer (output included), quadratic loss on one-hot
targets. Nakerst call the loss "the Euclidean distance of the output from the one-hot
vector ... averaged over the images" and follow Nielsen (2015); we use Nielsen's
quadratic cost (his eq. (6)), i.e. half the *squared* distance:

.. math::  C = \frac{1}{2n} \sum_x \lVert y(x) - a(x) \rVert^2 .

Initialisation (Nakerst: "weights and biases are each drawn randomly from a gaussian
distribution, centred at zero and with widths either unity (biases) or normalized by
the number of nodes in that layer (weights), as suggested in Chapter 3 of Nielsen"):
Nielsen ch. 3 (``network2.default_weight_initializer``) draws
``w ~ N(0, 1/n_in)`` -- standard deviation ``1/√fan_in``, with ``fan_in`` the number
of inputs of the neuron -- and ``b ~ N(0, 1)``, both *untruncated*. That is the
``"nielsen"`` scheme. (We read the paper's "normalized by the number of nodes in that
layer" as Nielsen's code does: the number of nodes feeding the layer.) :meth:`Model.init`
draws it on the host with numpy; the flax modules carry the same initializers.

**Softmax MLP** (:func:`softmax_mlp`) and **small CNN** (:func:`cnn`): ReLU,
softmax cross-entropy on integer labels, flax default init (LeCun-normal weights,
zero biases); used for the Wu et al. tables.
"""
from __future__ import annotations

import math
from typing import Any, Callable, NamedTuple, Sequence, cast

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

PyTree = Any

__all__ = [
    "MLP",
    "CNN",
    "Model",
    "nielsen_init",
    "max_pool_2x2",
    "quadratic_loss",
    "cross_entropy_loss",
    "nielsen_mlp",
    "softmax_mlp",
    "cnn",
    "MODELS",
    "get",
    "from_module",
]

_ACTIVATIONS: dict[str, Callable] = {
    "sigmoid": nn.sigmoid,
    "relu": nn.relu,
    "tanh": jnp.tanh,
    "identity": lambda x: x,
}

LOSSES = ("quadratic", "cross_entropy")


# --------------------------------------------------------------------------- modules

#: Standard deviation of a standard normal truncated to (-2, 2) (as in jax's initializers).
_TRUNC_STD = 0.87962566103423978


def _truncated_normal(rng: np.random.Generator, shape) -> np.ndarray:
    """Standard normal truncated to (-2, 2), by rejection."""
    out = rng.standard_normal(shape)
    bad = np.abs(out) >= 2
    while bad.any():
        out[bad] = rng.standard_normal(int(bad.sum()))
        bad = np.abs(out) >= 2
    return out


def nielsen_init():
    """(kernel_init, bias_init) of Nielsen ch. 3: ``w ~ N(0, 1/fan_in)``, ``b ~ N(0, 1)``."""
    # jax's "normal" here is the *untruncated* Gaussian (flax's default is "truncated_normal").
    kernel = nn.initializers.variance_scaling(1.0, "fan_in", "normal")
    return kernel, nn.initializers.normal(stddev=1.0)


def _inits(init: str):
    if init == "nielsen":
        return nielsen_init()
    if init == "default":
        return nn.linear.default_kernel_init, nn.initializers.zeros_init()
    raise ValueError(f"init={init!r} is unknown; choose 'nielsen' or 'default'")


class MLP(nn.Module):
    """Fully connected network; ``features`` lists the widths after the input.

    ``activation`` acts on hidden layers, ``output_activation`` on the last one
    (``"sigmoid"`` for Nielsen's networks, ``"identity"`` for logits).
    """

    features: tuple[int, ...]
    activation: str = "sigmoid"
    output_activation: str = "sigmoid"
    init_scheme: str = "nielsen"

    @nn.compact
    def __call__(self, x):
        kernel_init, bias_init = _inits(self.init_scheme)
        x = x.reshape((x.shape[0], -1))
        for i, f in enumerate(self.features):
            x = nn.Dense(f, kernel_init=kernel_init, bias_init=bias_init, name=f"dense{i}")(x)
            last = i == len(self.features) - 1
            x = _ACTIVATIONS[self.output_activation if last else self.activation](x)
        return x


def max_pool_2x2(x: jax.Array) -> jax.Array:
    """2×2 max-pool, stride 2, VALID (odd edges dropped): ``nn.max_pool(x, (2, 2), (2, 2))``.

    Written as reshape + max: the same forward, but its gradient is a cheap mask instead of
    XLA's select-and-scatter, which halves the time of a small CNN step on XLA:CPU.

    >>> import jax.numpy as jnp
    >>> max_pool_2x2(jnp.arange(16.0).reshape(1, 4, 4, 1))[0, :, :, 0].tolist()
    [[5.0, 7.0], [13.0, 15.0]]
    """
    n, h, w, c = x.shape
    x = x[:, : h - h % 2, : w - w % 2, :]
    return x.reshape(n, h // 2, 2, w // 2, 2, c).max(axis=(2, 4))


class CNN(nn.Module):
    """Small convnet: [conv 3x3 → ReLU → 2x2 max-pool] per entry of ``channels``,
    then ReLU dense layers ``dense`` and a linear output of ``num_classes`` logits."""

    channels: tuple[int, ...] = (16, 32)
    dense: tuple[int, ...] = (64,)
    num_classes: int = 10

    @nn.compact
    def __call__(self, x):
        for i, c in enumerate(self.channels):
            x = nn.Conv(c, (3, 3), padding="SAME", name=f"conv{i}")(x)
            x = max_pool_2x2(nn.relu(x))
        x = x.reshape((x.shape[0], -1))
        for i, f in enumerate(self.dense):
            x = nn.relu(nn.Dense(f, name=f"dense{i}")(x))
        return nn.Dense(self.num_classes, name="out")(x)


# --------------------------------------------------------------------------- losses


def quadratic_loss(outputs: jax.Array, labels: jax.Array, num_classes: int) -> jax.Array:
    r"""Nielsen's quadratic cost ``C = 1/(2n) Σ_x ||y(x) − a(x)||²`` on one-hot ``y``.

    >>> import jax.numpy as jnp
    >>> float(quadratic_loss(jnp.array([[1.0, 0.0], [0.5, 0.5]]), jnp.array([0, 1]), 2))
    0.125
    """
    y = jax.nn.one_hot(labels, num_classes, dtype=outputs.dtype)
    return 0.5 * jnp.mean(jnp.sum((outputs - y) ** 2, axis=-1))


def cross_entropy_loss(logits: jax.Array, labels: jax.Array, num_classes: int) -> jax.Array:
    r"""Mean softmax cross-entropy ``−(1/n) Σ_x log softmax(z(x))_{y(x)}``."""
    logp = jax.nn.log_softmax(logits, axis=-1)
    return -jnp.mean(jnp.take_along_axis(logp, labels[:, None].astype(jnp.int32), axis=-1))


# --------------------------------------------------------------------------- bundle


class Model(NamedTuple):
    """A flax module with its loss; all methods are pure in ``params``.

    Any ``flax.linen`` module works (:func:`from_module` builds the bundle): its outputs
    are scored by ``loss`` and its parameters drawn by ``init_scheme``.

    Attributes:
      name: display name, e.g. ``"784-30-10 sigmoid, quadratic"``.
      module: the ``flax.linen`` module; ``module.apply({"params": p}, x)`` gives the outputs.
      loss: ``"quadratic"`` (on the module's outputs, Nielsen), ``"cross_entropy"`` (logits),
        or a function ``loss(outputs, labels) -> scalar`` (mean over the batch).
      num_classes: number of output classes (labels are ``0 … num_classes−1``).
      flat_input: whether inputs are flattened vectors (MLPs) rather than NHWC images.
      init_scheme: ``"nielsen"``, ``"default"`` or ``"flax"`` (see :meth:`init`).
    """

    name: str
    module: nn.Module
    loss: str
    num_classes: int
    flat_input: bool
    init_scheme: str = "default"

    def init(self, seed: int, input_shape: Sequence[int], dtype=jnp.float32) -> PyTree:
        """Initial parameters for inputs of shape ``input_shape`` (no batch axis), drawn on the host.

        Sampled with numpy's ``default_rng(seed)`` leaf by leaf (the pytree layout comes from
        ``jax.eval_shape`` of the flax init, so nothing is compiled: XLA takes seconds to
        compile a threefry-based flax init on a CPU, this takes milliseconds). The
        distributions are those of :attr:`init_scheme`:

        * ``"nielsen"``: kernel ``N(0, 1/fan_in)``, bias ``N(0, 1)``, untruncated (Nielsen ch. 3);
        * ``"default"``: flax's default, kernel LeCun-normal (normal truncated to ±2 std, rescaled
          to variance ``1/fan_in``), bias zero.

        * ``"flax"``: the module's own initializers (``module.init`` with ``PRNGKey(seed)``),
          for any module: layer norms, embeddings and other parameters included.

        ``fan_in`` is the product of all kernel dims but the last (inputs per neuron).
        """
        x = jax.ShapeDtypeStruct((1, *input_shape), jnp.dtype(dtype))
        if self.init_scheme == "flax":
            params = jax.jit(self.module.init)(jax.random.PRNGKey(int(seed)), jnp.zeros(x.shape, x.dtype))["params"]
            return jax.tree.map(lambda a: np.asarray(a, dtype=jnp.dtype(dtype)), params)
        shapes = jax.eval_shape(lambda: self.module.init(jax.random.PRNGKey(0), jnp.zeros(x.shape, x.dtype)))
        rng = np.random.default_rng(int(seed))
        flat, tree = jax.tree_util.tree_flatten_with_path(shapes["params"])
        leaves = []
        for path, leaf in flat:
            kind = getattr(path[-1], "key", str(path[-1]))
            shape = leaf.shape
            if kind == "kernel":
                std = 1.0 / math.sqrt(math.prod(shape[:-1]))
                if self.init_scheme == "nielsen":
                    val = rng.standard_normal(shape) * std
                else:
                    val = _truncated_normal(rng, shape) * (std / _TRUNC_STD)
            elif kind == "bias":
                val = rng.standard_normal(shape) if self.init_scheme == "nielsen" else np.zeros(shape)
            else:
                raise ValueError(f"model {self.name!r}: parameter {jax.tree_util.keystr(path)} is neither a "
                                 "kernel nor a bias; use init_scheme='flax' (the module's own initializers)")
            leaves.append(np.asarray(val, dtype=jnp.dtype(dtype)))
        return jax.tree_util.tree_unflatten(tree, leaves)

    def apply(self, params: PyTree, x: jax.Array) -> jax.Array:
        """Outputs: sigmoid activations (quadratic loss) or logits (cross-entropy)."""
        # cast: flax types apply() for mutable collections too; without them it returns the outputs alone
        return cast(jax.Array, self.module.apply({"params": params}, x))

    def loss_from_outputs(self, outputs: jax.Array, labels: jax.Array) -> jax.Array:
        if callable(self.loss):
            return self.loss(outputs, labels)
        if self.loss == "quadratic":
            return quadratic_loss(outputs, labels, self.num_classes)
        return cross_entropy_loss(outputs, labels, self.num_classes)

    def loss_fn(self, params: PyTree, x: jax.Array, labels: jax.Array) -> jax.Array:
        """Mean loss over the batch ``x`` with integer ``labels``."""
        return self.loss_from_outputs(self.apply(params, x), labels)

    def metrics(self, params: PyTree, x: jax.Array, labels: jax.Array):
        """``(summed loss, number correct)`` over a batch: sums, so batches add up exactly."""
        out = self.apply(params, x)
        n = x.shape[0]
        correct = jnp.sum(jnp.argmax(out, axis=-1) == labels)
        return self.loss_from_outputs(out, labels) * n, correct

    def num_params(self, input_shape: Sequence[int]) -> int:
        shapes = jax.eval_shape(lambda: self.module.init(jax.random.PRNGKey(0), jnp.zeros((1, *input_shape))))["params"]
        return int(sum(math.prod(s.shape) for s in jax.tree.leaves(shapes)))


def nielsen_mlp(hidden: Sequence[int] = (30,), num_classes: int = 10, input_dim: int = 784) -> Model:
    """Nakerst §4 / Nielsen network: sigmoid everywhere, quadratic loss, Nielsen init.

    >>> m = nielsen_mlp((30,))
    >>> m.name, m.num_params((784,))
    ('784-30-10 sigmoid, quadratic', 23860)
    """
    hidden = tuple(int(h) for h in hidden)
    if not hidden or any(h < 1 for h in hidden):
        raise ValueError(f"hidden={hidden!r} must be a non-empty list of positive widths")
    module = MLP(features=(*hidden, num_classes), activation="sigmoid",
                 output_activation="sigmoid", init_scheme="nielsen")
    name = "-".join(map(str, (input_dim, *hidden, num_classes))) + " sigmoid, quadratic"
    return Model(name, module, "quadratic", num_classes, True, "nielsen")


def softmax_mlp(hidden: Sequence[int] = (100,), num_classes: int = 10, input_dim: int = 784,
                activation: str = "relu") -> Model:
    """ReLU MLP with softmax cross-entropy and flax default init (Wu et al. stand-in)."""
    hidden = tuple(int(h) for h in hidden)
    if any(h < 1 for h in hidden):
        raise ValueError(f"hidden={hidden!r} must be positive widths")
    if activation not in _ACTIVATIONS:
        raise ValueError(f"activation={activation!r} is unknown; choose one of {list(_ACTIVATIONS)}")
    module = MLP(features=(*hidden, num_classes), activation=activation,
                 output_activation="identity", init_scheme="default")
    name = "-".join(map(str, (input_dim, *hidden, num_classes))) + f" {activation}, softmax-CE"
    return Model(name, module, "cross_entropy", num_classes, True)


def cnn(channels: Sequence[int] = (16, 32), dense: Sequence[int] = (64,), num_classes: int = 10) -> Model:
    """Small CNN with softmax cross-entropy (Fashion-MNIST / CIFAR-10)."""
    channels, dense = tuple(int(c) for c in channels), tuple(int(d) for d in dense)
    if not channels or any(c < 1 for c in (*channels, *dense)):
        raise ValueError(f"channels={channels!r}, dense={dense!r} must be positive")
    module = CNN(channels=channels, dense=dense, num_classes=num_classes)
    name = f"CNN conv{list(channels)} dense{list(dense)}, softmax-CE"
    return Model(name, module, "cross_entropy", num_classes, False)


def from_module(module: nn.Module, loss="cross_entropy", num_classes: int = 10, *, flat_input: bool = False,
                name: str | None = None, init_scheme: str = "flax") -> Model:
    """Bundle any ``flax.linen`` module with its loss for :func:`dynsim.train`.

    Args:
      module: outputs ``(batch, num_classes)`` scores for inputs ``(batch, *input_shape)``.
      loss: ``"cross_entropy"`` (logits), ``"quadratic"`` (Nielsen's, on outputs in [0, 1]),
        or ``loss(outputs, labels) -> scalar``.
      num_classes: classes the outputs score; the dataset's labels must fit.
      flat_input: feed flattened vectors instead of images.
      name: display name (default: the module's class name).
      init_scheme: ``"flax"`` (the module's initializers, default), ``"default"`` or ``"nielsen"``.

    >>> import flax.linen as nn
    >>> m = from_module(nn.Dense(10), flat_input=True, name="linear")
    >>> m.name, m.num_params((64,))
    ('linear', 650)
    """
    if not isinstance(module, nn.Module):
        raise ValueError(f"module={module!r} must be a flax.linen Module")
    if not (callable(loss) or loss in LOSSES):
        raise ValueError(f"loss={loss!r} must be one of {LOSSES} or a function loss(outputs, labels)")
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes={num_classes!r} must be a positive integer")
    if init_scheme not in ("flax", "default", "nielsen"):
        raise ValueError(f"init_scheme={init_scheme!r} must be 'flax', 'default' or 'nielsen'")
    return Model(name or type(module).__name__, module, loss, num_classes, bool(flat_input), init_scheme)


MODELS: dict[str, Callable[[], Model]] = {
    "nielsen_30": lambda: nielsen_mlp((30,)),
    "nielsen_15_15": lambda: nielsen_mlp((15, 15)),
    "softmax_mlp": lambda: softmax_mlp((100,)),
    "cnn": lambda: cnn(),
}


def get(name: str | Model) -> Model:
    """A model by name (see :data:`MODELS`), or a :class:`Model` unchanged."""
    if isinstance(name, Model):
        return name
    if not isinstance(name, str) or name not in MODELS:
        raise ValueError(f"model={name!r} is unknown; choose one of {', '.join(MODELS)} "
                         "or pass a dynsim.models.Model")
    return MODELS[name]()
