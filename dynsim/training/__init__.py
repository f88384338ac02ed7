r"""Train many networks at once: one compiled program, ``vmap`` over hyperparameters × seeds.

:func:`train` runs full-batch gradient descent (each step is an epoch, Nakerst §4
Fig. 5) or minibatch SGD (reshuffled every epoch, Fig. 6 and Wu et al.) with any
:mod:`dynsim.optim` rule, used *unchanged* as an optax ``GradientTransformation``, or any
optax factory (``optax.adam``; its θ is its parameters). The rule is built inside the
vmapped function from array hyperparameters, so a whole grid of (η, μ, σ, ...) × seeds
shares one XLA program (:mod:`dynsim.training.device`). The models run through the sweep
engine's runner (:mod:`dynsim.training.job`): chunks sized to device memory, each sharded over
the local devices, written to a zarr store as it finishes (``out=``), resumable after any
kill, and split over ``jax.distributed`` processes like landscape sweeps.

**Placement.** Where the data go (replicated on every device, or streamed from the host),
which step loop runs (one compiled call per epoch, or one per step for convolutions on
XLA:CPU) and the chunk size are one option object, :class:`Placement`
(:mod:`dynsim.training.placement`); none of it changes the numbers beyond float rounding.

**Coordinates.** The optax parameters are the rule's reparametrised
:math:`\Theta_i = \theta_i + \sigma u_{i-1}` (the gradient at Θ is the look-ahead
gradient; see :mod:`dynsim.optim`). Every reported metric -- train/test loss and
accuracy -- is evaluated at the *paper's* parameters :math:`\theta_i =`
``rule.to_paper(Θ_i, state)``, the iterate of Nakerst eq. (4), so curves are comparable
with the paper and with :func:`dynsim.simulate`. For σ = 0 (GD, heavy ball) Θ = θ.
The gradient norm is that of the last gradient the rule used (at Θ, on the last
minibatch).

**Divergence.** After every step each model checks that its loss, gradient norm and
new parameter norm are finite; the first failure sets ``diverged``, records
``diverged_at`` (the step) and freezes that model's parameters and optimizer state.
Its later metrics are NaN. Models are independent under ``vmap``, so a divergent
model never touches its neighbours.

**Seeds.** Seed ``s`` draws the initial parameters with ``model.init(s, ...)`` (numpy,
on the host; the same for every hyperparameter point, as Nakerst start every
algorithm from the same parameters) and the minibatch order of epoch ``e`` from
``permutation(fold_in(fold_in(PRNGKey(s), 1), e), n_train)`` (:func:`epoch_batches`); each epoch visits
``steps_per_epoch·batch_size`` distinct examples (all of them when ``batch_size``
divides ``n_train``; otherwise a different remainder is dropped each epoch).

**Hessian spectrum (edge of stability).** With ``hessian=Hessian(N, k, iters, at)``
(:class:`dynsim.hessian.Hessian`) every record at a multiple of ``N`` steps also holds the
top ``k`` eigenvalues of the Hessian of the *full training loss* (over all ``n_train``
examples, in batches of ``eval_batch``; for minibatch runs too), by Lanczos on
forward-over-reverse Hessian-vector products, inside the compiled program and vmapped over
the models. It is taken at the **look-ahead point** Θ -- the optax parameters, where the
rule evaluates its gradient -- the curvature that
:func:`dynsim.analysis.stability_threshold` ``2(1+μ)/(η(1+2σ))`` bounds (``at="theta"``
takes it at θ, for comparison). For ``rmsprop_sa``/``adam_sa`` the preconditioned
sharpness ``λ_max(P^{-1}∇²L)`` is recorded as well. Off-records cost nothing (a
``lax.cond`` on the record number); a record costs ``iters`` HVPs (``2×`` for the adaptive rules).

Results come back as an ``xarray.Dataset`` with dims ``(*hyperparameter axes, seed, step)``;
minibatch runs carry ``epoch`` as a coordinate along ``step``.

The package, one job per module (the engine's layout):

=================  ================================================================
``problem``        model and dataset resolution, data preparation, grid checks, digests
``spec``           :class:`ProgramSpec` (what shapes a program), record names, a loop's inputs
``kernel``         the shared step, evaluation and Hessian code, minibatch order, initial state
``device``         the device step loop (one compiled call per epoch or record)
``host``           the host step loop (one compiled call per step: convolutions on XLA:CPU)
``stream``         the stream step loop (minibatches sent from the host)
``placement``      :class:`Placement`: data placement, step loop, chunk size
``job``            the training job the engine's runner runs
``thresholds``     first reach of a value: stored, or after the fact
``config``         TOML training configs
=================  ================================================================
"""
from __future__ import annotations

import pathlib
from typing import Mapping, Sequence

from dynsim.hessian import Hessian
from dynsim.training import job as _job
from dynsim.training import problem as _problem
from dynsim.training.config import PROBLEM_KEYS, estimate_config, run_config
from dynsim.training.kernel import epoch_batches
from dynsim.training.placement import DATA_PLACEMENTS, STEP_LOOPS, Placement
from dynsim.training.spec import EVAL_SETS
from dynsim.training.thresholds import at_threshold, steps_to_threshold

__all__ = ["train", "Placement", "Hessian", "run_config", "estimate_config", "steps_to_threshold", "at_threshold",
           "epoch_batches", "EVAL_SETS", "DATA_PLACEMENTS", "STEP_LOOPS", "PROBLEM_KEYS"]


def train(
    optimizer,
    model,
    dataset,
    grid,
    *,
    steps: int | None = None,
    epochs: int | None = None,
    batch_size: int | None = None,
    seeds: int | Sequence[int] = 1,
    metrics_every: int | None = None,
    eval_on: Sequence[str] = EVAL_SETS,
    train_subset: int | None = None,
    test_subset: int | None = None,
    dtype: str = "float32",
    hessian: Hessian | None = None,
    thresholds: Mapping[str, Sequence[float]] | None = None,
    placement: Placement = Placement(),
    out: str | pathlib.Path | None = None,
    chunks: slice | None = None,
    progress: bool = True,
):
    r"""Train ``optimizer`` on every (hyperparameter point × seed) of ``grid`` with one compiled program.

    Args:
      optimizer: a :mod:`dynsim.optim` rule name (``"super_accelerated"``, ``"nag"``, ...)
        or factory, any factory of an optax transformation (``optax.adam``), or an import
        path (``"optax:adam"``).
      model: a :class:`dynsim.models.Model` (any flax module: :func:`dynsim.models.from_module`),
        a name in :data:`dynsim.models.MODELS`, or an import path to a function returning one.
      dataset: a :class:`dynsim.data.Dataset` (any data in memory), a name for
        :func:`dynsim.data.load`, or an import path to a function returning one.
      grid: ``{name: value or 1-D values}`` -- the outer product of the lists, one dim per
        list, scalars held fixed, all scalars one point -- or a list of ``{name: value}``
        points along a ``config`` dim (:func:`dynsim.engine.grid.parse_grid`). Unnamed
        hyperparameters take the factory's defaults.
      steps: full-batch GD (``batch_size=None``): number of steps (= epochs).
      epochs: minibatch SGD: number of epochs of ``n_train // batch_size`` steps.
      batch_size: ``None`` for full batch, else the minibatch size (reshuffled every epoch).
      seeds: a list of seeds, or a count ``n`` meaning seeds ``0..n-1``.
      metrics_every: steps between metric records (default 1 for full batch, one epoch
        for minibatch, where it must divide the steps per epoch). Step 0 is always recorded.
      eval_on: which of ``"train"``, ``"test"`` to evaluate (at the paper's θ).
      train_subset, test_subset: use only the first ``n`` examples.
      dtype: ``"float32"`` or ``"float64"`` (needs ``jax_enable_x64``).
      hessian: a :class:`dynsim.hessian.Hessian` (``every`` a multiple of ``metrics_every``):
        record the top Hessian eigenvalues of the full training loss (module docstring).
      thresholds: ``{metric: [values]}``: per model, the first step at which the metric
        reaches each value, stored as ``steps_to_<metric>`` with a dim ``<metric>_threshold``
        (NaN: never).
      placement: a :class:`Placement`: data placement, step loop, memory share, chunk size,
        devices, evaluation batch (:mod:`dynsim.training.placement`).
      out: result directory (zarr store, config, progress log) written chunk by chunk; an
        existing ``out`` holding the same training sweep is resumed, any other is refused.
      chunks: run only these chunk indices (``jax.distributed``; see :mod:`dynsim.engine.runner`).
      progress: show a progress bar (model-steps).

    Returns:
      ``xarray.Dataset`` with dims ``(*grid dims, seed, step)``; minibatch runs carry an
      ``epoch`` coordinate along ``step`` (fractional when ``metrics_every`` is less than an
      epoch). Variables per record: ``{train,test}_{loss,accuracy}`` (full passes at θ),
      ``running_{loss,accuracy}`` (mean over the steps since the previous record of the
      minibatch loss/accuracy at the gradient point Θ -- what Keras prints), ``grad_norm``,
      ``wall_time`` (seconds since the model's chunk started, compile excluded; shared by the
      chunk); per model ``diverged``, ``diverged_at`` (step, −1 if never). Attributes record
      the setup (``data_placement``, ``step_loop``; when streaming ``stream_steps_per_transfer``,
      ``stream_slots``); ``attrs["complete"]`` tells whether every chunk ran. With ``hessian``:
      ``sharpness`` (top eigenvalue), ``sharpness_residual`` (its Lanczos residual bound),
      ``hessian_eigenvalues`` (extra dim ``eig``, 0 = top) and, for ``rmsprop_sa``/``adam_sa``,
      ``preconditioned_sharpness``; NaN at records that are not a multiple of ``every`` and
      after divergence.

    Example (sklearn digits, two σ × two seeds in one program):

    >>> from dynsim import data, models
    >>> ds = train("super_accelerated", models.nielsen_mlp((8,), input_dim=64), data.load("digits"),
    ...            {"learning_rate": 0.5, "momentum": 0.9, "sigma": [0.0, 4.0]}, steps=4,
    ...            seeds=2, progress=False)
    >>> dict(ds.test_accuracy.sizes)
    {'sigma': 2, 'seed': 2, 'step': 5}
    """
    if not isinstance(placement, Placement):
        raise ValueError(f"placement={placement!r} must be a dynsim.training.Placement(...)")
    # what is trained: model, data, grid, schedule, the program's spec (all checked here)
    problem = _problem.resolve(optimizer, model, dataset, grid, steps=steps, epochs=epochs, batch_size=batch_size,
                               seeds=seeds, metrics_every=metrics_every, eval_on=eval_on,
                               train_subset=train_subset, test_subset=test_subset,
                               eval_batch=placement.eval_batch, dtype=dtype, hessian=hessian, thresholds=thresholds)
    # where and how: placement, step loop, chunks; then the engine's runner (store, resume, progress)
    return _job.run(problem, placement, out=out, chunks=chunks, progress=progress)
