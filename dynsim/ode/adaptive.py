r"""The diffrax bridge: an adaptive reference solution (optional dependency, imported lazily)."""
from __future__ import annotations

import jax.numpy as jnp

from dynsim.ode.integrators import _as_state
from dynsim.ode.systems import VectorField

__all__ = ["solve_diffrax"]


def solve_diffrax(f: VectorField, y0, t0, t1, params=None, *, ts=None, dt0=None,
                  solver=None, rtol: float = 1e-8, atol: float = 1e-10,
                  max_steps: int = 100_000):
    """Adaptive reference solution with diffrax (optional dependency), ``Tsit5`` by default.

    Returns ``(ts, ys)`` at the requested times ``ts`` (default: only ``t1``).
    Imports diffrax lazily; raises ``ImportError`` with the install hint if missing.
    """
    try:
        import diffrax
    except ImportError as e:
        raise ImportError(
            "dynsim.ode.solve_diffrax needs the optional dependency diffrax; "
            "install it with `pip install dynsim[diffrax]` (or `pip install diffrax`)"
        ) from e
    term = diffrax.ODETerm(lambda t, y, args: f(t, y, args))
    saveat = diffrax.SaveAt(ts=jnp.asarray(ts)) if ts is not None else diffrax.SaveAt(t1=True)
    sol = diffrax.diffeqsolve(
        term,
        diffrax.Tsit5() if solver is None else solver,
        t0,
        t1,
        dt0,
        _as_state(y0),
        args=params,
        saveat=saveat,
        stepsize_controller=diffrax.PIDController(rtol=rtol, atol=atol),
        max_steps=max_steps,
    )
    return sol.ts, sol.ys
