r"""Map ↔ ODE correspondences: momentum hyperparameters from an ODE's coefficients and back.

Su's leapfrog mapping between heavy ball with friction and momentum (Su eqs. (13)-(16)),
Nakerst's three damped oscillators (9)-(11) for the super-accelerated map on
``L = kθ²/2`` with their critical σ (12)-(14), and the exact critical σ of the map.
"""
from __future__ import annotations

import jax.numpy as jnp

from dynsim import analysis

__all__ = [
    "su_momentum_from_ode",
    "su_ode_from_momentum",
    "nakerst_alpha",
    "nakerst_oscillator",
    "nakerst_critical_sigma",
    "sa_critical_sigma",
]


def su_momentum_from_ode(friction, step):
    r"""Momentum hyperparameters ``(β, α)`` of the leapfrog scheme for ``θ'' + λθ' = −∇L``.

    Su eq. (15): with time step γ, half-integer velocities and the trapezoidal rule
    for the friction (eqs. (13)-(14)), ``v_{n+1} = γ η_{n+1/2}`` obeys exactly the
    momentum update ``v_{n+1} = βv_n − α∇L(θ_n)``, ``θ_{n+1} = θ_n + v_{n+1}`` with

    .. math::  β = \frac{1 - λγ/2}{1 + λγ/2}, \qquad α = \frac{γ^2}{1 + λγ/2}.

    So a learning rate α advances the ODE by a step ``γ ≈ √α`` (Su's acceleration
    argument). Inverse: :func:`su_ode_from_momentum`.

    >>> beta, alpha = su_momentum_from_ode(0.2, 0.1)
    >>> round(float(beta), 6), round(float(alpha), 6)
    (0.980198, 0.009901)
    """
    half = friction * step / 2
    return (1 - half) / (1 + half), step * step / (1 + half)


def su_ode_from_momentum(beta, alpha):
    r"""Inverse of :func:`su_momentum_from_ode`: ``(λ, γ)`` from momentum ``(β, α)``.

    From ``λγ/2 = (1−β)/(1+β)``: ``γ = √(2α/(1+β))`` and ``λ = 2(1−β)/((1+β)γ)``.
    Needs ``−1 < β`` and ``α > 0``; ``β ≤ 1`` gives ``λ ≥ 0``.

    >>> lam, gamma = su_ode_from_momentum(*su_momentum_from_ode(0.2, 0.1))
    >>> round(float(lam), 5), round(float(gamma), 5)
    (0.2, 0.1)
    """
    step = jnp.sqrt(2 * alpha / (1 + beta))
    return 2 * (1 - beta) / ((1 + beta) * step), step


# ---------------------------------------------------------------------------
# Nakerst et al.: damped-oscillator ODEs for the super-accelerated map

_WHICH = {9: 9, 10: 10, 11: 11, "forward": 9, "backward": 10, "midpoint": 11}


def _which(which) -> int:
    try:
        return _WHICH[which]
    except (KeyError, TypeError):
        raise ValueError(
            f"which={which!r} must be 9, 10, 11 (Nakerst's equation numbers) or "
            "'forward', 'backward', 'midpoint'"
        ) from None


def nakerst_alpha(k_eta, momentum, sigma):
    """``α = g − kησ − 1`` of Nakerst eq. (6) (negative for a convergent map)."""
    return momentum - k_eta * sigma - 1


def nakerst_oscillator(which, k_eta, momentum, sigma):
    r"""Coefficients ``(A, B)`` of ``x'' + A x' + B x = 0`` approximating the SA map.

    The map ``m_i = g m_{i−1} − kη(θ_i + σm_{i−1})``, ``θ_{i+1} = θ_i + m_i`` (Nakerst
    eq. (5)) is read as a difference scheme with unit time step, ``α = g − kησ − 1``:

    * ``9`` / ``'forward'``: ``m_i − m_{i−1} ≈ x''``, both m's ≈ x' — eq. (9),
      ``A = −α, B = kη``;
    * ``10`` / ``'backward'``: ``m_i ≈ x'`` also in the first line — eq. (10),
      ``A = −α/(1+α), B = kη/(1+α)``;
    * ``11`` / ``'midpoint'``: ``(m_i + m_{i−1})/2 ≈ x'`` — eq. (11),
      ``A = −α/(1+α/2), B = kη/(1+α/2)``.

    To compare with the map started at ``θ₀ = 1, m_{−1} = 0`` use ``x(0) = 1,
    x'(0) = 0``. All three are first-order accurate; (11) is empirically the best
    (Nakerst §2.2, and our ``nakerst-fig2bc``).

    >>> [round(float(c), 6) for c in nakerst_oscillator(11, 0.01, 0.9, 1.0)]
    [0.116402, 0.010582]
    """
    w = _which(which)
    a = nakerst_alpha(k_eta, momentum, sigma)
    den = {9: 1.0, 10: 1 + a, 11: 1 + a / 2}[w]
    return -a / den, k_eta / den


def nakerst_critical_sigma(which, k_eta, momentum):
    r"""σ at which ODE ``which`` is critically damped, ``A² = 4B`` (Nakerst (12)-(14)).

    Derivation, with ``α = g − 1 − kησ < 0`` and then ``σ = (g − 1 − α)/kη``:

    * (9): ``α² = 4kη`` ⇒ ``α = −2√kη`` ⇒ ``σ* = 2/√kη − (1−g)/kη``  — eq. (12);
    * (10): ``α² = 4kη(1+α)`` ⇒ ``α = 2kη − 2√(kη(1+kη))`` ⇒
      ``σ* = −2 + 2√(1 + 1/kη) − (1−g)/kη`` — eq. (13);
    * (11): ``α² = 4kη(1+α/2)`` ⇒ ``α = kη − √(k²η² + 4kη)`` ⇒
      ``σ* = −1 + √(1 + 4/kη) − (1−g)/kη`` — eq. (14).

    The exact value from the map is :func:`sa_critical_sigma`; (11) differs from it by
    ``√(1+4/kη) − 2/√kη ≈ √kη/4``, (9) by +1 and (10) by ≈ −1.

    >>> [round(float(nakerst_critical_sigma(w, 0.01, 0.9)), 6) for w in (9, 10, 11)]
    [10.0, 8.09975, 9.024984]
    """
    formula = {9: analysis.sigma_star_ode12, 10: analysis.sigma_star_ode13, 11: analysis.sigma_star_ode14}
    return formula[_which(which)](k_eta, momentum)


def sa_critical_sigma(k_eta, momentum):
    r"""Exact critical (and optimal) σ of the SA map on ``L = kθ²/2``.

    The companion matrix ``[[1−kη, b], [−kη, b]]`` (``b = g − kησ``) has the
    characteristic polynomial ``λ² − (1+b−kη)λ + b``; its discriminant vanishes at
    ``b = (1 ± √kη)²``, and the stable root gives

    .. math::  σ^* = \frac{g - (1 - \sqrt{kη})^2}{kη} = \frac{2}{\sqrt{kη}} - \frac{1-g}{kη} - 1,

    which is Nakerst's eq. (12) minus one: :func:`dynsim.analysis.critical_sigma`, which computes it.

    >>> round(float(sa_critical_sigma(0.01, 0.9)), 4)
    9.0
    """
    return analysis.critical_sigma(k_eta, momentum)

