"""Linear solvers with one signature: ``solve(matvec, b, *, maxiter, tol, ridge) -> x``.

Each returns x ≈ (A + ridge·I)⁻¹ b where ``matvec(v) = A v`` and vectors are lists of tensors (the
structure of w). CG, Neumann series and the dense solve swap freely (JAXopt ``linear_solve``);
implicit differentiation (:mod:`hypergradient.estimators.ift`) uses them for H x = α.
Every solver counts its iterations as ``maxiter``.

    >>> x = cg(lambda v: [h @ v[0]], [b], maxiter=50, tol=1e-12, ridge=0.0)
"""

from __future__ import annotations

from typing import Callable, Iterator, Sequence

import torch

from ..core.tree import dot

__all__ = ["cg", "neumann", "dense", "SOLVERS"]

Vec = Sequence[torch.Tensor]
Matvec = Callable[[list[torch.Tensor]], Sequence[torch.Tensor]]  # v -> A v


def _axpy(alpha: float | torch.Tensor, x: Vec, y: Vec) -> list[torch.Tensor]:
    return [alpha * xi + yi for xi, yi in zip(x, y)]


def _operator(matvec: Matvec, ridge: float) -> Callable[[list[torch.Tensor]], list[torch.Tensor]]:
    if ridge < 0:
        raise ValueError(f"ridge must be >= 0, got {ridge}")
    if ridge == 0:
        return lambda v: list(matvec(v))
    return lambda v: [a + ridge * vi for a, vi in zip(matvec(v), v)]


def _check(maxiter: object) -> None:
    if not isinstance(maxiter, int) or maxiter < 1:
        raise ValueError(f"maxiter must be a positive int, got {maxiter!r}")


def cg(matvec: Matvec, b: Vec, *, maxiter: int = 100, tol: float = 1e-10, ridge: float = 0.0) -> list[torch.Tensor]:
    """Conjugate gradients for symmetric positive definite A + ridge·I (Hestenes & Stiefel; Pedregosa
    2016 for hypergradients). Stops when ‖r‖ ≤ tol·‖b‖ or after ``maxiter`` matvecs; x_0 = 0."""
    _check(maxiter)
    A = _operator(matvec, ridge)
    x = [torch.zeros_like(bi) for bi in b]
    r = [bi.clone() for bi in b]
    p = [bi.clone() for bi in b]
    rr = dot(r, r)
    stop = (tol * torch.sqrt(rr)) ** 2
    for _ in range(maxiter):
        if rr <= stop:
            break
        Ap = A(p)
        step = rr / dot(p, Ap)
        x = _axpy(step, p, x)
        r = _axpy(-step, Ap, r)
        rr_new = dot(r, r)
        p = _axpy(rr_new / rr, p, r)
        rr = rr_new
    return x


def neumann(matvec: Matvec, b: Vec, *, maxiter: int = 20, tol: float = 0.0, ridge: float = 0.0,
            lr: float = 1.0) -> list[torch.Tensor]:
    """Truncated Neumann series ``x = lr Σ_{j=0..maxiter} (I − lr (A + ridge·I))^j b`` with ``maxiter``
    matvecs (Lorraine et al. 2020, Algorithm 3: p = v; repeat i times v −= lr A v, p += v), which
    converges to (A + ridge·I)⁻¹ b when 0 < lr < 2/‖A + ridge·I‖. Stops early when a term's norm falls
    below tol·‖b‖."""
    _check(maxiter)
    if lr <= 0:
        raise ValueError(f"the Neumann step lr must be > 0, got {lr}")
    A = _operator(matvec, ridge)
    v = [bi.clone() for bi in b]
    p = [bi.clone() for bi in b]
    stop = tol * torch.sqrt(dot(b, b)) if tol > 0 else None
    for _ in range(maxiter):
        v = _axpy(-lr, A(v), v)
        p = [pi + vi for pi, vi in zip(p, v)]
        if stop is not None and torch.sqrt(dot(v, v)) <= stop:
            break
    return [lr * pi for pi in p]


def dense(matvec: Matvec, b: Vec, *, maxiter: int | None = None, tol: float | None = None,
          ridge: float = 0.0, max_size: int | None = 4096) -> list[torch.Tensor]:
    """Materialise A + ridge·I with one matvec per entry of b and solve exactly (small problems;
    ``maxiter`` and ``tol`` are ignored). Refuses systems larger than ``max_size`` (None: no limit),
    which would take n matvecs and n² entries of memory."""
    A = _operator(matvec, ridge)
    sizes = [bi.numel() for bi in b]
    n = sum(sizes)
    if max_size is not None and n > max_size:
        raise ValueError(f"the dense solve would materialise a {n}×{n} matrix ({n} Hessian-vector products); "
                         f"that is over max_size={max_size}: use solver='cg' or 'neumann', or pass "
                         f"max_size=None to force it")
    flat_b = torch.cat([bi.reshape(-1) for bi in b])
    cols = []
    for j in range(n):
        e = torch.zeros_like(flat_b)
        e[j] = 1
        cols.append(torch.cat([a.reshape(-1) for a in A(list(_split(e, b, sizes)))]))
    x = torch.linalg.solve(torch.stack(cols, dim=1), flat_b)
    return list(_split(x, b, sizes))


def _split(flat: torch.Tensor, like: Vec, sizes: list[int]) -> Iterator[torch.Tensor]:
    for chunk, ref in zip(torch.split(flat, sizes), like):
        yield chunk.reshape(ref.shape)


SOLVERS = {"cg": cg, "neumann": neumann, "dense": dense}
