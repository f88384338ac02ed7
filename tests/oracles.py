"""numpy oracles of the fitted metrics' definitions, written apart from dynsim.metrics and dynsim.numerics."""
import numpy as np


def hann_late(times, steps, window):
    """Hann weights sin²(π(i + ½)/n) on the n fit times in the last ``window`` of the run, 0 before."""
    inside = times >= steps * (1 - window) - 1e-9
    n = inside.sum()
    w = np.zeros_like(times)
    w[inside] = np.sin(np.pi * (np.arange(n) + 0.5) / n) ** 2
    return w


def rate_and_timescale(times, y, steps, window=0.5):
    """``rate``: minus the Hann-weighted late-window slope of ``y``; ``timescale``: −1/whole-run OLS slope."""
    w = hann_late(times, steps, window)
    sel = w > 0
    slope = np.polyfit(times[sel], y[sel], 1, w=np.sqrt(w[sel]))[0]
    slope_T = np.polyfit(times, y, 1)[0]
    return -slope, (-1.0 / slope_T if slope_T < 0 else np.inf)
