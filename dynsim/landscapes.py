r"""Loss landscapes with known minima: pure, jit-able functions of θ.

A :class:`Landscape` bundles ``loss(θ)`` with what analysis needs: the minimiser,
and for quadratics the Hessian spectrum. Parameters such as ``k`` may be runtime
arrays (tracers), so a sweep over ``k`` compiles once.
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "Landscape",
    "quadratic",
    "quadratic_nd",
    "nakerst2d",
    "NAKERST2D_MINIMUM",
    "linear_regression",
    "rosenbrock",
    "LANDSCAPES",
    "get",
    "resolve",
]


class Landscape(NamedTuple):
    """A loss function and what is known about it.

    Attributes:
      name: short name (used in sweep provenance).
      loss: ``θ -> scalar``; pure and differentiable.
      minimum: the global minimiser (array), or None if unknown.
      hessian_eigenvalues: the Hessian spectrum for quadratics, else None.
      params: the landscape's parameters (for provenance).
      min_loss: the minimum value ``L*`` when known without the minimiser (e.g. 0 for an
        interpolating least-squares fit); with ``minimum`` known it is ``loss(minimum)``.
    """

    name: str
    loss: Callable[[jax.Array], jax.Array]
    minimum: Any = None
    hessian_eigenvalues: Any = None
    params: dict = {}
    min_loss: Any = None

    def __call__(self, theta):
        return self.loss(theta)

    def distance(self, theta):
        """Euclidean distance from the minimum (requires a known minimum)."""
        if self.minimum is None:
            raise ValueError(f"landscape {self.name!r} has no known minimum")
        return jnp.sqrt(jnp.sum((jnp.asarray(theta) - self.minimum) ** 2))


def _check_positive(call: str, name: str, x) -> None:
    if isinstance(x, jax.core.Tracer):
        return
    arr = np.asarray(x, dtype=float)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{call}: {name} must be finite, got {x!r}")
    if np.any(arr <= 0):
        raise ValueError(f"{call}: {name} must be > 0, got {x!r}")


def quadratic(k=1.0) -> Landscape:
    r"""The 1-D parabola of Nakerst §2, ``L(θ) = kθ²/2`` (summed if θ has several entries).

    ``k`` may be an array broadcasting against θ (a diagonal N-dim quadratic).

    >>> quadratic(2.0).loss(jnp.array([3.0])).item()
    9.0
    """
    _check_positive(f"quadratic(k={k!r})", "k", k)

    def loss(theta):
        return 0.5 * jnp.sum(k * jnp.asarray(theta) ** 2)

    return Landscape("quadratic", loss, 0.0, jnp.atleast_1d(jnp.asarray(k)), {"k": k})


def quadratic_nd(eigenvalues, rotation_seed: int | None = 0) -> Landscape:
    r"""N-dim quadratic ``L = θᵀHθ/2`` with a given Hessian spectrum.

    ``H = Q diag(λ) Qᵀ`` with ``Q`` a seeded random orthogonal matrix (Haar, via QR);
    ``rotation_seed=None`` keeps ``H`` diagonal. The rate of any linear rule on it is
    the worst mode's: :func:`dynsim.analysis.spectral_radius_quadratic`.
    """
    eig = np.asarray(eigenvalues, dtype=float)
    if eig.ndim != 1 or eig.size == 0:
        raise ValueError(f"quadratic_nd(eigenvalues=...): need a non-empty 1-D array, got shape {eig.shape}")
    _check_positive("quadratic_nd(eigenvalues=...)", "eigenvalues", eig)
    n = eig.size
    if rotation_seed is None:
        q = np.eye(n)
    else:
        a = np.random.default_rng(rotation_seed).standard_normal((n, n))
        q, r = np.linalg.qr(a)
        q = q * np.sign(np.diag(r))  # Haar-uniform
    h = jnp.asarray((q * eig) @ q.T)

    def loss(theta):
        theta = jnp.asarray(theta)
        return 0.5 * theta @ (h.astype(theta.dtype) @ theta)

    return Landscape(
        "quadratic_nd", loss, jnp.zeros(n), jnp.asarray(eig), {"eigenvalues": eig, "rotation_seed": rotation_seed}
    )


def _nakerst2d_loss(theta):
    t1, t2 = theta[..., 0], theta[..., 1]
    return (t1**2 + 2 * t2 - 7) ** 2 + (2 * t1 + t2 - 5) ** 2 + 1e-3 * (t1**6 + t2**6)


def _newton_minimum() -> np.ndarray:
    # Float64 Newton from the paper's reported minimum; closed-form gradient/Hessian of eq. (15).
    x = np.array([1.690, 1.963])
    for _ in range(50):
        t1, t2 = x
        a = t1**2 + 2 * t2 - 7
        b = 2 * t1 + t2 - 5
        g = np.array([4 * t1 * a + 4 * b + 6e-3 * t1**5, 4 * a + 2 * b + 6e-3 * t2**5])
        h = np.array(
            [
                [4 * a + 8 * t1**2 + 8 + 3e-2 * t1**4, 8 * t1 + 4],
                [8 * t1 + 4, 8 + 2 + 3e-2 * t2**4],
            ]
        )
        x = x - np.linalg.solve(h, g)
    return x


NAKERST2D_MINIMUM = _newton_minimum()


def nakerst2d() -> Landscape:
    r"""Nakerst eq. (15): ``(θ₁²+2θ₂−7)² + (2θ₁+θ₂−5)² + 10⁻³(θ₁⁶+θ₂⁶)``.

    Non-convex with a curved valley; global minimum ≈ (1.690, 1.963) (refined by
    Newton's method in float64: :data:`NAKERST2D_MINIMUM`).
    """
    return Landscape("nakerst2d", _nakerst2d_loss, jnp.asarray(NAKERST2D_MINIMUM), None, {})


def linear_regression(n_features: int = 50, n_data: int = 1000, seed: int = 0) -> Landscape:
    r"""The linear regression of Nakerst §3.2 (51 parameters for 50 features).

    Features ``x_α ~ U(0,1)``; targets ``y = Σ_α (x_α/N_f)³`` (our reading of the
    paper's formula); model ``h = θ₀ + Σ θ_α x_α``; loss ``mean((y − h)²)``.
    Hessian ``2 XᵀX/N`` with ``X = [1, x]``; the minimiser is the least-squares fit.
    """
    if int(n_features) < 1 or int(n_data) < 1:
        raise ValueError(f"linear_regression(n_features={n_features}, n_data={n_data}): both must be >= 1")
    rng = np.random.default_rng(seed)
    x = rng.uniform(0.0, 1.0, size=(n_data, n_features))
    y = np.sum((x / n_features) ** 3, axis=1)
    design = np.concatenate([np.ones((n_data, 1)), x], axis=1)
    theta_star = np.linalg.lstsq(design, y, rcond=None)[0]
    eig = np.linalg.eigvalsh(2.0 * design.T @ design / n_data)
    xd, yd = jnp.asarray(design), jnp.asarray(y)

    def loss(theta):
        theta = jnp.asarray(theta)
        r = yd.astype(theta.dtype) - xd.astype(theta.dtype) @ theta
        return jnp.mean(r**2)

    return Landscape(
        "linear_regression",
        loss,
        jnp.asarray(theta_star),
        jnp.asarray(eig),
        {"n_features": n_features, "n_data": n_data, "seed": seed},
    )


def rosenbrock(a=1.0, b=100.0) -> Landscape:
    r"""Rosenbrock's banana ``(a−θ₁)² + b(θ₂−θ₁²)²``; minimum ``(a, a²)``."""

    def loss(theta):
        t1, t2 = theta[..., 0], theta[..., 1]
        return (a - t1) ** 2 + b * (t2 - t1**2) ** 2

    return Landscape("rosenbrock", loss, jnp.asarray([a, a * a]), None, {"a": a, "b": b})


LANDSCAPES: dict[str, Callable[..., Landscape]] = {
    "quadratic": quadratic,
    "quadratic_nd": quadratic_nd,
    "nakerst2d": nakerst2d,
    "linear_regression": linear_regression,
    "rosenbrock": rosenbrock,
}


def resolve(name: str) -> Callable[..., Landscape]:
    """The factory registered as ``name``; unknown names raise ``ValueError`` listing the choices."""
    if name not in LANDSCAPES:
        raise ValueError(f"landscape={name!r} is unknown; choose one of {', '.join(LANDSCAPES)}")
    return LANDSCAPES[name]


def get(name: str, **params) -> Landscape:
    """Build a landscape by name; unknown names raise ``ValueError`` listing the choices."""
    factory = resolve(name)
    try:
        return factory(**params)
    except TypeError as e:
        raise ValueError(f"landscape {name!r}: bad parameters {sorted(params)}: {e}") from e
