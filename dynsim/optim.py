r"""Optimizer maps, each defined once, as optax-compatible transformations.

Every rule in this module is one instance of a single *look-ahead momentum* map
(Nakerst et al. eq. (4), generalised). Write :math:`u_{i-1} = \theta_i - \theta_{i-1}`
for the last displacement (the paper's :math:`m^{(i-1)}`), then one step is

.. math::

    \phi_i &= \theta_i + \sigma_i\, u_{i-1}              &\text{(look-ahead point)}\\
    \delta_i, s_i &= D(\nabla L(\phi_i), s_{i-1})       &\text{(direction piece)}\\
    u_i &= \mu_i\, u_{i-1} + \delta_i                    &\text{(momentum)}\\
    \theta_{i+1} &= \theta_i + u_i .

The direction piece ``D`` is a small optax-style transformation with runtime
hyperparameters (``-η g`` for GD, ``-η g/\sqrt{r+ε}`` for RMSProp, Adam's
``-η \hat m/(\sqrt{\hat v}+ε)``, ...). Heavy ball is ``σ=0``, Nesterov ``σ=μ``,
super-acceleration any ``σ``.

**Two coordinate systems.** Analysis and figures use the paper's θ. A training
loop that only ever sees "gradient at the parameters" runs the same map in the
reparametrised coordinates :math:`\Theta_i = \theta_i + \sigma_i u_{i-1}` (Su's
Keras-style derivation, generalised from σ=μ to any σ): the gradient at the
parameters *is* the look-ahead gradient, and

.. math::  \Theta_{i+1} - \Theta_i = (1 + \sigma_{i+1})\,u_i - \sigma_i\,u_{i-1}.

``rule.init``/``rule.update`` implement this Θ view (an ordinary optax
``GradientTransformation``); ``rule.map_init``/``rule.map_step`` implement the θ
view that :func:`dynsim.simulate` uses; ``rule.to_paper`` converts Θ → θ. Tests
check the two agree to rounding.

**Runtime hyperparameters.** Hyperparameters may be Python numbers, arrays or
tracers; nothing branches on their values, so ``jax.vmap`` over a grid of
(η, μ, σ) compiles once (blackjax #215/#276, optax #577). Concrete values are
validated at construction and a bad one raises ``ValueError`` quoting the call.

**One policy for ranges.** A factory refuses only values at which its map is not
defined: a negative or non-finite learning rate, an EMA decay outside ``[0, 1)`` (Adam's
bias correction divides by ``1 - β^t``), a non-number. Values at which the map is defined
but unstable (momentum ``μ ≥ 1``, any ``σ``, a learning rate past ``2/k``) are accepted,
here, in :func:`dynsim.sweep` grids and in :func:`dynsim.train` grids alike: studying
where dynamics diverge is what sweeps are for, and such points come back flagged
``diverged`` (their rates are still computed). Sweeps and training check a grid by
calling the factory at each axis's extremes, so they refuse exactly what the factory
refuses.

>>> rule = super_accelerated(0.1, 1.2, 1.0)   # unstable but defined: accepted
>>> super_accelerated(-0.1, 0.9, 1.0)
Traceback (most recent call last):
...
ValueError: super_accelerated(learning_rate=-0.1, momentum=0.9, sigma=1.0): learning_rate=-0.1 must be in >=0
"""
from __future__ import annotations

import math
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

PyTree = Any
Scalar = Any  # float | jax.Array (possibly a tracer)

__all__ = [
    "LookaheadState",
    "Rule",
    "lookahead_momentum",
    "scale_by_learning_rate",
    "scale_by_ema",
    "scale_by_rms_sa",
    "scale_by_adam_sa",
    "gd",
    "heavy_ball",
    "nesterov",
    "super_accelerated",
    "ema_momentum",
    "nesterov_time_varying",
    "rmsprop_sa",
    "adam_sa",
    "RULES",
    "LINEAR_RULES",
    "get",
    "resolve",
    "callable_name",
    "hyperparameter_names",
]


# --------------------------------------------------------------------------- validation


def _is_concrete(x) -> bool:
    return not isinstance(x, jax.core.Tracer)


def _validate(call: str, checks: dict[str, tuple[Scalar, str]]) -> None:
    """Validate concrete hyperparameters; tracers pass through (checked by sweeps).

    ``checks`` maps name -> (value, constraint) with constraint one of
    ``"real"``, ``">=0"``, ``">0"``, ``"[0,1)"``, ``"[0,1]"``.
    """
    for name, (value, constraint) in checks.items():
        if not _is_concrete(value):
            continue
        try:
            arr = np.asarray(value)  # numpy: jnp would trace constants inside jit
        except (TypeError, ValueError) as e:
            raise ValueError(f"{call}: {name}={value!r} is not a number") from e
        if arr.ndim != 0:
            raise ValueError(
                f"{call}: {name} must be a scalar, got shape {arr.shape}; "
                "to sweep several values use jax.vmap or dynsim.sweep"
            )
        if not np.issubdtype(arr.dtype, np.number) or np.iscomplexobj(arr):
            raise ValueError(f"{call}: {name}={value!r} must be a real number")
        v = float(arr)
        if not math.isfinite(v):
            raise ValueError(f"{call}: {name}={v} must be finite")
        ok = {
            "real": True,
            ">=0": v >= 0,
            ">0": v > 0,
            "[0,1)": 0 <= v < 1,
            "[0,1]": 0 <= v <= 1,
        }[constraint]
        if not ok:
            raise ValueError(f"{call}: {name}={v} must be in {constraint}")


def _checked(rule: str, checks: dict[str, tuple[Scalar, str]], **unchecked) -> dict:
    """Validate a factory's hyperparameters (:func:`_validate`); return them by name, for ``Rule.hyperparams``.

    Error messages quote the call as written, ``rule(name=value, ...)``.
    """
    values = {name: value for name, (value, _) in checks.items()} | unchecked
    _validate(f"{rule}(" + ", ".join(f"{k}={v!r}" for k, v in values.items()) + ")", checks)
    return values


def _as(x: Scalar, like: jax.Array) -> jax.Array:
    """Cast a hyperparameter to a leaf's dtype (keeps float32 runs float32)."""
    return jnp.asarray(x, dtype=like.dtype)


# --------------------------------------------------------------------------- direction pieces


class EmptyState(NamedTuple):
    pass


def scale_by_learning_rate(learning_rate: Scalar) -> optax.GradientTransformation:
    r"""``δ = -η g``: the gradient step of Nakerst eq. (1)."""

    def init(params):
        del params
        return EmptyState()

    def update(updates, state, params=None):
        del params
        # -(η·g), not (-η)·g: bitwise the same, but XLA then has no per-step "-η" to hoist
        # (it hoists one private copy per unrolled step, each an extra array read per step)
        return jax.tree.map(lambda g: -(_as(learning_rate, g) * g), updates), state

    return optax.GradientTransformation(init, update)


class EmaState(NamedTuple):
    ema: PyTree


def scale_by_ema(beta: Scalar) -> optax.GradientTransformation:
    r"""``v ← βv + (1-β)g``; output ``v`` (the student report's EMA momentum)."""

    def init(params):
        return EmaState(jax.tree.map(jnp.zeros_like, params))

    def update(updates, state, params=None):
        del params
        ema = jax.tree.map(lambda v, g: _as(beta, g) * v + (1 - _as(beta, g)) * g, state.ema, updates)
        return ema, EmaState(ema)

    return optax.GradientTransformation(init, update)


class RmsState(NamedTuple):
    nu: PyTree


def scale_by_rms_sa(decay: Scalar, eps: Scalar) -> optax.GradientTransformation:
    r"""``r ← β₂ r + (1-β₂) g²``; output ``g / \sqrt{r + ε}`` (Nakerst eq. (16)).

    ε sits *inside* the square root, as in the paper's eqs. (16)-(17); ``r₀ = 0``.
    """

    def init(params):
        return RmsState(jax.tree.map(jnp.zeros_like, params))

    def update(updates, state, params=None):
        del params
        nu = jax.tree.map(
            lambda r, g: _as(decay, g) * r + (1 - _as(decay, g)) * g * g, state.nu, updates
        )
        out = jax.tree.map(lambda g, r: g / jnp.sqrt(r + _as(eps, g)), updates, nu)
        return out, RmsState(nu)

    return optax.GradientTransformation(init, update)


class AdamState(NamedTuple):
    mu: PyTree
    nu: PyTree
    count: jax.Array


def scale_by_adam_sa(b1: Scalar, b2: Scalar, eps: Scalar) -> optax.GradientTransformation:
    r"""Adam's direction ``\hat m / (\sqrt{\hat v} + ε)`` with bias correction (Kingma & Ba)."""

    def init(params):
        zeros = jax.tree.map(jnp.zeros_like, params)
        return AdamState(zeros, zeros, jnp.zeros([], jnp.int32))

    def update(updates, state, params=None):
        del params
        count = state.count + 1
        mu = jax.tree.map(lambda m, g: _as(b1, g) * m + (1 - _as(b1, g)) * g, state.mu, updates)
        nu = jax.tree.map(lambda v, g: _as(b2, g) * v + (1 - _as(b2, g)) * g * g, state.nu, updates)

        def direction(m, v):
            c = count.astype(m.dtype)
            m_hat = m / (1 - _as(b1, m) ** c)
            v_hat = v / (1 - _as(b2, v) ** c)
            return m_hat / (jnp.sqrt(v_hat) + _as(eps, m))

        return jax.tree.map(direction, mu, nu), AdamState(mu, nu, count)

    return optax.GradientTransformation(init, update)


# --------------------------------------------------------------------------- the one map


class LookaheadState(NamedTuple):
    """State of every rule, in either coordinate system.

    Attributes:
      velocity: last displacement ``u_{i-1} = θ_i − θ_{i-1}`` (Nakerst's ``m^{(i-1)}``);
        zero before the first step.
      inner: state of the direction piece (RMS/Adam moments, EMA, or empty).
      count: number of steps taken.
    """

    velocity: PyTree
    inner: PyTree
    count: jax.Array


def _constant(x: Scalar) -> Callable[[jax.Array], Scalar]:
    return lambda count: x


class Rule(optax.GradientTransformation):
    """An optax ``GradientTransformation`` (Θ view) that also exposes its paper map (θ view).

    Use it anywhere optax is accepted (``init``/``update``, ``optax.chain``); use
    :meth:`map_step` / :func:`dynsim.simulate` for trajectories in the paper's θ.
    Build rules with the factories of this module, not directly.
    """

    # NamedTuple subclass with attributes: fields stay (init, update) so optax.chain
    # and friends unpack it as a plain GradientTransformation.
    name: str
    hyperparams: dict[str, Scalar]
    direction: optax.GradientTransformation
    momentum_fn: Callable[[jax.Array], Scalar]
    sigma_fn: Callable[[jax.Array], Scalar]

    def map_init(self, theta: PyTree) -> LookaheadState:
        """State before the first step (zero velocity)."""
        return self.init(theta)

    def lookahead_point(self, theta: PyTree, state: LookaheadState) -> PyTree:
        """``φ = θ + σ_i u_{i-1}``, where the gradient is taken."""
        s = self.sigma_fn(state.count)
        return jax.tree.map(lambda t, u: t + _as(s, u) * u, theta, state.velocity)

    def map_step(self, grad_fn: Callable[[PyTree], PyTree], theta: PyTree, state: LookaheadState):
        """One step of the map in the paper's coordinates: returns ``(θ_{i+1}, state)``."""
        phi = self.lookahead_point(theta, state)
        # the direction piece sees the look-ahead point as its parameters: that is what the Θ
        # view passes (Θ = φ), e.g. to optax's weight decay
        u, new_state = self._core(grad_fn(phi), state, phi)
        return jax.tree.map(jnp.add, theta, u), new_state

    def to_paper(self, params: PyTree, state: LookaheadState) -> PyTree:
        """Θ (what optax updates) → θ (the paper's coordinates): ``θ = Θ − σ_i u_{i-1}``."""
        s = self.sigma_fn(state.count)
        return jax.tree.map(lambda p, u: p - _as(s, u) * u, params, state.velocity)

    def from_paper(self, theta: PyTree, state: LookaheadState) -> PyTree:
        """θ → Θ; the inverse of :meth:`to_paper`."""
        return self.lookahead_point(theta, state)

    def _core(self, g: PyTree, state: LookaheadState, params: PyTree = None):
        delta, inner = self.direction.update(g, state.inner, params)
        mu = self.momentum_fn(state.count)
        u = jax.tree.map(lambda v, d: _as(mu, v) * v + d, state.velocity, delta)
        return u, LookaheadState(u, inner, state.count + 1)

    def __repr__(self) -> str:
        hp = ", ".join(f"{k}={v!r}" for k, v in self.hyperparams.items())
        return f"{self.name}({hp})"


def lookahead_momentum(
    direction: optax.GradientTransformation,
    momentum: Scalar | Callable[[jax.Array], Scalar] = 0.0,
    sigma: Scalar | Callable[[jax.Array], Scalar] = 0.0,
    *,
    name: str = "lookahead_momentum",
    hyperparams: dict[str, Scalar] | None = None,
) -> Rule:
    r"""Compose a direction piece with look-ahead momentum (the map in the module docstring).

    Args:
      direction: optax-style transformation giving the step ``δ`` from the
        look-ahead gradient (it must include the sign and the learning rate).
      momentum: ``μ`` or a function ``count -> μ_i`` (step ``i = count + 1``).
      sigma: look-ahead ``σ`` or a function ``count -> σ_i``.
    """
    momentum_fn = momentum if callable(momentum) else _constant(momentum)
    sigma_fn = sigma if callable(sigma) else _constant(sigma)

    def init(params):
        return LookaheadState(
            velocity=jax.tree.map(jnp.zeros_like, params),
            inner=direction.init(params),
            count=jnp.zeros([], jnp.int32),
        )

    def update(updates, state, params=None):
        sigma_old = sigma_fn(state.count)
        u, new_state = rule._core(updates, state, params)
        sigma_new = sigma_fn(new_state.count)
        # Θ_{i+1} − Θ_i = (1 + σ_{i+1}) u_i − σ_i u_{i-1}   (see module docstring)
        step = jax.tree.map(
            lambda un, uo: (1 + _as(sigma_new, un)) * un - _as(sigma_old, uo) * uo,
            u,
            state.velocity,
        )
        return step, new_state

    rule = Rule(init, update)
    rule.name = name
    rule.hyperparams = dict(hyperparams or {})
    rule.direction = direction
    rule.momentum_fn = momentum_fn
    rule.sigma_fn = sigma_fn
    return rule


# --------------------------------------------------------------------------- named rules


def gd(learning_rate: Scalar) -> Rule:
    r"""Plain gradient descent, Nakerst eq. (1): ``θ ← θ − η ∇L(θ)``.

    The Euler method for gradient flow θ' = −∇L with step η (Su eq. (4)).

    >>> import jax.numpy as jnp, dynsim
    >>> traj = dynsim.simulate(gd(0.5), lambda t: 0.5 * jnp.sum(t**2), jnp.array([1.0]), 3)
    >>> traj.theta[:, 0].tolist()
    [1.0, 0.5, 0.25, 0.125]
    """
    hyper = _checked("gd", {"learning_rate": (learning_rate, ">=0")})
    return lookahead_momentum(scale_by_learning_rate(learning_rate), name="gd", hyperparams=hyper)


def heavy_ball(learning_rate: Scalar, momentum: Scalar) -> Rule:
    r"""Polyak's heavy ball, Nakerst eq. (2) / Wu eq. (18).

    ``m_i = μ m_{i-1} − η ∇L(θ_i)``, ``θ_{i+1} = θ_i + m_i``.
    """
    hyper = _checked("heavy_ball", {"learning_rate": (learning_rate, ">=0"), "momentum": (momentum, "real")})
    rate = scale_by_learning_rate(learning_rate)
    return lookahead_momentum(rate, momentum, 0.0, name="heavy_ball", hyperparams=hyper)


def nesterov(learning_rate: Scalar, momentum: Scalar) -> Rule:
    r"""Nesterov's accelerated momentum in Sutskever's form, Nakerst eq. (3).

    ``m_i = μ m_{i-1} − η ∇L(θ_i + μ m_{i-1})``; super-acceleration with ``σ = μ``.
    """
    hyper = _checked("nesterov", {"learning_rate": (learning_rate, ">=0"), "momentum": (momentum, "real")})
    rate = scale_by_learning_rate(learning_rate)
    return lookahead_momentum(rate, momentum, momentum, name="nesterov", hyperparams=hyper)


def super_accelerated(learning_rate: Scalar, momentum: Scalar, sigma: Scalar) -> Rule:
    r"""Super-accelerated momentum, Nakerst eq. (4).

    .. math::
        m_i = μ\,m_{i-1} - η\,∇L(θ_i + σ\,m_{i-1}), \qquad θ_{i+1} = θ_i + m_i .

    ``σ = 0`` is heavy ball (2), ``σ = μ`` Nesterov (3). Su's midpoint Nesterov
    (Su eq. (20)), which takes the gradient at ``θ + (β/2)·m``, is ``σ = μ/2``.
    On ``L = kθ²/2`` the map is linear; see :mod:`dynsim.analysis` for its exact rate
    and the critical ``σ*``.

    >>> import jax.numpy as jnp, dynsim
    >>> opt = super_accelerated(0.1, 0.9, 2.0)
    >>> traj = dynsim.simulate(opt, lambda t: 0.5 * jnp.sum(t**2), jnp.array([1.0]), 2)
    >>> [round(x, 6) for x in traj.theta[:, 0].tolist()]   # m0 = -0.1; m1 = 0.9*m0 - 0.1*(0.9 + 2*m0)
    [1.0, 0.9, 0.74]
    """
    hyper = _checked(
        "super_accelerated",
        {"learning_rate": (learning_rate, ">=0"), "momentum": (momentum, "real"), "sigma": (sigma, "real")},
    )
    return lookahead_momentum(
        scale_by_learning_rate(learning_rate), momentum, sigma, name="super_accelerated", hyperparams=hyper
    )


def ema_momentum(learning_rate: Scalar, beta: Scalar, lookahead: bool = False) -> Rule:
    r"""EMA momentum of the student report: ``v ← βv + (1−β)g``, ``θ ← θ − η v``.

    With ``lookahead=True`` the gradient is taken at ``θ − ηβv`` (the report's
    look-ahead ``θ' = θ − βv`` in this normalisation), i.e. ``σ = β`` in
    displacement coordinates since the last step is ``u = −ηv``.

    Equivalent to heavy ball (Nesterov with look-ahead) with ``μ = β`` and learning
    rate ``η(1−β)``; a test checks this.
    """
    if not isinstance(lookahead, bool):
        raise ValueError(f"ema_momentum(lookahead={lookahead!r}): lookahead must be True or False")
    hyper = _checked("ema_momentum", {"learning_rate": (learning_rate, ">=0"), "beta": (beta, "[0,1)")},
                     lookahead=lookahead)
    return lookahead_momentum(
        optax.chain(scale_by_ema(beta), scale_by_learning_rate(learning_rate)),
        0.0,
        beta if lookahead else 0.0,
        name="ema_momentum",
        hyperparams=hyper,
    )


def nesterov_time_varying(learning_rate: Scalar, gamma: Scalar = 3.0) -> Rule:
    r"""Nesterov with momentum ``μ_k = (k−1)/(k+γ−1)`` (Su–Boyd–Candès; Bu et al.).

    The step leaving iterate ``θ_k`` (``k`` steps taken) is
    ``m_k = μ_k m_{k-1} − η∇L(θ_k + μ_k m_{k-1})``, ``θ_{k+1} = θ_k + m_k``. With
    ``γ = 3`` this is Su–Boyd–Candès' form ``x_k = y_{k-1} − s∇f(y_{k-1})``,
    ``y_k = x_k + (k−1)/(k+2)(x_k − x_{k-1})``, whose ``s → 0`` limit is the ODE
    ``x'' + (3/t) x' + ∇L(x) = 0``. ``μ_0`` multiplies a zero velocity; it is set to 0.
    """
    hyper = _checked("nesterov_time_varying", {"learning_rate": (learning_rate, ">=0"), "gamma": (gamma, ">0")})

    def mu(count):  # count = k, the steps already taken
        c = jnp.maximum(jnp.asarray(count, jnp.result_type(float)) - 1, 0)
        return c / (c + gamma)

    return lookahead_momentum(
        scale_by_learning_rate(learning_rate),
        mu,
        mu,
        name="nesterov_time_varying",
        hyperparams=hyper,
    )


def rmsprop_sa(
    learning_rate: Scalar,
    momentum: Scalar,
    sigma: Scalar,
    decay: Scalar = 0.999,
    eps: Scalar = 1e-7,
) -> Rule:
    r"""RMSProp with momentum and super-acceleration, Nakerst eq. (16).

    .. math::
        r_i &= β_2 r_{i-1} + (1-β_2)\,g_i^2, \quad g_i = ∇L(θ_i + σ m_{i-1})\\
        m_i &= μ\,m_{i-1} - η\, g_i / \sqrt{r_i + ε}\\
        θ_{i+1} &= θ_i + m_i .
    """
    hyper = _checked("rmsprop_sa", {"learning_rate": (learning_rate, ">=0"), "momentum": (momentum, "real"),
                                    "sigma": (sigma, "real"), "decay": (decay, "[0,1)"), "eps": (eps, ">=0")})
    return lookahead_momentum(
        optax.chain(scale_by_rms_sa(decay, eps), scale_by_learning_rate(learning_rate)),
        momentum,
        sigma,
        name="rmsprop_sa",
        hyperparams=hyper,
    )


def adam_sa(
    learning_rate: Scalar,
    b1: Scalar = 0.9,
    b2: Scalar = 0.999,
    sigma: Scalar = 0.0,
    eps: Scalar = 1e-8,
) -> Rule:
    r"""Adam with super-acceleration (our derivation; the paper only sketches it, §5).

    .. math::
        g_i &= ∇L(θ_i + σ\,u_{i-1}),\qquad u_{i-1} = θ_i - θ_{i-1}\\
        m_i &= β_1 m_{i-1} + (1-β_1) g_i,\quad v_i = β_2 v_{i-1} + (1-β_2) g_i^2\\
        u_i &= -η\,\hat m_i / (\sqrt{\hat v_i} + ε),\qquad θ_{i+1} = θ_i + u_i .

    *Choice.* In Adam the momentum lives in ``m``; the next step is, to leading
    order, ``β₁`` times the last step plus a gradient term (``v`` varies slowly).
    So "where momentum alone would carry us" is ``θ + β₁ u``, and the look-ahead
    generalises to ``θ + σ u``: ``σ = 0`` is Adam, ``σ = β₁`` is Nesterov-style
    Adam (Nadam-like: Dozat's Nadam applies the same one-step look-ahead through a
    reparametrised update instead), and ``σ > β₁`` super-accelerates, exactly
    parallel to eq. (4). The Θ view of :class:`Rule` gives the reparametrised,
    Nadam-shaped update automatically.
    """
    hyper = _checked("adam_sa", {"learning_rate": (learning_rate, ">=0"), "b1": (b1, "[0,1)"),
                                 "b2": (b2, "[0,1)"), "sigma": (sigma, "real"), "eps": (eps, ">=0")})
    return lookahead_momentum(
        optax.chain(scale_by_adam_sa(b1, b2, eps), scale_by_learning_rate(learning_rate)),
        0.0,
        sigma,
        name="adam_sa",
        hyperparams=hyper,
    )


# --------------------------------------------------------------------------- registry

RULES: dict[str, Callable[..., Rule]] = {
    "gd": gd,
    "heavy_ball": heavy_ball,
    "nesterov": nesterov,
    "super_accelerated": super_accelerated,
    "ema_momentum": ema_momentum,
    "nesterov_time_varying": nesterov_time_varying,
    "rmsprop_sa": rmsprop_sa,
    "adam_sa": adam_sa,
}
#: Rules whose map is linear and homogeneous in (θ − θ*, u, inner state) on a quadratic
#: (their state may be rescaled freely: :mod:`dynsim.metrics`, :mod:`dynsim.tuning`).
LINEAR_RULES = frozenset(
    {"gd", "heavy_ball", "nesterov", "super_accelerated", "ema_momentum", "nesterov_time_varying"}
)
_ALIASES = {"sa": "super_accelerated", "hb": "heavy_ball", "nag": "nesterov", "sgd": "gd"}


def _resolve(name: str) -> Callable[..., Rule]:
    if not isinstance(name, str):
        raise ValueError(f"optimizer={name!r} must be a rule name or a dynsim.optim factory")
    key = _ALIASES.get(name, name)
    if key not in RULES:
        raise ValueError(
            f"optimizer={name!r} is unknown; choose one of {', '.join(RULES)} "
            f"(aliases: {', '.join(_ALIASES)})"
        )
    return RULES[key]


def resolve(optimizer: str | Callable[..., optax.GradientTransformation]) -> tuple[str, Callable]:
    """``(name, factory)`` of an optimizer given by rule name, rule factory or any optax factory.

    A name (or alias) gives the :data:`RULES` entry. Any other callable is taken as a
    factory ``f(**hyperparameters) -> optax.GradientTransformation`` (``optax.adam``, a
    user function composing optax pieces); its name is ``module:qualname`` (the import
    path :func:`dynsim.engine.config.import_object` reads back), or its ``__name__`` for
    the rules of this module. Whether it really returns a transformation is checked where
    it is first called.

    >>> resolve("sa")[0], resolve(super_accelerated)[0]
    ('super_accelerated', 'super_accelerated')
    >>> resolve(optax.adam)[0]
    'optax:adam'
    """
    if isinstance(optimizer, str):
        fn = _resolve(optimizer)
        return fn.__name__, fn
    if isinstance(optimizer, optax.GradientTransformation):
        raise ValueError(
            f"optimizer={optimizer!r} is a transformation, not a factory: pass the function that "
            "builds it (e.g. optax.adam, not optax.adam(1e-3)) so its hyperparameters can be swept"
        )
    if not callable(optimizer):
        raise ValueError(f"optimizer={optimizer!r} must be a rule name or a factory returning an "
                         "optax GradientTransformation")
    for name, fn in RULES.items():
        if fn is optimizer:
            return name, fn
    return callable_name(optimizer), optimizer


def callable_name(fn: Callable) -> str:
    """``module:qualname`` of a function (``optax:adam``); public API modules are preferred.

    optax defines ``adam`` in a private ``_src`` module and re-exports it: the shortest
    importable public parent module that holds the same object is used, so the name reads
    back with :func:`importlib.import_module`.
    """
    import importlib
    import sys

    mod = getattr(fn, "__module__", None) or "?"
    qual = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or type(fn).__name__
    parts = mod.split(".")
    for i in range(1, len(parts)):
        parent = ".".join(parts[:i])
        m = sys.modules.get(parent)
        if m is None:
            try:
                m = importlib.import_module(parent)
            except Exception:
                continue
        if getattr(m, qual, None) is fn:
            return f"{parent}:{qual}"
    return f"{mod}:{qual}"


def hyperparameter_names(optimizer: str | Callable[..., Rule]) -> tuple[str, ...]:
    """Names of a rule's hyperparameters, in factory order."""
    import inspect

    fn = _resolve(optimizer) if isinstance(optimizer, str) else optimizer
    return tuple(
        p.name
        for p in inspect.signature(fn).parameters.values()
        if p.name != "lookahead"
    )


def get(optimizer: str | Callable[..., Rule], **hyperparams) -> Rule:
    """Build a rule by name: ``get("super_accelerated", learning_rate=0.1, momentum=0.9, sigma=2)``."""
    fn = _resolve(optimizer) if isinstance(optimizer, str) else optimizer
    try:
        return fn(**hyperparams)
    except TypeError as e:
        raise ValueError(
            f"optimizer {getattr(fn, '__name__', fn)!r} takes hyperparameters "
            f"{hyperparameter_names(fn)}; got {sorted(hyperparams)}"
        ) from e
