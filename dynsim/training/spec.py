r"""What shapes a compiled training program (:class:`ProgramSpec`), what it records, and what a step loop takes.

Every (hyperparameter point × seed) is one *model*. One compiled *call* runs
``blocks_per_call`` blocks of ``steps_per_block`` steps and records the metrics after each
block (full batch: a call is one record; minibatch: a call is one epoch). The three step
loops (:mod:`dynsim.training.device`, :mod:`~dynsim.training.host`,
:mod:`~dynsim.training.stream`) share one signature: ``run_chunk(spec, chunk, tick) -> ChunkResult``.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, NamedTuple

from dynsim.hessian import Hessian
from dynsim.models import Model
from dynsim.optim.spec import OptimizerSpec
from dynsim.run import PRECONDITIONED_RULES

__all__ = ["EVAL_SETS", "ProgramSpec", "record_names", "Chunk", "ChunkResult"]

#: The sets a run can evaluate (``eval_on``).
EVAL_SETS = ("train", "test")


@dataclasses.dataclass(frozen=True)
class ProgramSpec:
    """Everything that shapes the compiled program (hashable: it keys the program cache)."""

    model: Model
    optimizer: OptimizerSpec
    hp_names: tuple[str, ...]
    static: tuple[tuple[str, Any], ...]  # fixed non-numeric optimizer arguments
    full_batch: bool
    batch_size: int
    steps_per_block: int  # steps between two metric records
    blocks_per_call: int  # records per compiled call (minibatch: one call = one epoch)
    eval_train: bool
    eval_test: bool
    eval_batch: int
    input_shape: tuple[int, ...]
    dtype: str
    hessian: Hessian | None = None  # its ``every`` is a multiple of steps_per_block

    @property
    def preconditioned(self) -> bool:
        """Whether the rule has a diagonal preconditioner (``preconditioned_sharpness`` is recorded)."""
        return self.optimizer.builtin and self.optimizer.name in PRECONDITIONED_RULES

    def build(self, hp):
        """The rule at the (possibly traced) hyperparameters ``hp``: traced values give one program."""
        return self.optimizer.build(**hp, **dict(self.static))


def record_names(spec: ProgramSpec) -> dict[str, tuple[int, ...]]:
    """The curves a training program records, with their trailing shapes (after model and record).

    Known without tracing (a trace is a compile); a test checks it against the program.
    """
    out: dict[str, tuple[int, ...]] = {}
    for part, on in (("train", spec.eval_train), ("test", spec.eval_test)):
        if on:
            out[f"{part}_loss"] = ()
            out[f"{part}_accuracy"] = ()
    out["grad_norm"] = ()
    out["running_loss"] = ()
    out["running_accuracy"] = ()
    if spec.hessian is not None:
        out.update({"sharpness": (), "sharpness_residual": (), "hessian_eigenvalues": (spec.hessian.k,)})
        if spec.preconditioned:
            out["preconditioned_sharpness"] = ()
    return out


class Chunk(NamedTuple):
    """One chunk's inputs to a step loop (the same for the three loops).

    ``carry``, ``hp`` and ``seeds`` (one per model) are on the device, sharded over the
    models (``seeds.sharding``); ``data`` = ``(x_train, y_train, x_test, y_test)`` on every
    device of the mesh (``None`` when streamed); ``host_data`` the same arrays in host
    memory; ``n_calls`` the compiled calls to run; ``replicated`` the sharding that copies
    an array to every device of the mesh. Streaming only: ``slot`` (each model's index into
    ``slot_seeds``, on the device), ``slot_seeds`` (the chunk's distinct seeds), ``n_slots``
    (the transfers are padded to this many slots, so every chunk shares the compiled shapes)
    and ``segment`` (steps per minibatch transfer).
    """

    carry: dict
    hp: dict
    seeds: Any
    data: Any
    host_data: tuple
    n_calls: int
    replicated: Any
    slot: Any = None
    slot_seeds: Any = None
    n_slots: int = 0
    segment: int = 0


class ChunkResult(NamedTuple):
    """What a step loop returns: the final carry, the records and timings.

    ``records`` is a list of ``{curve: (models, records, ...)}`` (the step-0 record, then one
    entry per call); ``wall`` the seconds since the step-0 record (compile excluded), one per
    record, the step-0 record's 0 first; ``compile_seconds`` the compile time paid here.
    """

    carry: dict
    records: list
    wall: list
    compile_seconds: float


#: ``tick(steps)``: a step loop reports each call's optimizer steps (per model) as it finishes.
Tick = Callable[[int], None]
