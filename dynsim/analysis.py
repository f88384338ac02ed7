r"""Exact analysis of the super-accelerated map on ``L = kθ²/2``.

**Derivation.** On the parabola, eq. (5) of Nakerst et al. is linear in the state
``x_i = (θ_i, m_{i-1})``. With ``b = g − kησ`` (``g`` the momentum)

.. math::
    m_i = b\,m_{i-1} - kη\,θ_i,\qquad θ_{i+1} = (1-kη)\,θ_i + b\,m_{i-1},

so ``x_{i+1} = M x_i`` with the companion matrix

.. math::  M = \begin{pmatrix} 1-kη & b \\ -kη & b \end{pmatrix},\qquad
           \chi(λ) = λ^2 - (1 + b - kη)\,λ + b .

Everything follows from χ:

* discriminant ``Δ = (1+b−kη)² − 4b``: ``Δ<0`` under-damped (complex pair,
  ``|λ| = √b``), ``Δ=0`` critical, ``Δ>0`` over-damped;
* the asymptotic rate per step is the spectral radius ``ρ = max|λ|`` and the
  paper's timescale is ``T = −1/ln ρ``;
* ``Δ = 0`` ⇔ ``(√b − 1)² = kη`` ⇔ ``b* = (1 − √kη)²`` (the root with
  ``b* < 1``; the other, ``(1+√kη)²``, is unstable). Hence the exact critical

  .. math::  σ^* = \frac{g - (1-\sqrt{kη})^2}{kη} = \frac{2}{\sqrt{kη}} - \frac{1-g}{kη} - 1,

  i.e. the paper's ODE estimate (12) minus one. ``σ*`` minimises ``ρ`` over σ
  and ``ρ(σ*) = |1 − √kη|``. On the under-damped side ``ρ = √b`` decreases with
  σ; past ``σ*`` the larger real root grows again.
* ``σ* < 0`` exactly when ``kη < (1 − √g)²``; for ``g = 0.9`` that is
  ``kη < 0.0026334``, which the paper found numerically as ≈ 0.0027 (§2.4).
* Jury's conditions give the stable σ-interval
  ``(g−1)/kη < σ < (g+1)/kη − 1/2`` (``|b| < 1`` and ``χ(−1) > 0``).

All functions take arrays (broadcast together) and are differentiable with JAX,
except exactly at ``Δ = 0`` where ``ρ(σ)`` has a kink: its one-sided derivatives
there are ``−kη/(2√b*)`` from the under-damped side and ``+∞`` from the
over-damped side (the square root of ``Δ`` opens vertically). Gradient code should
therefore not rely on ``∂ρ/∂σ`` at σ*; :mod:`dynsim.tune` smooths it.
"""
from __future__ import annotations

import jax.numpy as jnp

__all__ = [
    "REGIMES",
    "companion_matrix",
    "characteristic_coefficients",
    "eigenvalues",
    "spectral_radius",
    "regime",
    "timescale",
    "critical_sigma",
    "min_spectral_radius",
    "stable_sigma_interval",
    "sigma_star_ode12",
    "sigma_star_ode13",
    "sigma_star_ode14",
    "k_eta_sigma_star_zero",
    "spectral_radius_quadratic",
]

REGIMES = ("underdamped", "critical", "overdamped", "unstable")


def _b(k_eta, momentum, sigma):
    k_eta, momentum, sigma = jnp.broadcast_arrays(
        *(jnp.asarray(x, dtype=jnp.result_type(float, x)) for x in (k_eta, momentum, sigma))
    )
    return k_eta, momentum - k_eta * sigma


def characteristic_coefficients(k_eta, momentum, sigma):
    """``(p, b)`` with ``χ(λ) = λ² − pλ + b``: trace ``p = 1 + b − kη`` and determinant ``b``."""
    k_eta, b = _b(k_eta, momentum, sigma)
    return 1 + b - k_eta, b


def companion_matrix(k_eta, momentum, sigma):
    """``M`` acting on ``(θ_i, m_{i-1})``; shape ``(..., 2, 2)``."""
    k_eta, b = _b(k_eta, momentum, sigma)
    row0 = jnp.stack([1 - k_eta, b], axis=-1)
    row1 = jnp.stack([-k_eta, b], axis=-1)
    return jnp.stack([row0, row1], axis=-2)


def eigenvalues(k_eta, momentum, sigma):
    """Both eigenvalues of :func:`companion_matrix`, complex, shape ``(..., 2)``.

    The larger-modulus one is first.
    """
    p, b = characteristic_coefficients(k_eta, momentum, sigma)
    sq = jnp.sqrt((p * p - 4 * b).astype(jnp.result_type(p.dtype, jnp.complex64)))
    # Pick the sign that avoids cancellation, then use λ₁λ₂ = b (stable for tiny b).
    sgn = jnp.where(jnp.real(p) >= 0, 1.0, -1.0)
    l1 = (p + sgn * sq) / 2
    l2 = jnp.where(l1 == 0, 0.0, b / jnp.where(l1 == 0, 1.0, l1))
    return jnp.stack([l1, l2], axis=-1)


def spectral_radius(k_eta, momentum, sigma):
    r"""Exact asymptotic contraction per step, ``ρ = max|λ|``.

    Written without complex arithmetic so ``jax.grad`` works: ``√|b|`` when
    ``Δ < 0``, else ``(|p| + √Δ)/2``.

    >>> round(float(spectral_radius(0.25, 0.5, 0.0)), 6)   # b = 0.5, p = 1.25, Δ < 0 → √0.5
    0.707107
    """
    p, b = characteristic_coefficients(k_eta, momentum, sigma)
    disc = p * p - 4 * b
    real = disc >= 0
    # double-where keeps gradients finite on the branch that is not taken
    sqrt_disc = jnp.sqrt(jnp.where(real, disc, 1.0))
    sqrt_b = jnp.sqrt(jnp.where(real, 1.0, jnp.abs(b)))
    return jnp.where(real, (jnp.abs(p) + sqrt_disc) / 2, sqrt_b)


def regime(k_eta, momentum, sigma, rtol: float = 1e-9):
    """Regime code per point: index into :data:`REGIMES`.

    ``critical`` when ``|Δ| ≤ rtol·(p² + 4|b|)``; ``unstable`` when ``ρ ≥ 1``
    (takes precedence).
    """
    p, b = characteristic_coefficients(k_eta, momentum, sigma)
    disc = p * p - 4 * b
    scale = p * p + 4 * jnp.abs(b)
    code = jnp.where(jnp.abs(disc) <= rtol * scale, 1, jnp.where(disc < 0, 0, 2))
    return jnp.where(spectral_radius(k_eta, momentum, sigma) >= 1, 3, code)


def timescale(k_eta, momentum, sigma):
    """The paper's relaxation time ``T = −1/ln ρ`` (``inf`` when ``ρ ≥ 1``)."""
    rho = spectral_radius(k_eta, momentum, sigma)
    return jnp.where(rho < 1, -1.0 / jnp.log(jnp.minimum(rho, 1 - 1e-300)), jnp.inf)


def critical_sigma(k_eta, momentum):
    r"""Exact σ* of critical damping: ``(g − (1 − √kη)²)/kη``; minimises ρ over σ.

    >>> round(float(critical_sigma(0.01, 0.9)), 12)   # (0.9 - 0.81)/0.01
    9.0
    """
    k_eta = jnp.asarray(k_eta, dtype=jnp.result_type(float, k_eta))
    return (momentum - (1 - jnp.sqrt(k_eta)) ** 2) / k_eta


def min_spectral_radius(k_eta):
    """``ρ(σ*) = |1 − √kη|``: the best rate any σ reaches at this kη (any momentum)."""
    return jnp.abs(1 - jnp.sqrt(jnp.asarray(k_eta, dtype=jnp.result_type(float, k_eta))))


def stable_sigma_interval(k_eta, momentum):
    """``(σ_lo, σ_hi)``: the map is stable (ρ < 1) iff ``σ_lo < σ < σ_hi`` (Jury)."""
    k_eta = jnp.asarray(k_eta, dtype=jnp.result_type(float, k_eta))
    return (momentum - 1) / k_eta, (momentum + 1) / k_eta - 0.5


def sigma_star_ode12(k_eta, momentum):
    r"""Nakerst eq. (12), from ODE (9): ``2/√kη − (1−g)/kη``."""
    k_eta = jnp.asarray(k_eta, dtype=jnp.result_type(float, k_eta))
    return 2 / jnp.sqrt(k_eta) - (1 - momentum) / k_eta


def sigma_star_ode13(k_eta, momentum):
    r"""Nakerst eq. (13), from ODE (10): ``−2 + 2√(1 + 1/kη) − (1−g)/kη``."""
    k_eta = jnp.asarray(k_eta, dtype=jnp.result_type(float, k_eta))
    return -2 + 2 * jnp.sqrt(1 + 1 / k_eta) - (1 - momentum) / k_eta


def sigma_star_ode14(k_eta, momentum):
    r"""Nakerst eq. (14), from ODE (11): ``−1 + √(1 + 4/kη) − (1−g)/kη``."""
    k_eta = jnp.asarray(k_eta, dtype=jnp.result_type(float, k_eta))
    return -1 + jnp.sqrt(1 + 4 / k_eta) - (1 - momentum) / k_eta


def k_eta_sigma_star_zero(momentum):
    r"""The exact kη below which σ* < 0: ``(1 − √g)²`` (paper: ≈ 0.0027 for g = 0.9).

    >>> round(float(k_eta_sigma_star_zero(0.9)), 7)
    0.0026334
    """
    return (1 - jnp.sqrt(jnp.asarray(momentum, dtype=jnp.result_type(float, momentum)))) ** 2


def spectral_radius_quadratic(hessian_eigenvalues, learning_rate, momentum, sigma):
    """Worst-mode rate on an N-dim quadratic: ``max_i ρ(k_i η, μ, σ)``.

    ``hessian_eigenvalues`` has the modes on its last axis; the hyperparameters
    broadcast against the remaining axes.
    """
    k = jnp.asarray(hessian_eigenvalues)
    lr, mu, s = (jnp.asarray(x)[..., None] for x in (learning_rate, momentum, sigma))
    return jnp.max(spectral_radius(k * lr, mu, s), axis=-1)
