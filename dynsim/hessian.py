r"""Top Hessian eigenvalues from Hessian-vector products: sharpness, the edge-of-stability metric.

Low level: depends only on jax and numpy. Parameters are any pytree of float arrays;
every function is pure, has a fixed iteration count and no Python branch on a value,
so it jits and ``vmap``\ s over models (a grid of parameter pytrees, keys, data).

**Hessian-vector product** (:func:`hvp`), forward-over-reverse (Pearlmutter 1994):

.. math::  H(θ)\,v = \frac{d}{dε}\nabla L(θ + εv)\Big|_{ε=0}
           = \texttt{jax.jvp(jax.grad(L), (θ,), (v,))[1]},

one forward pass through the backward pass: about 2-3 gradient evaluations of work
and no ``n × n`` matrix.

**Lanczos** (:func:`lanczos_top_k`). With ``q_1`` a unit start vector drawn from
``key``, ``m = iters`` steps of

.. math::  r = Aq_j - α_j q_j - β_{j-1} q_{j-1},\quad α_j = q_j^\top A q_j,\quad
           β_j = \lVert r \rVert,\quad q_{j+1} = r/β_j

build an orthonormal Krylov basis ``Q_m`` with ``Q_m^\top A Q_m = T_m`` tridiagonal
(``diag α``, off-diagonal ``β``). The eigenvalues of ``T_m`` (Ritz values) approach
the extreme eigenvalues of ``A`` first, at a rate set by the gap to the next one
(Kaniel-Paige-Saad). Each step costs one matvec (one HVP). In floating point the
basis loses orthogonality as Ritz values converge, so every step re-orthogonalises
``r`` against all previous ``q`` twice (classical Gram-Schmidt, "twice is enough";
``O(m n)`` per step, negligible next to an HVP for ``m ≲ 50``). If ``β_j`` vanishes (an
invariant subspace was found, e.g. a quadratic with few distinct eigenvalues), the
next ``q`` is a fresh random vector orthogonalised against ``Q`` and ``β_j`` is set to
0, so ``T_m`` stays a valid projection: no branch, no NaN. ``m`` is clipped to the
dimension ``n``; with ``m = n`` the Ritz values are the exact spectrum.

The result carries, per Ritz pair ``(λ_i, y_i = Q_m s_i)``, the residual
``‖A y_i − λ_i y_i‖ = β_m |s_{m,i}|`` (exact in exact arithmetic, free to compute): a
Ritz value lies within that distance of an eigenvalue of ``A``, so it is a built-in
convergence check.

**Preconditioned sharpness** (:func:`preconditioned_top_eigenvalues`). For an adaptive
rule with diagonal preconditioner ``P`` (step ``−η P^{-1} g``), the stability of the
frozen-``P`` linearised map is governed by the eigenvalues of ``P^{-1}H``, which are
those of the symmetric ``P^{-1/2} H P^{-1/2}`` (Cohen et al. 2022, "Adaptive gradient
methods at the edge of stability"); the matvec is ``v ↦ P^{-1/2} H (P^{-1/2} v)``.

**Use on a network** (any loss of the parameters alone; close over the data)::

    loss = lambda p: model.loss_fn(p, x, y)
    lam = hessian.top_eigenvalues(loss, params, k=3, iters=30, key=jax.random.PRNGKey(0))
    # many models at once (same data):
    lams = jax.vmap(lambda p, k: hessian.sharpness(loss, p, key=k))(stacked_params, keys)

For a loss summed over data batches pass your own ``matvec`` to :func:`lanczos_top_k`
(:mod:`dynsim.training` does this).

>>> import jax, jax.numpy as jnp
>>> loss = lambda t: 0.5 * jnp.sum(jnp.array([1.0, 2.0, 3.0, 0.5]) * t**2)
>>> [round(float(x), 6) for x in top_eigenvalues(loss, jnp.zeros(4), k=2)]
[3.0, 2.0]

References: Pearlmutter (1994) *Fast exact multiplication by the Hessian*; Golub & Van
Loan, *Matrix Computations* §10.1-10.3; Cohen, Kaur, Li, Kolter, Talwalkar (ICLR 2021)
*Gradient descent on neural networks typically occurs at the edge of stability*;
Cohen et al. (2022) *Adaptive gradient methods at the edge of stability*.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from dynsim.checks import check_int

PyTree = Any

__all__ = [
    "Hessian",
    "HESSIAN_POINTS",
    "LanczosResult",
    "hvp",
    "lanczos_top_k",
    "top_eigenvalues",
    "sharpness",
    "preconditioned_matvec",
    "preconditioned_top_eigenvalues",
    "preconditioned_sharpness",
    "DEFAULT_ITERS",
]

#: Default Lanczos steps (= HVPs) per call. On the 784-30-10 and CNN networks of
#: ``eos-sa`` the top eigenvalue is converged to < 1e-4 relative well before 20 steps
#: (see ``tests/test_hessian.py`` and ``results/eos-sa/NOTES.md``).
DEFAULT_ITERS = 20
#: Where :class:`Hessian` takes the curvature: the look-ahead point Θ = θ + σu or the paper's θ.
HESSIAN_POINTS = ("lookahead", "theta")


@dataclasses.dataclass(frozen=True)
class Hessian:
    """What to record of the Hessian spectrum along a run (:func:`dynsim.simulate`, :func:`dynsim.train`).

    Every ``every`` steps (step 0 included) the top ``k`` eigenvalues of ``∇²L`` by Lanczos
    with ``iters`` Hessian-vector products (:func:`lanczos_top_k`), at the look-ahead point
    Θ = θ + σu where the rule takes its gradient (``at="lookahead"``, the curvature that
    :func:`dynsim.analysis.stability_threshold` bounds) or at the paper's θ (``at="theta"``).
    Checked here, once, for every caller.

    >>> Hessian(10, k=3)
    Hessian(every=10, k=3, iters=20, at='lookahead')
    >>> Hessian(10, k=30)
    Traceback (most recent call last):
    ...
    ValueError: Hessian: k=30 must be <= iters=20
    """

    every: int
    k: int = 1
    iters: int = DEFAULT_ITERS
    at: str = "lookahead"

    def __post_init__(self):
        for name, lo in (("every", 1), ("k", 1), ("iters", 1)):
            object.__setattr__(self, name, check_int(f"Hessian: {name}", getattr(self, name), lo))
        if self.k > self.iters:
            raise ValueError(f"Hessian: k={self.k} must be <= iters={self.iters}")
        if self.at not in HESSIAN_POINTS:
            raise ValueError(f"Hessian: at={self.at!r} must be one of {', '.join(map(repr, HESSIAN_POINTS))}")


class LanczosResult(NamedTuple):
    """Top-``k`` Ritz pairs of a symmetric operator.

    Attributes:
      eigenvalues: ``(k,)``, largest (algebraically) first.
      residuals: ``(k,)``, ``‖A y_i − λ_i y_i‖`` for unit Ritz vectors ``y_i`` (a bound on
        the distance from ``λ_i`` to the spectrum).
      eigenvectors: unit Ritz vectors, stacked on a leading ``k`` axis, in the layout of
        the operand (pytree or flat array); ``None`` unless ``return_vectors=True``.
    """

    eigenvalues: jax.Array
    residuals: jax.Array
    eigenvectors: Any = None


def hvp(loss: Callable[[PyTree], jax.Array], params: PyTree, v: PyTree) -> PyTree:
    r"""Hessian-vector product ``∇²L(params) v``, forward-over-reverse.

    ``loss`` maps the parameter pytree to a scalar; ``v`` has the layout of ``params``.

    >>> import jax.numpy as jnp
    >>> hvp(lambda t: t[0] ** 2 * t[1], jnp.array([1.0, 2.0]), jnp.array([1.0, 0.0])).tolist()
    [4.0, 2.0]
    """
    return jax.jvp(jax.grad(loss), (params,), (v,))[1]


def _operand(like):
    """(flat zeros, unravel) for an int dimension, an array or a pytree."""
    if isinstance(like, (int, np.integer)) and not isinstance(like, bool):
        n = check_int("dim_or_params", like, 1)
        flat = jnp.zeros((n,), jnp.result_type(float))
        return flat, lambda x: x
    leaves = jax.tree.leaves(like)
    if not leaves:
        raise ValueError("dim_or_params must be a positive int or a non-empty pytree of float arrays")
    for x in leaves:
        if not jnp.issubdtype(jnp.result_type(x), jnp.floating):
            raise ValueError(f"dim_or_params: leaves must be float arrays, got dtype {jnp.result_type(x)}")
    flat, unravel = ravel_pytree(like)
    return jnp.zeros_like(flat), unravel


def lanczos_top_k(
    matvec: Callable[[Any], Any],
    dim_or_params: int | PyTree,
    k: int = 1,
    iters: int = DEFAULT_ITERS,
    key: jax.Array | None = None,
    *,
    return_vectors: bool = False,
    unroll: int | bool = 1,
) -> LanczosResult:
    r"""Top-``k`` eigenvalues of a symmetric linear operator by ``iters`` Lanczos steps.

    Args:
      matvec: ``v ↦ A v``. Takes and returns flat vectors when ``dim_or_params`` is an
        int, else pytrees laid out like ``dim_or_params``. ``A`` must be symmetric.
      dim_or_params: the dimension ``n``, or a pytree (its values are ignored; only
        shapes and dtypes are used).
      k: how many of the largest eigenvalues to return (``1 ≤ k ≤ min(iters, n)``).
      iters: Lanczos steps, each one ``matvec`` (static; clipped to ``n``). Full
        re-orthogonalisation makes each step ``O(iters·n)`` extra.
      key: PRNG key for the start vector (and for restarts after a breakdown);
        default ``PRNGKey(0)``. The result is a deterministic function of the key.
      return_vectors: also return the unit Ritz vectors.
      unroll: ``lax.fori_loop`` unroll factor (``True``: fully unrolled). Only speed and
        compile time change. XLA:CPU runs convolutions inside a loop body an order of
        magnitude slower than outside one (jax-ml/jax#12868), so CNN Hessians on CPU want
        ``unroll=True``.

    Returns:
      :class:`LanczosResult` (eigenvalues descending, residual bounds, vectors).

    >>> import jax.numpy as jnp
    >>> a = jnp.diag(jnp.arange(1.0, 7.0))
    >>> r = lanczos_top_k(lambda v: a @ v, 6, k=3, iters=6)
    >>> [round(float(x), 6) for x in r.eigenvalues]
    [6.0, 5.0, 4.0]
    """
    flat0, unravel = _operand(dim_or_params)
    n = flat0.shape[0]
    k = check_int("k", k, 1)
    m = min(check_int("iters", iters, 1), n)
    if k > m:
        raise ValueError(f"k={k} must be <= min(iters, dim) = {m}")
    if not isinstance(unroll, (bool, int)) or (not isinstance(unroll, bool) and unroll < 1):
        raise ValueError(f"unroll={unroll!r} must be True, False or an int >= 1")
    if not isinstance(return_vectors, bool):
        raise ValueError(f"return_vectors={return_vectors!r} must be True or False")
    dt = flat0.dtype
    key = jax.random.PRNGKey(0) if key is None else key
    k_start, k_restart = jax.random.split(key)
    eps = jnp.finfo(dt).eps

    def mv(x):
        return ravel_pytree(matvec(unravel(x)))[0].astype(dt)

    def orth(Q, r):  # twice is enough (Kahan-Parlett); rows of Q not yet filled are zero
        r = r - Q.T @ (Q @ r)
        return r - Q.T @ (Q @ r)

    q1 = jax.random.normal(k_start, (n,), dt)
    q1 = q1 / jnp.linalg.norm(q1)

    def body(j, carry):
        Q, alpha, beta, q, q_prev, b_prev, scale = carry
        Q = Q.at[j].set(q)
        w = mv(q)
        a = jnp.vdot(q, w)
        r = orth(Q, w - a * q - b_prev * q_prev)
        b = jnp.linalg.norm(r)
        scale = jnp.maximum(scale, jnp.maximum(jnp.abs(a), b))
        # breakdown (invariant subspace): continue from a random vector orthogonal to Q
        z = orth(Q, jax.random.normal(jax.random.fold_in(k_restart, j), (n,), dt))
        z = z / jnp.maximum(jnp.linalg.norm(z), jnp.finfo(dt).tiny)
        broke = b <= 10 * eps * scale
        q_next = jnp.where(broke, z, r / jnp.where(broke, 1, b))
        b_eff = jnp.where(broke, 0, b).astype(dt)
        return (Q, alpha.at[j].set(a), beta.at[j].set(b_eff), q_next, q, b_eff, scale)

    carry0 = (jnp.zeros((m, n), dt), jnp.zeros((m,), dt), jnp.zeros((m,), dt), q1,
              jnp.zeros((n,), dt), jnp.zeros((), dt), jnp.zeros((), dt))
    Q, alpha, beta, *_ = jax.lax.fori_loop(0, m, body, carry0, unroll=unroll)
    off = beta[: m - 1]
    T = jnp.diag(alpha) + jnp.diag(off, 1) + jnp.diag(off, -1)
    evals, S = jnp.linalg.eigh(T)  # ascending
    top = jnp.arange(m - 1, m - 1 - k, -1)
    b_last = beta[m - 1] if m < n else jnp.zeros((), dt)  # m = n: T is the whole operator
    residuals = jnp.abs(b_last * S[m - 1, top])
    vectors = None
    if return_vectors:
        vecs = S[:, top].T @ Q  # (k, n)
        vectors = jax.vmap(unravel)(vecs)
    return LanczosResult(evals[top], residuals, vectors)


def top_eigenvalues(
    loss: Callable[[PyTree], jax.Array],
    params: PyTree,
    k: int = 1,
    *,
    iters: int = DEFAULT_ITERS,
    key: jax.Array | None = None,
) -> jax.Array:
    r"""The ``k`` largest eigenvalues of ``∇²loss(params)``, shape ``(k,)``, descending.

    ``iters`` Lanczos steps, each one forward-over-reverse HVP (:func:`hvp`).
    """
    return lanczos_top_k(lambda v: hvp(loss, params, v), params, k, iters, key).eigenvalues


def sharpness(loss: Callable[[PyTree], jax.Array], params: PyTree, *, iters: int = DEFAULT_ITERS,
              key: jax.Array | None = None) -> jax.Array:
    """The largest Hessian eigenvalue ``λ_max(∇²loss(params))`` (Cohen et al. 2021's sharpness); a scalar."""
    return top_eigenvalues(loss, params, 1, iters=iters, key=key)[0]


def preconditioned_matvec(matvec: Callable[[PyTree], PyTree], preconditioner: PyTree) -> Callable:
    r"""``v ↦ P^{-1/2} A (P^{-1/2} v)`` for a diagonal preconditioner ``P`` (a pytree like ``v``, ``P > 0``).

    Symmetric when ``A`` is; its eigenvalues are those of ``P^{-1}A``.
    """
    inv_sqrt = jax.tree.map(lambda p: jax.lax.rsqrt(p), preconditioner)

    def mv(v):
        w = matvec(jax.tree.map(jnp.multiply, inv_sqrt, v))
        return jax.tree.map(jnp.multiply, inv_sqrt, w)

    return mv


def preconditioned_top_eigenvalues(
    loss: Callable[[PyTree], jax.Array],
    params: PyTree,
    preconditioner: PyTree,
    k: int = 1,
    *,
    iters: int = DEFAULT_ITERS,
    key: jax.Array | None = None,
) -> jax.Array:
    r"""The ``k`` largest eigenvalues of ``P^{-1/2} ∇²L P^{-1/2}`` (= those of ``P^{-1}∇²L``).

    ``preconditioner``: the diagonal ``P`` as a pytree laid out like ``params``, all
    entries ``> 0`` -- e.g. Adam's ``√v̂ + ε`` (Cohen et al. 2022's preconditioned
    sharpness is the first of these).
    """
    p_def: Any = jax.tree.structure(preconditioner)  # Any: jaxlib's PyTreeDef has no comparison in its stubs
    if p_def != jax.tree.structure(params):
        raise ValueError("preconditioner must be a pytree with the structure of params")
    mv = preconditioned_matvec(lambda v: hvp(loss, params, v), preconditioner)
    return lanczos_top_k(mv, params, k, iters, key).eigenvalues


def preconditioned_sharpness(loss, params, preconditioner, *, iters: int = DEFAULT_ITERS, key=None):
    """``λ_max(P^{-1} ∇²L)``, a scalar (see :func:`preconditioned_top_eigenvalues`)."""
    return preconditioned_top_eigenvalues(loss, params, preconditioner, 1, iters=iters, key=key)[0]
