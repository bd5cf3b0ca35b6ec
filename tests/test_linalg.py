"""The linear solvers share one signature ``solve(matvec, b, *, maxiter, tol, ridge)`` (STYLE.md §4):
one parametrized test runs them all on the same symmetric positive definite system."""

from __future__ import annotations

import pytest
import torch

from hypergradient.linalg import SOLVERS, cg, dense, neumann


def system(seed: int = 0):
    """A (two-block, like a list of weight tensors) SPD system with eigenvalues in [0.5, 1.5]."""
    g = torch.Generator().manual_seed(seed)
    Q, _ = torch.linalg.qr(torch.randn(6, 6, generator=g))
    A = Q @ torch.diag(torch.linspace(0.5, 1.5, 6)) @ Q.T
    b = [torch.randn(2, 2, generator=g), torch.randn(2, generator=g)]

    def matvec(v):
        y = A @ torch.cat([v[0].reshape(-1), v[1]])
        return [y[:4].reshape(2, 2), y[4:]]
    return A, b, matvec


OPTIONS = {"cg": dict(maxiter=50, tol=1e-14), "neumann": dict(maxiter=200, tol=1e-15, lr=1.0), "dense": {}}


@pytest.mark.parametrize("name", sorted(SOLVERS))
@pytest.mark.parametrize("ridge", [0.0, 0.3])
def test_solvers_agree_with_the_dense_inverse(name, ridge):
    A, b, matvec = system()
    x = SOLVERS[name](matvec, b, ridge=ridge, **OPTIONS[name])
    ref = torch.linalg.solve(A + ridge * torch.eye(6), torch.cat([b[0].reshape(-1), b[1]]))
    assert [xi.shape for xi in x] == [bi.shape for bi in b]
    torch.testing.assert_close(torch.cat([x[0].reshape(-1), x[1]]), ref, rtol=1e-11, atol=1e-12)


def test_neumann_truncation_and_matvec_count():
    """x = lr Σ_{j=0..N} (I − lr A)^j b with exactly N matvecs (Lorraine et al. 2020, Algorithm 3)."""
    A, b, matvec = system()
    calls = []

    def counted(v):
        calls.append(1)
        return matvec(v)
    x = neumann(counted, b, maxiter=3, lr=0.5)
    M = torch.eye(6) - 0.5 * A
    bf = torch.cat([b[0].reshape(-1), b[1]])
    ref = 0.5 * sum(torch.linalg.matrix_power(M, j) @ bf for j in range(4))
    torch.testing.assert_close(torch.cat([x[0].reshape(-1), x[1]]), ref)
    assert len(calls) == 3


def test_cg_stops_at_tolerance():
    A, b, matvec = system()
    calls = []
    cg(lambda v: calls.append(1) or matvec(v), b, maxiter=100, tol=1e-3)
    assert 0 < len(calls) < 6


@pytest.mark.parametrize("solver", [cg, neumann])
def test_bad_options_raise(solver):
    _, b, matvec = system()
    with pytest.raises(ValueError, match="maxiter"):
        solver(matvec, b, maxiter=0)
    with pytest.raises(ValueError, match="ridge"):
        solver(matvec, b, maxiter=3, ridge=-1.0)
    with pytest.raises(ValueError, match="ridge"):
        dense(matvec, b, ridge=-1.0)


def test_dense_refuses_large_systems_before_any_matvec():
    A, b, matvec = system()
    n = sum(x.numel() for x in b)
    calls = []
    with pytest.raises(ValueError, match="solver='cg'"):
        dense(lambda v: calls.append(1) or matvec(v), b, max_size=n - 1)
    assert not calls
    x = dense(matvec, b, max_size=None)
    assert torch.allclose(torch.cat([xi.reshape(-1) for xi in x]),
                          torch.cat([xi.reshape(-1) for xi in dense(matvec, b)]))
