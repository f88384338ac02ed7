r"""The named rules: factories for GD, heavy ball, Nesterov, super-acceleration and friends.

Each factory validates its hyperparameters (:func:`_checked`: only values at which the
map is undefined are refused) and builds one :func:`~dynsim.optim.lookahead_momentum`:
GD (Nakerst eq. (1)), heavy ball (eq. (2), Wu eq. (18)), Nesterov (eq. (3)),
super-acceleration (eq. (4); Su eq. (20) is ``σ = μ/2``), EMA momentum, Nesterov with
time-varying momentum (Su–Boyd–Candès), RMSProp (eq. (16)) and Adam with
super-acceleration.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax

from dynsim.optim.core import Rule, Scalar, lookahead_momentum
from dynsim.optim.transforms import scale_by_adam_sa, scale_by_ema, scale_by_learning_rate, scale_by_rms_sa

__all__ = [
    "gd",
    "heavy_ball",
    "nesterov",
    "super_accelerated",
    "ema_momentum",
    "nesterov_time_varying",
    "rmsprop_sa",
    "adam_sa",
]


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

