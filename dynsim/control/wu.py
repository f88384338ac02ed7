r"""Wu's closed-form theory: the momentum loop's characteristics and NAG's damping and peak.

Momentum (Wu eqs. (26)-(31)), the NAG damping ratio derived in :mod:`dynsim.control`
(not Table 1's), SGD's first-order settling time (eq. (13)) and the α that gives NAG
a given peak (Wu §3.3's 1.35).
"""
from __future__ import annotations

import math
from typing import Callable

import jax.numpy as jnp

from dynsim.control.loops import _g, closed_loop
from dynsim.control.polynomials import _float, poles
from dynsim.control.responses import step_peak

__all__ = ["momentum_theory", "nag_damping_ratio", "first_order_settling_time", "nag_alpha_for_peak"]


def momentum_theory(K0, r, mu, g: Callable | None = None) -> dict:
    """Wu's closed-form characteristics of the momentum loop (eqs. (26)-(31)).

    ``ωₙ = √(K₀r/g)``, ``ξ = 1/√(4K₀rg)``, overshoot ``100·exp(−π/√(4K₀rg − 1))`` %
    (0 when ``ξ ≥ 1``), envelope settling times ``t_s ≈ 6g`` (5%) and ``8g`` (2%), i.e.
    ``3/(ξωₙ)`` and ``4/(ξωₙ)``.
    """
    k = _float(K0) * _float(r)
    gm = _g(mu, g)
    prod = 4 * k * gm
    over = jnp.where(prod > 1, 100 * jnp.exp(-jnp.pi / jnp.sqrt(jnp.where(prod > 1, prod - 1, 1.0))), 0.0)
    return {
        "NaturalFrequency": jnp.sqrt(k / gm),
        "DampingRatio": 1 / jnp.sqrt(prod),
        "Overshoot": over,
        "SettlingTime5": 6 * gm,
        "SettlingTime2": 8 * gm,
    }


def nag_damping_ratio(K0, r, mu, alpha, g: Callable | None = None):
    """Damping ratio of the NAG closed loop, ``ξ = (1 + K₀rg)/(2√(K₀αrg))`` (derived; not Table 1's)."""
    k = _float(K0) * _float(r)
    gm = _g(mu, g)
    return (1 + k * gm) / (2 * jnp.sqrt(k * _float(alpha) * gm))


def first_order_settling_time(K0, r, threshold: float = 0.05):
    """Exact settling time of ``1 − e^{−K₀rt}``: ``ln(1/threshold)/(K₀r)`` (Wu rounds ln 20 ≈ 2.996 to 3)."""
    return math.log(1 / threshold) / (_float(K0) * _float(r))


def nag_alpha_for_peak(peak: float, K0, r, mu, g: Callable | None = None,
                       bracket=(1.0 + 1e-6, 1e4)) -> float:
    """α for which NAG's closed-loop step response peaks at ``peak`` (> 1), by Brent's method.

    For ``α ≤ 1`` the response never overshoots (see :mod:`dynsim.control`), and the
    peak grows monotonically with α above 1, so the answer is unique.

    >>> round(nag_alpha_for_peak(1.35, 100.0, 0.1, 0.9), 2)
    18.3
    """
    from scipy import optimize

    K0, r, mu = float(K0), float(r), float(mu)
    gm = float(_g(mu, g))

    def excess(alpha):
        num, den = closed_loop("nag", K0, r, mu, alpha, g)
        wn = math.sqrt(K0 * alpha * r / gm)
        # slowest decay rate bounds how long to look for the peak
        decay = float(-jnp.max(jnp.real(poles(den))))
        t_max = min(20 / decay, 40 / wn + 20 / decay)
        return step_peak(num, den, t_max, n=20_001)[0] - peak

    return float(optimize.brentq(excess, *bracket, xtol=1e-10))

