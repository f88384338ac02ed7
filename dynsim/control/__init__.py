r"""Optimizers as feedback control systems (Wu et al. 2021), and the SA map in the z-domain.

**Representation.** A transfer function is a pair ``(num, den)`` of polynomial
coefficient arrays, highest power first (as in scipy / python-control). The last
axis holds the coefficients; leading axes are a batch, so sweeping a parameter is
just passing an array (everything broadcasts). Continuous systems are in ``s``,
the SA map in ``z``; :func:`feedback` and the root formulas apply to both.

**Wu's models** (``g(μ) = μ`` by default; pass ``g=callable`` for another choice):

* SGD, eq. (12): ``G = K₀r/s``; closed loop (13) ``K₀r/(s + K₀r)``, a first-order
  lag with ``T = 1/(K₀r)`` and 5% settling time ``ln 20/(K₀r) ≈ 3/(K₀r)``;
* momentum, eq. (24): ``G = K₀r/(g s² + s)``; closed loop (25)
  ``K₀r/(g s² + s + K₀r)``: ``ωₙ = √(K₀r/g)``, ``ξ = 1/√(4K₀rg)``; critical at
  ``K₀rg = 1/4``; overshoot ``exp(−π/√(4K₀rg − 1))`` (eq. (31));
* NAG, eq. (42): ``G = (K₀rg s + K₀αr)/(g s² + s)``. **The closed loop is derived
  here**, because the paper's (44) is garbled:

  .. math::  φ(s) = \frac{G}{1+G} = \frac{K_0 r g\,s + K_0 α r}{g s^2 + (1 + K_0 r g)\,s + K_0 α r},
             \qquad ω_n^2 = \frac{K_0 α r}{g},\quad ξ = \frac{1 + K_0 r g}{2\sqrt{K_0 α r g}} .

  Dividing by ``K₀αr`` gives the paper's (43) once its ``K₁ = K₀α`` is substituted,
  so (43) is right. In (44) the ``φ₂`` term is consistent with (43) but ``φ₁`` is
  not (``K₀`` in place of ``K₁`` and an ``r²``): as printed, ``φ₁ + φ₂`` has DC gain
  ``μ/α`` instead of 1. Table 1's ``ξ = (μK₀rα + 1)/(2√(μK₀rα))`` misplaces α in the
  numerator, and its momentum entry ``ξ = 1/√(4K₀rμ − 1)`` mixes up ξ with the
  overshoot exponent; Theorem 2's ``ξ = 1/√(4K₀rg)`` is the correct one. (Eq. (30)'s
  second line also has ``2K₀r`` where ``2g`` belongs in the frequency.)

**NAG's peak of 1.35** (Wu §3.3, ``μ = 0.9, K₀ = 100, r = 0.1``). The closed loop has
the zero ``z₀ = −α/g`` and ``den(z₀) = α(α − 1)/g``. For the paper's own constraint
``α < 1`` (Remark 3) the poles are real (the discriminant is ``≥ (1 − K₀rg)²``) and
``den(z₀) < 0`` puts the zero between them, so both modes enter with the same sign
and the step response rises monotonically: **no overshoot at all**. At ``α = 1`` the
zero cancels the pole ``−1/g`` and NAG is exactly SGD, ``1 − e^{−K₀rt}``. The peak
grows monotonically with α above 1, and a peak of 1.35 needs ``α ≈ 18.30`` (peak
time ≈ 0.18 s, settled within 1 s; see :func:`nag_alpha_for_peak`), well outside
``α < 1``. The paper's remark that the NAG root loci mostly have imaginary parts
also needs ``α > 1`` (for ``α ≤ 1`` they never leave the real axis), so its Fig. 5
was evidently drawn with a large α; ``α ≈ 18.3`` is the value that reproduces it.

**SA map as a sampled feedback loop.** With the reference (minimum) ``w`` and
``L = k(θ − w)²/2``, Nakerst's map ``m_i = g m_{i−1} + u_i``, ``θ_{i+1} = θ_i + m_i``
with ``u_i = kη(w_i − (θ_i + σm_{i−1}))`` is unity negative feedback of the
look-ahead point ``θ_i + σm_{i−1}`` through the loop gain ``kη``:

.. math::  G(z) = kη\,\frac{(1+σ)z - σ}{(z-1)(z-g)}, \qquad
           1 + G(z) = 0 \iff z^2 - (1 + b - kη)z + b = 0,\ b = g − kησ,

i.e. the closed-loop poles are the companion-matrix eigenvalues. The parameter
itself follows ``Θ(z)/W(z) = kη z/(z² − (1+b−kη)z + b)`` (DC gain 1); its step
response equals ``1 − θ_i`` of the map started at ``θ₀ = 1, m₋₁ = 0``.

>>> import numpy as np
>>> num, den = closed_loop("momentum", 100.0, 0.1, 0.9)
>>> np.round(np.asarray(den), 6).tolist()
[0.9, 1.0, 10.0]
"""
from __future__ import annotations

from dynsim.control.locus import closed_loop_poles, root_locus
from dynsim.control.loops import (
    KINDS,
    closed_loop,
    feedback,
    momentum_open_loop,
    nag_open_loop,
    open_loop,
    sgd_open_loop,
)
from dynsim.control.polynomials import characteristics, dc_gain, poles, quadratic_roots, zeros
from dynsim.control.responses import (
    step_info,
    step_peak,
    step_response,
    step_response_expm,
    step_response_rk4,
    tf2ss,
)
from dynsim.control.sampled import (
    discrete_step_response,
    sa_closed_loop_z,
    sa_companion,
    sa_open_loop_z,
    sa_poles_z,
)
from dynsim.control.wu import first_order_settling_time, momentum_theory, nag_alpha_for_peak, nag_damping_ratio

__all__ = [
    "KINDS",
    "sgd_open_loop",
    "momentum_open_loop",
    "nag_open_loop",
    "open_loop",
    "feedback",
    "closed_loop",
    "quadratic_roots",
    "poles",
    "zeros",
    "dc_gain",
    "characteristics",
    "closed_loop_poles",
    "root_locus",
    "tf2ss",
    "step_response",
    "step_response_expm",
    "step_response_rk4",
    "step_info",
    "step_peak",
    "momentum_theory",
    "nag_damping_ratio",
    "first_order_settling_time",
    "nag_alpha_for_peak",
    "sa_open_loop_z",
    "sa_closed_loop_z",
    "sa_companion",
    "sa_poles_z",
    "discrete_step_response",
]
