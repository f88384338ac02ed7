"""Example user problems for ``dynsim sweep``: landscapes written as user code.

Configs name them by import path (``landscape = "problems:beale"``); ``dynsim sweep`` puts
the config's own folder on the import path, so a module beside the config is found.
Nothing here is part of the library: it is what a user's own module looks like.
"""
import jax.numpy as jnp

from dynsim.landscapes import Landscape


def beale(a: float = 1.5, b: float = 2.25, c: float = 2.625) -> Landscape:
    r"""Beale's function ``(a − x + xy)² + (b − x + xy²)² + (c − x + xy³)²``, constants sweepable.

    For the classical constants ``(1.5, 2.25, 2.625)`` the minimum is ``(3, 0.5)`` with
    ``L* = 0`` (:func:`beale_classic`); for other constants neither is known in closed form,
    so none is given here: the sweep then fits its rates to ``½ ln L``.
    """

    def loss(t):
        x, y = t[0], t[1]
        return (a - x + x * y) ** 2 + (b - x + x * y**2) ** 2 + (c - x + x * y**3) ** 2

    return Landscape("beale", loss, None, None, {"a": a, "b": b, "c": c})


def nakerst15(theta):
    r"""Nakerst et al. eq. (15) as a plain loss ``θ -> scalar`` (no minimum given):
    ``(θ₁² + 2θ₂ − 7)² + (2θ₁ + θ₂ − 5)² + 10⁻³(θ₁⁶ + θ₂⁶)``."""
    t1, t2 = theta[0], theta[1]
    return (t1**2 + 2 * t2 - 7) ** 2 + (2 * t1 + t2 - 5) ** 2 + 1e-3 * (t1**6 + t2**6)


def beale_classic() -> Landscape:
    """Beale's function with its known minimiser (3, 0.5): every metric is available."""
    return Landscape("beale_classic", beale().loss, jnp.array([3.0, 0.5]), None, {}, 0.0)
