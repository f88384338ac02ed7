r"""Per-point reductions on batched pytrees (leading axis: the points) and exact powers of two.

The renormalisation multiplies a state by ``2^{-e}``: :func:`exponent` reads ``e`` from the
bits and :func:`pow2` builds ``2^e`` from bits, so the rescaling never rounds.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = ["exponent", "pow2", "sum_sq", "max_abs", "dot", "scale", "log_norm", "bcast", "to_complex"]


def exponent(a: jax.Array) -> jax.Array:
    """``e`` with ``2^e ≤ a < 2^{e+1}`` for positive normal ``a`` (int32); bit ops only."""
    if a.dtype == jnp.float32:
        bits = jax.lax.bitcast_convert_type(a, jnp.int32)
        return ((bits >> 23) & 0xFF) - 127
    bits = jax.lax.bitcast_convert_type(a, jnp.int64)
    return (((bits >> 52) & 0x7FF) - 1023).astype(jnp.int32)


def pow2(e: jax.Array, dtype) -> jax.Array:
    """Exact ``2^e`` for ``e`` in the normal range (clipped), built from bits."""
    if jnp.dtype(dtype) == jnp.float32:
        e = jnp.clip(e, -126, 127)
        return jax.lax.bitcast_convert_type((e + 127) << 23, jnp.float32)
    e = jnp.clip(e, -1022, 1023).astype(jnp.int64)
    return jax.lax.bitcast_convert_type((e + 1023) << 52, jnp.float64)


# --------------------------------------------------------------------------- helpers on batched pytrees


def sum_sq(tree, n_points: int):
    leaves = jax.tree.leaves(tree)
    return sum(jnp.sum(jnp.reshape(x * x, (n_points, -1)), axis=1) for x in leaves)


def max_abs(tree, n_points: int):
    leaves = jax.tree.leaves(tree)
    out = None
    for x in leaves:
        m = jnp.max(jnp.abs(jnp.reshape(x, (n_points, -1))), axis=1)
        out = m if out is None else jnp.maximum(out, m)
    return out


def dot(a, b, n_points: int):
    return sum(
        jnp.sum(jnp.reshape(x * y, (n_points, -1)), axis=1)
        for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b))
    )


def scale(tree, s):
    """Multiply every float leaf of a batched pytree by a per-point factor ``s`` (P,)."""

    def f(x):
        if not jnp.issubdtype(x.dtype, jnp.floating):
            return x
        return x * jnp.reshape(s, s.shape + (1,) * (x.ndim - 1)).astype(x.dtype)

    return jax.tree.map(f, tree)


def log_norm(tree, n_points: int):
    """``ln‖tree‖`` per point, prescaled by the max-abs entry so squares never underflow."""
    a = max_abs(tree, n_points)
    ok = (a > 0) & (a < jnp.inf)
    safe = jnp.where(ok, a, 1.0)
    n2 = sum_sq(scale(tree, 1.0 / safe), n_points)
    return jnp.where(ok, jnp.log(safe) + 0.5 * jnp.log(n2), jnp.where(a > 0, a, -jnp.inf))


def bcast(v, x):
    return jnp.reshape(v, v.shape + (1,) * (x.ndim - 1))


def to_complex(a, b):
    return jax.lax.complex(a, b)
