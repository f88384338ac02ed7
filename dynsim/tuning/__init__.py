r"""Differentiable dynamics: smooth convergence objectives, gradient-based tuning, hypergradients.

Everything :func:`dynsim.simulate` returns is differentiable end to end: ``jax.grad``
goes through the whole ``lax.scan`` to the hyperparameters (η, μ, σ, β₂, ...) and to
θ₀. This package supplies the objectives worth differentiating, a tuner that minimises
them with optax, and hypergradients through full-batch network training. Its public
names live here; each part is a module of its own (as optax keeps ``_src`` modules
behind its public names):

* :mod:`dynsim.tuning.lognorm` -- log-norms of states that never under- or overflow
  (:func:`log_norm`, :func:`state_log_norms`) and :func:`simulate_lognorm`, which
  renormalises a linear rule on a quadratic every step (exact ``log ρ`` over 10⁵ steps,
  even in float32);
* :mod:`dynsim.tuning.objectives` -- smooth objectives (:func:`log_distance`,
  :func:`log_loss_after`, :func:`log_state_after`, :func:`smoothed_rate`,
  :func:`soft_steps_to_eps`), :func:`convergence_objective` (simulate, then score), and
  the surrogates for metrics without a useful gradient (:data:`NON_DIFFERENTIABLE`,
  :func:`surrogate_for`, :data:`METRIC_GRADIENTS`);
* :mod:`dynsim.tuning.tuner` -- :func:`minimize` and :func:`tune`: optax on a horizon
  schedule, then a bisection on the sign of the gradient, which converges at the kink of
  the rate at critical damping;
* :mod:`dynsim.tuning.hypergradients` -- hypergradients through training
  (:func:`unroll_training`, :func:`horizon_hypergradients`, :func:`tune_training`, ...).
"""
from dynsim.optim import LINEAR_RULES
from dynsim.tuning import hypergradients, lognorm, objectives, tuner
from dynsim.tuning.hypergradients import *  # noqa: F401,F403
from dynsim.tuning.lognorm import *  # noqa: F401,F403
from dynsim.tuning.objectives import *  # noqa: F401,F403
from dynsim.tuning.tuner import *  # noqa: F401,F403

__all__ = ["LINEAR_RULES", *lognorm.__all__, *objectives.__all__, *tuner.__all__, *hypergradients.__all__]
