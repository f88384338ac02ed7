r"""How a grid is cut into chunks and blocks (:class:`Layout`).

The grid is flattened (C order) and cut into *chunks*: contiguous runs that are
rectangular blocks of the grid (a range of one dimension, all of the later ones), all
padded to the same size, so one compiled program serves every chunk. A chunk is split over
the local devices, and each device runs its points in *blocks* (one vmapped scan each),
evened out so that padding stays under 8 points per block.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from dynsim.engine import platform as _platform

__all__ = ["Layout", "make_layout", "default_chunk_size"]


@dataclasses.dataclass(frozen=True)
class Layout:
    """Chunks of a grid of ``shape`` and their blocks on ``n_devices`` devices."""

    shape: tuple[int, ...]
    axis: int  # the dimension split into chunks
    block: int  # points of that dimension per chunk
    n_devices: int
    block_size: int  # at most this many points per vmapped scan on one device
    align: int = 8  # blocks are padded to a multiple of this (vector width; 1 for models)

    @property
    def inner(self) -> int:  # points per index of `axis`
        return int(np.prod(self.shape[self.axis + 1:]))

    @property
    def per_row(self) -> int:  # chunks along `axis`
        return -(-self.shape[self.axis] // self.block)

    @property
    def n_chunks(self) -> int:
        return int(np.prod(self.shape[: self.axis])) * self.per_row

    @property
    def n_blocks(self) -> int:  # vmapped scans per device per chunk
        return -(-self._raw // self.block_size)

    @property
    def block_points(self) -> int:
        """Points per vmapped scan: ``block_size`` evened out over the blocks so that padding
        stays below ``align`` points per block (a 262,182-point chunk in blocks of at most 2^18
        is two blocks of 131,096, not two of 262,144)."""
        b = -(-self._raw // self.n_blocks)
        return -(-b // self.align) * self.align

    @property
    def _raw(self) -> int:  # valid points per device, rounded up
        return -(-(self.block * self.inner) // self.n_devices)

    @property
    def local(self) -> int:  # padded points per device
        return self.n_blocks * self.block_points

    @property
    def padded(self) -> int:
        return self.local * self.n_devices

    def chunk(self, i: int):
        """(flat start, n valid points, region slices) of chunk ``i``."""
        lead, b = divmod(i, self.per_row)
        lead_idx = np.unravel_index(lead, self.shape[: self.axis]) if self.axis else ()
        lo = b * self.block
        hi = min(lo + self.block, self.shape[self.axis])
        idx = tuple(int(v) for v in lead_idx) + (lo,) + (0,) * (len(self.shape) - self.axis - 1)
        start = int(np.ravel_multi_index(idx, self.shape))
        region = tuple(slice(int(v), int(v) + 1) for v in lead_idx) + (slice(lo, hi),) + tuple(
            slice(0, n) for n in self.shape[self.axis + 1:]
        )
        return start, (hi - lo) * self.inner, region

    def zarr_chunks(self) -> tuple[int, ...]:
        return (1,) * self.axis + (self.block,) + tuple(self.shape[self.axis + 1:])


def make_layout(shape, chunk_size: int, n_devices: int, block_size: int, align: int = 8) -> Layout:
    """Chunks of at most ``chunk_size`` points (at least one index of the last dimension)."""
    chunk_size = max(int(chunk_size), 1)
    axis = len(shape) - 1
    for a in range(len(shape)):
        if int(np.prod(shape[a + 1:])) <= chunk_size:
            axis = a
            break
    inner = int(np.prod(shape[axis + 1:]))
    block = max(1, min(shape[axis], chunk_size // max(inner, 1)))
    return Layout(tuple(shape), axis, block, n_devices, block_size, align)


def default_chunk_size(n_points: int, steps: int, theta_dim: int, n_metrics: int, n_devices: int) -> int:
    """Points per chunk: a few seconds of work, bounded by device memory.

    Small enough for a live progress bar and cheap resumes, large enough that the
    per-chunk host work (dispatch, zarr write, fsync) is negligible. The memory bound uses
    :func:`dynsim.engine.platform.device_memory_bytes` with an 8x margin over the carried
    state (θ, u, accumulators) per point.
    """
    per_point = 8 * (4 * theta_dim + 4 * n_metrics + 16)
    steps = max(int(steps), 1)
    mem = _platform.device_memory_bytes(n_devices)
    by_time = int((2e9 if _platform.platform() == "cpu" else 1e12) // steps)
    by_mem = int(mem // 8 // per_point)
    lo = 1024 * n_devices
    return int(min(max(lo, min(by_mem, by_time)), n_points))
