r"""Benchmarks: ``dynsim bench`` (landscape sweeps, :mod:`dynsim.bench.landscape`) and ``dynsim bench
--train`` (training, :mod:`dynsim.bench.training`), with the machine measurements both quote
(:mod:`dynsim.bench.machine`). Each prints a text summary; :func:`write` saves the full result as JSON.
"""
from dynsim.bench.landscape import (
                                    SIGMA_STAR_METRICS,
                                    fma_ceiling,
                                    numpy_reference,
                                    run,
                                    step_flops,
                                    sweep_grid,
                                    user_code,
)
from dynsim.bench.machine import device_times, load_average, matmul_rate, write
from dynsim.bench.training import benchmark, lines

__all__ = ["run", "numpy_reference", "sweep_grid", "fma_ceiling", "step_flops", "user_code", "SIGMA_STAR_METRICS",
           "benchmark", "lines", "write", "matmul_rate", "device_times", "load_average"]
