"""dynsim.engine.execute: chunks, padding and the one compile cache."""
import numpy as np
import processes

import dynsim
from dynsim import engine as sw


def test_chunking_and_padding_equal_one_chunk_and_compile_once():
    grid = {"k_eta": np.geomspace(0.01, 0.5, 5), "momentum": np.array([0.5, 0.9]), "sigma": np.linspace(-1, 9, 7)}
    one = dynsim.sweep("sa", "quadratic", grid, 384, ["rate", "steps_to_eps", "diverged"], progress=False,
                       chunk_size=10_000)
    before = sw.trace_count()
    many = dynsim.sweep("sa", "quadratic", grid, 384, ["rate", "steps_to_eps", "diverged"], progress=False,
                        chunk_size=9)  # 9 does not divide 7 (sigma): padded, masked chunks
    assert sw.trace_count() - before == 1  # one compile for all 10 chunks
    processes.assert_same_dataset(one, many)
    before = sw.trace_count()
    dynsim.sweep("sa", "quadratic", {**grid, "sigma": grid["sigma"] + 0.5}, 384, ["rate", "steps_to_eps", "diverged"],
                 progress=False, chunk_size=9)
    assert sw.trace_count() == before  # new values, same shapes: no recompilation
