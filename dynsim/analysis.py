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
therefore not rely on ``∂ρ/∂σ`` at σ*; :mod:`dynsim.tuning` smooths it.

**Optimal σ on a spectrum.** On an N-dim
quadratic the asymptotic rate of the super-accelerated map is the worst mode's,
``R(σ) = max_i ρ(k_i η, g, σ)``. Each ``ρ_i`` decreases in σ while mode ``i`` is
under-damped (``ρ = √(g − k_iησ)``) and increases once it is over-damped, so ``R`` is
quasi-convex and :func:`optimal_sigma_spectrum` finds its minimiser by a dense grid
and golden-section refinement. :func:`two_mode_optimal_sigma` is the closed form for
two modes: the optimum is a critical point ``σ*_i`` or the σ where one mode's
under-damped rate ``√(g − uσ)`` equals the other's over-damped rate, a cubic in ρ.
At ``σ = 0`` every under-damped mode has ``ρ = √g`` and every over-damped one
``ρ > √g``; hence (:func:`superacceleration_helps`) **σ > 0 beats heavy ball on
the worst mode iff** ``k_min η > (1 − √g)²`` — the 1-D threshold of Nakerst §2.4
applied to the flattest direction. :func:`spectrum_family` gives the test spectra
(condition number κ) and :func:`late_rate_check` compares a measured late-time loss decay
with the worst mode's ``2 ln ρ``.
"""
from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from dynsim.cycles import log_slope
from dynsim.labelled import broadcast_by_name
from dynsim.numerics import golden_section_traced

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
    "worst_mode_rate",
    "optimal_sigma_spectrum",
    "two_mode_optimal_sigma",
    "superacceleration_helps",
    "SPECTRUM_FAMILIES",
    "spectrum_family",
    "late_rate_check",
]

REGIMES = ("underdamped", "critical", "overdamped", "unstable")


def _b(k_eta, momentum, sigma):
    k_eta, momentum, sigma = jnp.broadcast_arrays(
        *(jnp.asarray(x, dtype=jnp.result_type(float, x)) for x in (k_eta, momentum, sigma))
    )
    return k_eta, momentum - k_eta * sigma


@broadcast_by_name(arrays=("k_eta", "momentum", "sigma"), outputs=2)
def characteristic_coefficients(k_eta, momentum, sigma):
    """``(p, b)`` with ``χ(λ) = λ² − pλ + b``: trace ``p = 1 + b − kη`` and determinant ``b``."""
    k_eta, b = _b(k_eta, momentum, sigma)
    return 1 + b - k_eta, b


@broadcast_by_name(arrays=("k_eta", "momentum", "sigma"), output_dims=("row", "column"))
def companion_matrix(k_eta, momentum, sigma):
    """``M`` acting on ``(θ_i, m_{i-1})``; shape ``(..., 2, 2)``."""
    k_eta, b = _b(k_eta, momentum, sigma)
    row0 = jnp.stack([1 - k_eta, b], axis=-1)
    row1 = jnp.stack([-k_eta, b], axis=-1)
    return jnp.stack([row0, row1], axis=-2)


@broadcast_by_name(arrays=("k_eta", "momentum", "sigma"), output_dims=("eigenvalue",))
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


@broadcast_by_name(arrays=("k_eta", "momentum", "sigma"))
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


@broadcast_by_name(arrays=("k_eta", "momentum", "sigma"))
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


@broadcast_by_name(arrays=("k_eta", "momentum", "sigma"))
def timescale(k_eta, momentum, sigma):
    """The paper's relaxation time ``T = −1/ln ρ`` (``inf`` when ``ρ ≥ 1``)."""
    rho = spectral_radius(k_eta, momentum, sigma)
    return jnp.where(rho < 1, -1.0 / jnp.log(jnp.minimum(rho, 1 - 1e-300)), jnp.inf)


@broadcast_by_name(arrays=("k_eta", "momentum"))
def critical_sigma(k_eta, momentum):
    r"""Exact σ* of critical damping: ``(g − (1 − √kη)²)/kη``; minimises ρ over σ.

    >>> round(float(critical_sigma(0.01, 0.9)), 12)   # (0.9 - 0.81)/0.01
    9.0
    """
    k_eta = jnp.asarray(k_eta, dtype=jnp.result_type(float, k_eta))
    return (momentum - (1 - jnp.sqrt(k_eta)) ** 2) / k_eta


@broadcast_by_name(arrays=("k_eta",))
def min_spectral_radius(k_eta):
    """``ρ(σ*) = |1 − √kη|``: the best rate any σ reaches at this kη (any momentum)."""
    return jnp.abs(1 - jnp.sqrt(jnp.asarray(k_eta, dtype=jnp.result_type(float, k_eta))))


@broadcast_by_name(arrays=("k_eta", "momentum"), outputs=2)
def stable_sigma_interval(k_eta, momentum):
    """``(σ_lo, σ_hi)``: the map is stable (ρ < 1) iff ``σ_lo < σ < σ_hi`` (Jury)."""
    k_eta = jnp.asarray(k_eta, dtype=jnp.result_type(float, k_eta))
    return (momentum - 1) / k_eta, (momentum + 1) / k_eta - 0.5


@broadcast_by_name(arrays=("k_eta", "momentum"))
def sigma_star_ode12(k_eta, momentum):
    r"""Nakerst eq. (12), from ODE (9): ``2/√kη − (1−g)/kη``."""
    k_eta = jnp.asarray(k_eta, dtype=jnp.result_type(float, k_eta))
    return 2 / jnp.sqrt(k_eta) - (1 - momentum) / k_eta


@broadcast_by_name(arrays=("k_eta", "momentum"))
def sigma_star_ode13(k_eta, momentum):
    r"""Nakerst eq. (13), from ODE (10): ``−2 + 2√(1 + 1/kη) − (1−g)/kη``."""
    k_eta = jnp.asarray(k_eta, dtype=jnp.result_type(float, k_eta))
    return -2 + 2 * jnp.sqrt(1 + 1 / k_eta) - (1 - momentum) / k_eta


@broadcast_by_name(arrays=("k_eta", "momentum"))
def sigma_star_ode14(k_eta, momentum):
    r"""Nakerst eq. (14), from ODE (11): ``−1 + √(1 + 4/kη) − (1−g)/kη``."""
    k_eta = jnp.asarray(k_eta, dtype=jnp.result_type(float, k_eta))
    return -1 + jnp.sqrt(1 + 4 / k_eta) - (1 - momentum) / k_eta


@broadcast_by_name(arrays=("momentum",))
def k_eta_sigma_star_zero(momentum):
    r"""The exact kη below which σ* < 0: ``(1 − √g)²`` (paper: ≈ 0.0027 for g = 0.9).

    >>> round(float(k_eta_sigma_star_zero(0.9)), 7)
    0.0026334
    """
    return (1 - jnp.sqrt(jnp.asarray(momentum, dtype=jnp.result_type(float, momentum)))) ** 2


@broadcast_by_name(arrays=("hessian_eigenvalues", "learning_rate", "momentum", "sigma"), modes="hessian_eigenvalues")
def spectral_radius_quadratic(hessian_eigenvalues, learning_rate, momentum, sigma):
    """Worst-mode rate on an N-dim quadratic: ``max_i ρ(k_i η, μ, σ)``.

    ``hessian_eigenvalues`` has the modes on its last axis; the hyperparameters
    broadcast against the remaining axes.
    """
    k = jnp.asarray(hessian_eigenvalues)
    lr, mu, s = (jnp.asarray(x)[..., None] for x in (learning_rate, momentum, sigma))
    return jnp.max(spectral_radius(k * lr, mu, s), axis=-1)


# --------------------------------------------------------------------------- optimal σ on a spectrum


@broadcast_by_name(arrays=("eigenvalues", "learning_rate", "momentum", "sigma"), modes="eigenvalues")
def worst_mode_rate(eigenvalues, learning_rate, momentum, sigma):
    """``R(σ) = max_i ρ(k_i η, g, σ)`` (alias of :func:`spectral_radius_quadratic`)."""
    return spectral_radius_quadratic(eigenvalues, learning_rate, momentum, sigma)


def _optimal_sigma_scalar(eig, lr, mu, num: int, iters: int):
    kmax = jnp.max(eig) * lr
    lo = (mu - 1.0) / kmax  # Jury bounds of the stiffest mode (the others' are wider)
    hi = (mu + 1.0) / kmax - 0.5
    ok = hi > lo
    h = jnp.where(ok, hi - lo, 1.0)
    grid = lo + h * (jnp.arange(1, num + 1) / (num + 1))  # open interval
    r = spectral_radius_quadratic(eig, lr, mu, grid)
    j = jnp.argmin(r)
    a = jnp.where(j > 0, grid[jnp.maximum(j - 1, 0)], lo)
    b = jnp.where(j < num - 1, grid[jnp.minimum(j + 1, num - 1)], hi)
    def f(s):
        return spectral_radius_quadratic(eig, lr, mu, s)
    s, fs = golden_section_traced(f, a, b, iters)  # R is quasi-convex: the bracket holds the minimiser
    # the optimum may sit exactly on a mode's critical σ*, where R has a √-kink that golden
    # section resolves only to √ε in ρ: offer every σ*_i as a candidate too
    crit = jnp.clip(critical_sigma(eig * lr, mu), lo, hi)
    cand = jnp.concatenate([jnp.stack([s, grid[j]]), crit])
    rc = jnp.concatenate([jnp.stack([fs, r[j]]), jax.vmap(f)(crit)])
    k = jnp.argmin(rc)
    nan = jnp.asarray(jnp.nan, s.dtype)
    return jnp.where(ok, cand[k], nan), jnp.where(ok, rc[k], nan)


@broadcast_by_name(arrays=("eigenvalues", "learning_rate", "momentum"), modes="eigenvalues", outputs=2)
def optimal_sigma_spectrum(eigenvalues, learning_rate, momentum, *, num: int = 2049, iters: int = 80):
    r"""σ minimising the worst-mode rate ``max_i ρ(k_i η, g, σ)``; returns ``(σ_opt, ρ_opt)``.

    Exact up to the refinement tolerance: a dense grid over the stable σ-interval of the
    stiffest mode, ``((g−1)/k_max η, (g+1)/k_max η − 1/2)``, then golden section on
    the bracket around the grid minimum (``R`` is quasi-convex, so the bracket holds
    the minimiser); every mode's critical σ*ᵢ is also tried, since an optimum on a
    √-kink is otherwise resolved only to √ε in ρ. ``learning_rate`` and ``momentum`` broadcast; NaN where no σ is
    stable. One mode reduces to :func:`critical_sigma`.

    >>> s, r = optimal_sigma_spectrum(jnp.array([1.0]), 0.01, 0.9)
    >>> round(float(s), 6), round(float(r), 6)          # σ* = 9, ρ = 1 − √0.01
    (9.0, 0.9)
    """
    eig = jnp.asarray(eigenvalues)
    if eig.ndim != 1 or eig.shape[0] == 0:
        raise ValueError(f"eigenvalues must be a non-empty 1-D array, got shape {eig.shape}")
    if not isinstance(eig, jax.core.Tracer) and not bool(jnp.all(eig > 0)):
        raise ValueError("eigenvalues must all be > 0")
    if int(num) < 3:
        raise ValueError(f"num={num!r} must be >= 3")
    lr, mu = jnp.broadcast_arrays(
        *(jnp.asarray(x, dtype=jnp.result_type(float, eig.dtype)) for x in (learning_rate, momentum))
    )
    flat = _optimal_sigma_batch(eig, lr.reshape(-1), mu.reshape(-1), int(num), int(iters))
    return tuple(v.reshape(lr.shape) for v in flat)


@functools.partial(jax.jit, static_argnums=(3, 4))
def _optimal_sigma_batch(eig, lr, mu, num, iters):
    return jax.vmap(lambda a, b: _optimal_sigma_scalar(eig, a, b, num, iters))(lr, mu)


@broadcast_by_name(arrays=("eigenvalues", "learning_rate", "momentum"), modes="eigenvalues")
def superacceleration_helps(eigenvalues, learning_rate, momentum):
    r"""Whether some σ > 0 beats heavy ball (σ = 0) on the worst-mode rate.

    True iff every mode is under-damped under heavy ball, i.e.
    ``k_min η > (1 − √g)²`` (and the stiffest mode is heavy-ball stable with
    ``k_max η < (1 + √g)²``): then ``ρ_i = √(g − k_iησ)`` falls for all modes as σ
    grows from 0; otherwise an over-damped mode, whose rate rises with σ, is already
    the worst at σ = 0.
    """
    k = jnp.asarray(eigenvalues) * jnp.asarray(learning_rate)[..., None]
    sg = jnp.sqrt(jnp.asarray(momentum))[..., None]
    return jnp.all((k > (1 - sg) ** 2) & (k < (1 + sg) ** 2), axis=-1)


def two_mode_optimal_sigma(k_eta_small, k_eta_large, momentum):
    r"""Closed-form optimum of ``max(ρ(a, g, σ), ρ(A, g, σ))`` for two modes ``a = k₁η``, ``A = k₂η``.

    Candidates: the critical points ``σ*(a)``, ``σ*(A)`` (one mode critically damped
    and dominant), and the balance points where an under-damped mode ``U`` (kη = u,
    ``ρ² = g − uσ``) and an over-damped mode ``O`` (kη = o, real root ``λ = sρ``,
    ``s = ±1``) have equal rates. Substituting ``σ = (g − ρ²)/u`` into
    ``λ² − (1 + b_O − o)λ + b_O = 0`` with ``b_O = g − oσ`` and ``r = o/u`` gives the cubic

    .. math::  −s\,r\,ρ^3 + (1 + r)\,ρ^2 − s\,(1 − o + g(1 − r))\,ρ + g(1 − r) = 0 .

    The answer is the admissible candidate with the smallest worst rate. NumPy,
    float64, scalars. Returns ``(σ_opt, ρ_opt, kind)``, ``kind`` one of
    ``"critical-small"``, ``"critical-large"``, ``"balance"``.
    """
    a, A, g = float(k_eta_small), float(k_eta_large), float(momentum)
    if not (a > 0 and A > 0):
        raise ValueError(f"k_eta_small={a}, k_eta_large={A} must be > 0")

    def rho(k, s):  # max |root| of λ² − (1 + b − k)λ + b, b = g − kσ (plain float64)
        b = g - k * s
        p = 1 + b - k
        disc = p * p - 4 * b
        return (abs(p) + math.sqrt(disc)) / 2 if disc >= 0 else math.sqrt(abs(b))

    def crit(k):
        return (g - (1 - math.sqrt(k)) ** 2) / k

    def worst(s):
        return max(rho(a, s), rho(A, s))

    cands = [(crit(a), "critical-small"), (crit(A), "critical-large")]
    for u, o in ((a, A), (A, a)):
        r = o / u
        for s in (1.0, -1.0):
            coeffs = [-s * r, 1 + r, -s * (1 - o + g * (1 - r)), g * (1 - r)]
            for root in np.roots(coeffs):
                if abs(root.imag) > 1e-9 * max(1.0, abs(root.real)):
                    continue
                p = root.real
                if not 0 < p < 1:
                    continue
                sig = (g - p * p) / u
                # admissible: U under-damped and O over-damped with the assumed sign, same rate
                pu, bu = 1 + (g - u * sig) - u, g - u * sig
                po, bo = 1 + (g - o * sig) - o, g - o * sig
                if pu * pu - 4 * bu > 1e-12 or po * po - 4 * bo < -1e-12 or np.sign(po) != s:
                    continue
                if abs(rho(u, sig) - rho(o, sig)) > 1e-8:
                    continue
                cands.append((sig, "balance"))
    best = min(cands, key=lambda c: worst(c[0]))
    return best[0], worst(best[0]), best[1]


SPECTRUM_FAMILIES = ("two-point", "log-uniform")


def spectrum_family(kind: str, kappa, n: int = 50):
    """Hessian spectra with largest eigenvalue 1 and condition number κ (traceable in κ).

    ``"two-point"``: ``{1/κ, 1}``; ``"log-uniform"``: ``n`` values log-evenly spaced in
    ``[1/κ, 1]``, with the extremes exactly ``1/κ`` and ``1`` (as ``numpy.geomspace``).

    >>> spectrum_family("log-uniform", 100.0, 3).tolist()
    [0.01, 0.1, 1.0]
    """
    kappa = jnp.asarray(kappa, dtype=jnp.result_type(float, kappa))
    if kind == "two-point":
        return jnp.stack([1.0 / kappa, jnp.ones_like(kappa)])
    if kind == "log-uniform":
        k = jnp.exp(jnp.linspace(-jnp.log(kappa), 0.0, int(n)))
        return k.at[0].set(1.0 / kappa).at[-1].set(1.0)
    raise ValueError(f"kind={kind!r} must be one of {', '.join(SPECTRUM_FAMILIES)}")


def late_rate_check(excess, eigenvalues, learning_rate, momentum, sigma, *, separation: float = 1e-8):
    r"""Measured late-time slope of ``log(L − L*)`` versus ``2 ln ρ_worst`` (loss ``∝ ρ^{2t}``).

    On a quadratic ``L − L* = Σ_i k_i γ_i²/2`` over Hessian modes, each decaying like
    its own ``ρ_i^t``; once the second-slowest mode is down by ``separation`` in loss,
    at ``t_a = ln(separation) / (2 ln(ρ₂/ρ₁))``, only the worst mode is left and the
    log-loss falls by ``2 ln ρ₁`` per step. The slope is fitted
    (:func:`dynsim.cycles.log_slope`) from ``t_a`` to the end of ``excess``
    (``L_t − L*``, ``t = 0, 1, …``). Returns ``(measured, predicted, t_a)``.
    """
    k = np.asarray(eigenvalues)
    rho_modes = np.sort(np.asarray(spectral_radius(k * learning_rate, momentum, sigma)))[::-1]
    rho1 = float(spectral_radius_quadratic(k, learning_rate, momentum, sigma))
    rho2 = float(rho_modes[1])
    t_a = int(math.ceil(math.log(separation) / (2 * math.log(rho2 / rho1))))
    t = np.arange(len(excess))
    slope, _ = log_slope(jnp.asarray(excess), jnp.asarray(t >= t_a))
    return float(slope), 2 * math.log(rho1), t_a


# --------------------------------------------------------------------------- edge of stability


def _check_learning_rate(call: str, learning_rate) -> None:
    if isinstance(learning_rate, jax.core.Tracer):
        return
    lr = np.asarray(learning_rate, dtype=float)
    if not np.all(np.isfinite(lr) & (lr > 0)):
        raise ValueError(f"{call}: learning_rate={learning_rate!r} must be finite and > 0")


@broadcast_by_name(arrays=("learning_rate", "momentum", "sigma"), outputs=2)
def stable_curvature_interval(learning_rate, momentum, sigma):
    r"""``(k_lo, k_hi)``: the super-accelerated map on ``L = kθ²/2`` is stable iff ``k_lo < k < k_hi``.

    **Derivation (Jury).** The monic quadratic ``χ(λ) = λ² − pλ + b`` of
    :func:`companion_matrix` (``p = 1 + b − kη``, ``b = μ − kησ``) has both roots inside
    the unit circle iff ``χ(1) > 0``, ``χ(−1) > 0`` and ``|b| < 1``. Each is *linear in k*:

    ====  ======================================  =========================================
    J1    ``χ(1) = kη > 0``                       ``k > 0``  (a concave mode always escapes)
    J2    ``χ(−1) = 2(1+μ) − kη(1+2σ) > 0``        ``k < 2(1+μ)/(η(1+2σ))`` if ``1+2σ > 0``
    J3    ``1 − b = 1 − μ + kησ > 0``              ``k < (μ−1)/(ησ)`` if ``σ < 0``
    J4    ``1 + b = 1 + μ − kησ > 0``              ``k < (1+μ)/(ησ)`` if ``σ > 0``
    ====  ======================================  =========================================

    (with the inequality reversed into a lower bound when the coefficient of ``k`` has
    the other sign), so the stable curvatures form one interval, returned here
    (``k_lo ≥ 0``; NaN, NaN when it is empty; ``k_hi = inf`` when unbounded). Which
    condition fails at ``k_hi`` says how the map loses stability: J2 -- an eigenvalue
    through ``−1`` (flip / period doubling: the iterate oscillates along the top Hessian
    eigenvector, the edge-of-stability signature); J3 -- the complex pair through
    ``|λ| = √b = 1`` (Neimark-Sacker); J4 -- ``b = −1``.

    For ``|μ| < 1``: J1 gives ``k_lo = 0``; for ``σ > 0`` J4 never binds
    (``(1+μ)/(ησ) > 2(1+μ)/(η(1+2σ))`` as ``1+2σ > 2σ``) and J3 is a negative lower
    bound; for ``σ < 0`` J3 binds before J2 exactly when ``σ < −(1−μ)/4`` (the two
    bounds meet at ``k = 4/η`` there). Hence :func:`stability_threshold`'s closed form
    ``2(1+μ)/(η(1+2σ))`` is the binding one for ``|μ| < 1`` and ``σ ≥ −(1−μ)/4`` --
    every GD, heavy-ball, Nesterov and super-accelerated setting in practice. ``μ ≥ 1``
    makes ``k_lo > 0`` (J3 with σ > 0) or the interval empty.

    Args broadcast; ``learning_rate > 0``. Differentiable away from the switches.
    """
    _check_learning_rate(f"stable_curvature_interval(learning_rate={learning_rate!r}, ...)", learning_rate)
    eta, mu, s = jnp.broadcast_arrays(
        *(jnp.asarray(x, dtype=jnp.result_type(float, x)) for x in (learning_rate, momentum, sigma))
    )
    # each condition c0 + c1·k > 0
    cons = [(jnp.zeros_like(eta), eta), (2 * (1 + mu), -eta * (1 + 2 * s)),
            (1 - mu, eta * s), (1 + mu, -eta * s)]
    inf = jnp.full_like(eta, jnp.inf)
    lo, hi, ok = jnp.zeros_like(eta), inf, jnp.ones(eta.shape, bool)
    for c0, c1 in cons:
        safe = jnp.where(c1 == 0, 1.0, c1)
        bound = -c0 / safe
        lo = jnp.where(c1 > 0, jnp.maximum(lo, bound), lo)
        hi = jnp.where(c1 < 0, jnp.minimum(hi, bound), hi)
        ok = ok & ((c1 != 0) | (c0 > 0))
    ok = ok & (lo < hi)
    nan = jnp.full_like(eta, jnp.nan)
    return jnp.where(ok, lo, nan), jnp.where(ok, hi, nan)


@broadcast_by_name(arrays=("learning_rate", "momentum", "sigma"))
def stability_threshold(learning_rate, momentum, sigma):
    r"""The largest stable curvature (edge of stability) of super-acceleration:

    .. math::  k_{\max} = \frac{2(1+μ)}{η\,(1+2σ)} .

    The map ``m_i = μ m_{i−1} − η∇L(θ_i + σ m_{i−1})`` on ``L = kθ²/2`` is stable iff
    ``k·η·(1+2σ) < 2(1+μ)`` -- Jury's ``χ(−1) > 0`` for ``χ(λ) = λ² − (1+b−kη)λ + b``,
    ``b = μ − kησ`` -- together with ``k > 0`` and ``|b| < 1``, which never bind first when
    ``|μ| < 1`` and ``σ ≥ −(1−μ)/4`` (proof and the other cases:
    :func:`stable_curvature_interval`). On a network, the sharpness (top Hessian
    eigenvalue, :mod:`dynsim.hessian`) must stay below this for the linearised map to be
    stable: Cohen et al. (ICLR 2021) find full-batch training rises to it and hovers
    there ("edge of stability").

    Special cases: GD (μ = σ = 0) ``2/η``; heavy ball (σ = 0) ``(2+2μ)/η`` (Cohen et al.
    2021 §3, their β = μ); Nesterov (σ = μ) ``(2+2μ)/(η(1+2μ))`` (Cohen et al. 2021
    App. B); super-acceleration lowers it as ``1/(1+2σ)``. Solved for σ it is the flip
    bifurcation ``σ_flip = (1+μ)/(k_max η) − ½`` (the upper end of
    :func:`stable_sigma_interval`), where Nakerst's eq. (15) runs get trapped at σ ≳ 6.

    Returns the exact sup of the stable curvatures in every case (the closed form where
    it is the binding condition; ``k_hi`` of :func:`stable_curvature_interval` elsewhere;
    NaN where no curvature is stable).

    >>> float(stability_threshold(0.5, 0.0, 0.0)), float(stability_threshold(0.5, 0.9, 0.0))
    (4.0, 7.6)
    >>> round(float(stability_threshold(0.5, 0.9, 2.0)), 6)   # 3.8 / (0.5 · 5)
    1.52
    """
    _check_learning_rate(f"stability_threshold(learning_rate={learning_rate!r}, ...)", learning_rate)
    return stable_curvature_interval(learning_rate, momentum, sigma)[1]


@broadcast_by_name(arrays=("learning_rate", "momentum", "sigma"))
def preconditioned_stability_threshold(learning_rate, momentum, sigma, *, ema: bool = False):
    r"""Edge of stability of an adaptive rule with diagonal preconditioner ``P``: bound on ``λ_max(P^{-1}H)``.

    **Frozen-preconditioner derivation.** A rule stepping ``u_i = μ u_{i−1} − η P^{-1} g_i``
    with ``g_i = ∇L(θ_i + σu_{i−1})`` and ``P`` fixed is, in the coordinates
    ``ψ = P^{1/2}θ``, the plain super-accelerated map on the Hessian
    ``P^{-1/2}HP^{-1/2}``, whose eigenvalues are those of ``P^{-1}H``. So it is stable iff
    ``λ_max(P^{-1}H) <`` :func:`stability_threshold` ``(η, μ, σ)``.

    * ``dynsim.optim.rmsprop_sa`` (Nakerst eq. (16), heavy-ball momentum μ outside the
      preconditioner, ``P = √(r + ε)``, ε inside the root): ``ema=False``:
      ``2(1+μ)/(η(1+2σ))``.
    * ``dynsim.optim.adam_sa`` (``ema=True``, ``momentum = β₁``, ``P = √v̂ + ε``): with
      ``u_i = −η m̂_i/P`` and ``m_i = β₁m_{i−1} + (1−β₁)g_i``, once the bias correction
      ``1−β₁^t`` is ≈ 1, ``u_i = β₁u_{i−1} − η(1−β₁)P^{-1}g_i`` -- the map above with
      momentum β₁ and learning rate ``η(1−β₁)``:

      .. math::  λ_{\max}(P^{-1}H) < \frac{2(1+β_1)}{η(1-β_1)(1+2σ)} .

      At σ = 0 this is Cohen et al. (2022)'s Adam threshold ``(2+2β₁)/((1−β₁)η)``; the
      look-ahead divides it by ``1+2σ`` (σ in dynsim's displacement units, gradient at
      ``θ + σu``; σ = β₁ is the Nadam-like rule). Early on the bias correction makes
      the effective momentum ``β₁(1−β₁^{t−1})/(1−β₁^t)`` and learning rate
      ``η(1−β₁)/(1−β₁^t)`` (larger), so the threshold is lower in the first ~``1/(1−β₁)``
      steps. Cohen et al. (2022) use the same Adam (ε outside the root, bias-corrected
      ``v̂``); RMSProp in their sense is Adam with β₁ = 0 (no momentum), i.e.
      ``rmsprop_sa`` with μ = σ = 0: ``2/η``.

    The real ``P`` moves (``v`` tracks ``g²``), so this is the threshold of the
    linearisation at frozen ``P``; at a fixed point (``g = 0``) ``v`` decouples and it is
    exact (tested with the Jacobian of the real rule). Cohen et al. observe the
    preconditioned sharpness hovering at or just below it.

    >>> round(float(preconditioned_stability_threshold(1e-3, 0.9, 0.0, ema=True)), 6)   # 3.8/(1e-3·0.1)
    38000.0
    """
    if not isinstance(ema, bool):
        raise ValueError(f"preconditioned_stability_threshold(ema={ema!r}): ema must be True or False")
    _check_learning_rate(f"preconditioned_stability_threshold(learning_rate={learning_rate!r}, ...)",
                         learning_rate)
    if ema:
        if not isinstance(momentum, jax.core.Tracer) and not np.all(
                (np.asarray(momentum, float) >= 0) & (np.asarray(momentum, float) < 1)):
            raise ValueError(f"preconditioned_stability_threshold(momentum={momentum!r}, ema=True): "
                             "the EMA momentum β₁ must be in [0, 1)")
        mu = jnp.asarray(momentum, dtype=jnp.result_type(float, momentum))
        return stability_threshold(jnp.asarray(learning_rate) * (1 - mu), mu, sigma)
    return stability_threshold(learning_rate, momentum, sigma)


__all__ += ["stable_curvature_interval", "stability_threshold", "preconditioned_stability_threshold"]
