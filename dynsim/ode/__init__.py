r"""Continuous-time counterparts of the optimizers: vector fields, fixed-step integrators, closed forms.

Every optimizer in :mod:`dynsim.optim` is (approximately) a discretisation of an ODE
or SDE. This module writes those equations down as pure JAX vector fields and
integrates them with fixed-step schemes built on :func:`jax.lax.scan`, so that
solutions jit, vmap over parameters and differentiate end to end.

**Equations** (``L`` is the loss, ``∇L`` its gradient):

* gradient flow ``θ' = −∇L`` (Su eq. (4)); plain GD is its Euler method with step η;
* damped second order / heavy ball with friction ``θ'' + λθ' = −∇L`` (Su eq. (10),
  Bu et al. "HBF" with ``λ = √(2λ₀)``); momentum ``v ← βv − α∇L`` is exactly the
  leapfrog scheme (Su eqs. (13)-(16)) with the map :func:`su_momentum_from_ode`;
* Su–Boyd–Candès ``θ'' + (γ/t)θ' = −∇L`` (the NAG limit in Bu et al.), started at ``t₀ > 0``;
* Nakerst's three damped oscillators (9)-(11) for the super-accelerated map on
  ``L = kθ²/2``: :func:`nakerst_oscillator`, with critical σ (12)-(14):
  :func:`nakerst_critical_sigma`;
* Langevin ``dθ = −∇L dt + s dW`` (Su eq. (8)) and Kramers
  ``dθ = v dt, dv = (−λv − ∇L) dt + s dW`` (Su eq. (21)).

**Noise convention** (derived, and tested). For ``dθ = −∇L dt + s dW`` with a standard
Wiener process ``W`` the Fokker–Planck equation ``∂ₜp = ∇·(p∇L) + (s²/2)Δp`` has the
stationary density ``p ∝ exp(−2L/s²)``, i.e. temperature ``T = s²/2``. Su writes
``θ' = −∇L + σξ`` with ``p ∝ exp(−L/σ²)``: that holds for ``s = √2·σ`` (``T = σ²``),
i.e. when ``ξ`` is white noise of intensity 2. :func:`langevin` and :func:`kramers`
take either ``noise=s`` or ``temperature=T``. For Kramers the fluctuation–dissipation
relation gives ``p ∝ exp(−(v²/2 + L)/T)`` with ``T = s²/(2λ)``; Su's eq. (22) is quoted
"for λ = 0", where no stationary density exists (with no friction the energy
diffuses without bound), so read it as the ``λ > 0`` result with ``σ² = T``.

**Conventions.** A vector field is ``f(t, y, params) -> dy/dt`` on arrays or pytrees.
A loss is called as ``loss(θ)`` when ``params is None`` and as ``loss(θ, params)``
otherwise. Coefficients (friction, γ, A, B) are plain arguments of the constructors
and may be traced values, so ``jax.vmap(lambda lam: rk4(heavy_ball_friction(L, lam),
...))(lams)`` vectorises over them. Second-order systems are :class:`SecondOrder`
fields on the state ``y = (x, v)``; they also work with :func:`rk4` and :func:`euler`.

Integrators return the path with a leading time axis of length ``steps + 1`` (``y₀``
first); ``save_every=k`` keeps every k-th state (``steps // k + 1`` of them) and
``final_only=True`` only the end state. The state dtype follows ``y₀``.

>>> import jax.numpy as jnp
>>> osc = damped_oscillator(0.5, 4.0)
>>> path = rk4(osc, (jnp.array(1.0), jnp.array(0.0)), 0.0, 0.01, 200)
>>> path[0].shape
(201,)
>>> bool(abs(path[0][-1] - damped_oscillator_exact(2.0, 0.5, 4.0, 1.0, 0.0)) < 1e-5)
True
"""
from __future__ import annotations

# The front: each module's public names (its __all__).
from dynsim.ode import adaptive, correspondences, integrators, systems
from dynsim.ode.adaptive import *  # noqa: F403
from dynsim.ode.correspondences import *  # noqa: F403
from dynsim.ode.integrators import *  # noqa: F403
from dynsim.ode.systems import *  # noqa: F403
from dynsim.ode.systems import PyTree as PyTree  # type aliases: reachable, not listed
from dynsim.ode.systems import VectorField as VectorField

__all__ = [*systems.__all__, *correspondences.__all__, *integrators.__all__, *adaptive.__all__]
