r"""Benchmarks: ``dynsim bench`` (landscape sweeps, :mod:`dynsim.bench.landscape`) and ``dynsim bench
--train`` (training, :mod:`dynsim.bench.training`), with the machine measurements both quote
(:mod:`dynsim.bench.machine`). Each prints a text summary; :func:`write` saves the full result as JSON.
"""
import importlib

# name -> submodule, imported on first use (the training benchmark loads flax)
_EXPORTS = {
    "run": "landscape", "numpy_reference": "landscape", "sweep_grid": "landscape", "fma_ceiling": "landscape",
    "step_flops": "landscape", "user_code": "landscape", "SIGMA_STAR_METRICS": "landscape",
    "benchmark": "training", "lines": "training",
    "write": "machine", "matmul_rate": "machine", "device_times": "machine", "load_average": "machine",
}


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"dynsim.bench.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'dynsim.bench' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))


__all__ = list(_EXPORTS)
