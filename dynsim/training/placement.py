r"""Where the data go, which step loop runs, how many models per chunk: :class:`Placement` and :func:`place`.

**Data.** ``data="replicate"`` copies the whole dataset (train and test) to every device
once; the program draws its minibatches and evaluation batches there. It needs the data to
fit ``memory_fraction`` of a device's memory. ``"stream"`` (:mod:`dynsim.training.stream`,
minibatch training only) keeps the data on the host and sends each segment's minibatches
and the evaluated sets: per epoch and chunk, ``n_seeds_in_chunk × n_train`` examples, plus
one pass over the evaluated sets per record. The steps are the replicated program's own:
trajectories, gradient norms, running losses and accuracies are bit for bit those of
``"replicate"``; the train/test *losses* are too when each set is one evaluation batch, else
equal to float rounding. ``"auto"`` replicates when the data fit and streams otherwise.
Full-batch training and Hessian metrics need the data on the device: with data that do not
fit they are refused with a ValueError naming the way out.

**Step loop.** ``loop="device"`` runs each call's steps inside the compiled program (one
dispatch per call; :mod:`dynsim.training.device`). ``"host"`` (:mod:`dynsim.training.host`)
calls one compiled step per optimizer step: XLA:CPU runs convolutions inside a loop body an
order of magnitude slower than outside one (jax-ml/jax#12868), so ``"auto"`` picks ``"host"``
on CPU for models with a convolution and ``"device"`` otherwise; on CPU such models also
default to ``chunk_size=1``, since XLA:CPU runs a vmapped (grouped) convolution several times
slower per model than one model's. Both loops give the same numbers to float rounding.
Measurements: ``results/bench/README.md``.
"""
from __future__ import annotations

import dataclasses
from typing import NamedTuple

from dynsim.checks import check_int
from dynsim.engine import platform as _platform
from dynsim.training.kernel import bytes_per_model, has_convolution
from dynsim.training.spec import ProgramSpec
from dynsim.training.stream import segment_steps

__all__ = ["DATA_PLACEMENTS", "STEP_LOOPS", "Placement", "Placed", "place"]

#: Values of ``Placement.data``.
DATA_PLACEMENTS = ("auto", "replicate", "stream")
#: Values of ``Placement.loop``.
STEP_LOOPS = ("auto", "device", "host")


@dataclasses.dataclass(frozen=True)
class Placement:
    """How a training run uses the devices (checked at construction; none of it changes the numbers
    beyond float rounding, see the module docstring).

    Attributes:
      data: ``"auto"``, ``"replicate"`` or ``"stream"`` (:data:`DATA_PLACEMENTS`).
      loop: ``"auto"``, ``"device"`` or ``"host"`` (:data:`STEP_LOOPS`).
      memory_fraction: share of one device's memory (host RAM on CPU) the data and a chunk's
        models may use.
      chunk_size: models per chunk, one compiled call sharded over the devices (default: as
        many as fit ``memory_fraction``, by a rough activation estimate; 1 on CPU for models
        with a convolution).
      devices: local devices to shard each chunk's models over (default all, at most the chunk).
      eval_batch: examples per evaluation batch (the train/test passes and the Hessian's HVPs).
    """

    data: str = "auto"
    loop: str = "auto"
    memory_fraction: float = 0.25
    chunk_size: int | None = None
    devices: int | None = None
    eval_batch: int = 10_000

    def __post_init__(self):
        if self.data not in DATA_PLACEMENTS:
            raise ValueError(f"Placement: data={self.data!r} must be one of {', '.join(map(repr, DATA_PLACEMENTS))}")
        if self.loop not in STEP_LOOPS:
            raise ValueError(f"Placement: loop={self.loop!r} must be one of {', '.join(map(repr, STEP_LOOPS))}")
        if isinstance(self.memory_fraction, bool) or not 0 < self.memory_fraction <= 1:
            raise ValueError(f"Placement: memory_fraction={self.memory_fraction!r} must be in (0, 1]")
        for name in ("chunk_size", "devices"):
            if getattr(self, name) is not None:
                object.__setattr__(self, name, check_int(f"Placement: {name}", getattr(self, name)))
        object.__setattr__(self, "eval_batch", check_int("Placement: eval_batch", self.eval_batch))


class Placed(NamedTuple):
    """:func:`place`'s decisions: ``data`` and ``loop`` resolved, the chunk size, and for
    streaming the seeds per transfer (``n_slots``) and steps per transfer (``segment``)."""

    data: str
    loop: str
    chunk_size: int
    n_slots: int = 0
    segment: int = 0


def place(placement: Placement, spec: ProgramSpec, host_data, name: str, data_bytes: float, n_models: int,
          n_seeds: int) -> Placed:
    """Decide where the data go, which loop runs and the chunk size (see the module docstring).

    ``data_bytes`` is the data's size on a device (train and test, inputs and labels).
    """
    xtr, _, xte, _ = host_data
    budget = placement.memory_fraction * _platform.device_memory_bytes()
    data = _data_placement(placement, data_bytes, budget, name, spec)
    if placement.loop == "host" and data == "stream":
        raise ValueError("step loop 'host' needs the data on the device, but they are streamed (Placement(data="
                         f"{placement.data!r})); use loop='auto' or 'device', or replicate the data")
    cpu_conv = (data == "replicate" and _platform.platform() == "cpu"
                and has_convolution(spec.model, spec.input_shape, spec.dtype))
    loop = placement.loop if placement.loop != "auto" else ("host" if cpu_conv else "device")
    # streamed: half the budget for the transfers in flight, half for the models
    share = budget / 2 if data == "stream" else 0.0
    chunk_size = placement.chunk_size
    if chunk_size is None and cpu_conv:
        chunk_size = 1  # XLA:CPU runs vmapped (grouped) convolutions slower per model than one alone
    if chunk_size is None:
        room = budget - share if data == "stream" else budget - data_bytes
        chunk_size = max(1, min(n_models, int(room // max(1, bytes_per_model(spec, len(xtr))))))
    chunk_size = min(chunk_size, n_models)
    if data != "stream":
        return Placed(data, loop, chunk_size)
    n_slots = min(n_seeds, chunk_size)  # distinct seeds a chunk can hold
    n_eval = max([n for n, on in ((len(xtr), spec.eval_train), (len(xte), spec.eval_test)) if on], default=0)
    return Placed(data, loop, chunk_size, n_slots, segment_steps(spec, n_eval, n_slots, share))


def _data_placement(placement: Placement, data_bytes, budget, name, spec: ProgramSpec) -> str:
    """``"replicate"`` or ``"stream"``; a clear ValueError for what cannot be streamed."""
    fits = data_bytes <= budget
    wanted = placement.data
    size = (f"dataset {name!r} ({data_bytes / 2**20:.3g} MiB) does not fit memory_fraction="
            f"{placement.memory_fraction} of the device ({budget / 2**20:.3g} MiB)")
    if wanted == "replicate" and not fits:
        raise ValueError(f"{size}: with Placement(data='replicate') the data are replicated on every device; use "
                         "train_subset/test_subset, raise memory_fraction, or stream minibatches "
                         "(Placement(data='stream') or 'auto', with batch_size)")
    if wanted == "replicate" or (wanted == "auto" and fits):
        return "replicate"
    why = "was asked for" if wanted == "stream" else f"is needed: the {size}"
    if spec.full_batch:
        raise ValueError(f"data placement 'stream' {why}, but full-batch training (batch_size=None) needs the whole "
                         "training set on every device at every step, so only minibatches are streamed; give "
                         "batch_size, or use train_subset/test_subset or a larger memory_fraction to replicate")
    if spec.hessian is not None:
        raise ValueError(f"data placement 'stream' {why}, but hessian={spec.hessian} needs the training set "
                         "on every device (each Hessian record runs Hessian-vector products over the full training "
                         "loss inside the program); drop hessian, or use train_subset or a larger memory_fraction "
                         "to replicate")
    return "stream"
