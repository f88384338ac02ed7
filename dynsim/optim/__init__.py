r"""Optimizer maps, each defined once, as optax-compatible transformations.

Every rule in this module is one instance of a single *look-ahead momentum* map
(Nakerst et al. eq. (4), generalised). Write :math:`u_{i-1} = \theta_i - \theta_{i-1}`
for the last displacement (the paper's :math:`m^{(i-1)}`), then one step is

.. math::

    \phi_i &= \theta_i + \sigma_i\, u_{i-1}              &\text{(look-ahead point)}\\
    \delta_i, s_i &= D(\nabla L(\phi_i), s_{i-1})       &\text{(direction piece)}\\
    u_i &= \mu_i\, u_{i-1} + \delta_i                    &\text{(momentum)}\\
    \theta_{i+1} &= \theta_i + u_i .

The direction piece ``D`` is a small optax-style transformation with runtime
hyperparameters (``-η g`` for GD, ``-η g/\sqrt{r+ε}`` for RMSProp, Adam's
``-η \hat m/(\sqrt{\hat v}+ε)``, ...). Heavy ball is ``σ=0``, Nesterov ``σ=μ``,
super-acceleration any ``σ``.

**Two coordinate systems.** Analysis and figures use the paper's θ. A training
loop that only ever sees "gradient at the parameters" runs the same map in the
reparametrised coordinates :math:`\Theta_i = \theta_i + \sigma_i u_{i-1}` (Su's
Keras-style derivation, generalised from σ=μ to any σ): the gradient at the
parameters *is* the look-ahead gradient, and

.. math::  \Theta_{i+1} - \Theta_i = (1 + \sigma_{i+1})\,u_i - \sigma_i\,u_{i-1}.

``rule.init``/``rule.update`` implement this Θ view (an ordinary optax
``GradientTransformation``); ``rule.map_init``/``rule.map_step`` implement the θ
view that :func:`dynsim.simulate` uses; ``rule.to_paper`` converts Θ → θ. Tests
check the two agree to rounding.

**Runtime hyperparameters.** Hyperparameters may be Python numbers, arrays or
tracers; nothing branches on their values, so ``jax.vmap`` over a grid of
(η, μ, σ) compiles once (blackjax #215/#276, optax #577). Concrete values are
validated at construction and a bad one raises ``ValueError`` quoting the call.

**One policy for ranges.** A factory refuses only values at which its map is not
defined: a negative or non-finite learning rate, an EMA decay outside ``[0, 1)`` (Adam's
bias correction divides by ``1 - β^t``), a non-number. Values at which the map is defined
but unstable (momentum ``μ ≥ 1``, any ``σ``, a learning rate past ``2/k``) are accepted,
here, in :func:`dynsim.sweep` grids and in :func:`dynsim.train` grids alike: studying
where dynamics diverge is what sweeps are for, and such points come back flagged
``diverged`` (their rates are still computed). Sweeps and training check a grid by
calling the factory at each axis's extremes, so they refuse exactly what the factory
refuses.

>>> rule = super_accelerated(0.1, 1.2, 1.0)   # unstable but defined: accepted
>>> super_accelerated(-0.1, 0.9, 1.0)
Traceback (most recent call last):
...
ValueError: super_accelerated(learning_rate=-0.1, momentum=0.9, sigma=1.0): learning_rate=-0.1 must be in >=0
"""
from __future__ import annotations

# The front: each module's public names (its __all__), in the order the docs list them.
from dynsim.optim import core, registry, rules, transforms
from dynsim.optim.core import *  # noqa: F403
from dynsim.optim.registry import *  # noqa: F403
from dynsim.optim.rules import *  # noqa: F403
from dynsim.optim.transforms import *  # noqa: F403
from dynsim.optim.transforms import AdamState as AdamState  # the states: reachable, not listed
from dynsim.optim.transforms import EmaState as EmaState
from dynsim.optim.transforms import EmptyState as EmptyState
from dynsim.optim.transforms import RmsState as RmsState

__all__ = [*core.__all__, *transforms.__all__, *rules.__all__, *registry.__all__]

