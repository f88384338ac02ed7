r"""Small numerical tools shared by the library: one copy of each.

Vectorised over independent problems (numpy arrays of brackets), with the function
evaluated on the host in batches, so the expensive part (a compiled JAX program over
all problems at once) runs once per iteration.

>>> import numpy as np
>>> x, fx = golden_section(lambda s: (s - np.array([1.0, 2.0])) ** 2, [0.0, 0.0], [3.0, 3.0], 1e-8)
>>> np.round(x, 6).tolist()
[1.0, 2.0]
>>> bisect_sign(lambda s: s - 0.25, np.array([0.0]), np.array([1.0]), rtol=0, atol=1e-10).round(8).tolist()
[0.25]
"""
from __future__ import annotations

import math

import numpy as np

__all__ = ["GOLDEN", "golden_section", "bracket_walk", "bisect_sign"]

#: The inverse golden ratio (√5 − 1)/2.
GOLDEN = (math.sqrt(5.0) - 1.0) / 2.0


def golden_section(f, a, b, tol_abs, maxiter: int = 200):
    """Vectorised golden-section minimisation of ``f`` on brackets ``[a, b]``.

    ``f`` maps an array of points (one per problem) to their values. Each iteration
    costs one evaluation per problem (the kept interior point is reused); a problem
    whose bracket is below ``tol_abs`` is frozen. Returns ``(x, f(x))``: the better
    interior point, which lies within ``tol_abs`` of the minimiser of a unimodal ``f``.
    """
    a, b = np.array(a, float), np.array(b, float)
    c = b - GOLDEN * (b - a)
    d = a + GOLDEN * (b - a)
    fc, fd = f(c), f(d)
    for _ in range(maxiter):
        if np.all(b - a <= tol_abs):
            break
        left = fc <= fd  # minimum in [a, d]
        a2 = np.where(left, a, c)
        b2 = np.where(left, d, b)
        new = np.where(left, b2 - GOLDEN * (b2 - a2), a2 + GOLDEN * (b2 - a2))
        fnew = f(new)
        c2 = np.where(left, new, d)
        fc2 = np.where(left, fnew, fd)
        d2 = np.where(left, c, new)
        fd2 = np.where(left, fc, fnew)
        frozen = (b - a) <= tol_abs
        a, b = np.where(frozen, a, a2), np.where(frozen, b, b2)
        c, d = np.where(frozen, c, c2), np.where(frozen, d, d2)
        fc, fd = np.where(frozen, fc, fc2), np.where(frozen, fd, fd2)
    better = fc <= fd
    return np.where(better, c, d), np.where(better, fc, fd)


def bracket_walk(f, grid, i0, max_steps: int | None = None):
    """Move each index downhill on ``grid`` until ``f`` at ``(i−1, i, i+1)`` brackets a minimum.

    Vectorised over problems; one new evaluation per problem and step. Returns the final
    indices and a flag for problems that ran into the grid edge.
    """
    n = len(grid)
    i = np.clip(np.asarray(i0), 1, n - 2)
    fl, fm, fr = f(grid[i - 1]), f(grid[i]), f(grid[i + 1])
    edge = np.zeros(i.shape, bool)
    for _ in range(max_steps or n):
        go_left = (fl < fm) & (fl <= fr) & ~edge
        go_right = (fr < fm) & (fr < fl) & ~edge
        if not np.any(go_left | go_right):
            break
        edge |= (go_left & (i - 1 < 1)) | (go_right & (i + 1 > n - 2))
        go_left &= ~edge
        go_right &= ~edge
        i_new = np.where(go_left, i - 1, np.where(go_right, i + 1, i))
        probe = np.where(go_left, i_new - 1, np.where(go_right, i_new + 1, i_new))
        fp = f(grid[probe])
        fl, fm, fr = (np.where(go_left, fp, np.where(go_right, fm, fl)),
                      np.where(go_left, fl, np.where(go_right, fr, fm)),
                      np.where(go_left, fm, np.where(go_right, fp, fr)))
        i = i_new
    return i, edge


def bisect_sign(f, lo, hi, rtol, atol, maxiter: int = 200):
    """Vectorised bisection for the sign change of ``f`` between ``lo`` and ``hi``.

    Only the sign of ``f > 0`` is used. Stops when every bracket is below
    ``rtol·|midpoint| + atol``; returns the midpoints.
    """
    lo, hi = np.array(lo, float), np.array(hi, float)
    flo = f(lo) > 0
    for _ in range(maxiter):
        if np.all(np.abs(hi - lo) <= rtol * np.abs(0.5 * (lo + hi)) + atol):
            break
        mid = 0.5 * (lo + hi)
        fm = f(mid) > 0
        same = fm == flo
        lo, hi = np.where(same, mid, lo), np.where(same, hi, mid)
    return 0.5 * (lo + hi)
