"""Small float64 reference problems with known answers (used by ``hypergradient verify``).

* :func:`mlp` — a tanh MLP trained by SGD with momentum on minibatches; λ = per-tensor learning rates
  (optional) and one L2 coefficient per parameter tensor. Checked against central finite differences.
* :func:`ridge` — ridge regression trained by gradient descent to convergence; λ = log of the ridge
  coefficient ρ = e^r. At the fixed point w* = (XᵀX/n + ρI)⁻¹ Xᵀy/n, so
  dL_val/dr = −ρ ∇L_val(w*)ᵀ (XᵀX/n + ρI)⁻¹ w*   (the closed form the IFT methods must match).
* :func:`linear` — a training loss linear in w, so plain SGD moves w along a straight line
  (w_t = w_0 − t η c(λ)); DrMAD's interpolation is then exact.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..core.functional import Forward
from ..core.hyper import Hyper, HyperView
from ..core.inputs import Data, Hypers
from ..core.problem import InnerProblem
from ..core.types import Batch
from ..optim import SGD

DT = torch.float64


def _l2(f: Forward, batch: Batch, hp: HyperView) -> torch.Tensor:
    return F.cross_entropy(f(batch[0]), batch[1]) + sum(c * (p * p).sum() for c, p in zip(hp["l2"], f.params.values()))


def _ce(f: Forward, batch: Batch, hp: HyperView) -> torch.Tensor:
    return F.cross_entropy(f(batch[0]), batch[1])


def mlp(learn_lr: bool = True, T: int = 10, seed: int = 0) -> InnerProblem:
    g = torch.Generator().manual_seed(seed)
    X, Xv = torch.randn(32, 5, generator=g, dtype=DT), torch.randn(16, 5, generator=g, dtype=DT)
    y, yv = torch.randint(0, 3, (32,), generator=g), torch.randint(0, 3, (16,), generator=g)
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 3)).to(DT)
    lr = Hyper(0.3, "tensor", positive="exp") if learn_lr else 0.3
    return InnerProblem(model, _l2, _ce, SGD(lr=lr, momentum=0.5),
                        Hypers(loss={"l2": Hyper(torch.full((4,), 1e-2, dtype=DT), positive="exp")}),
                        Data([(X[i:i + 8], y[i:i + 8]) for i in range(0, 32, 8)], (Xv, yv)), horizon=T)


class _Linear(nn.Module):
    def __init__(self, d: int) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.zeros(d, dtype=DT))

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        return X @ self.w


def _ridge_data(seed: int = 0, n: int = 40, d: int = 6
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    X, Xv = torch.randn(n, d, generator=g, dtype=DT), torch.randn(n, d, generator=g, dtype=DT)
    wt = torch.randn(d, generator=g, dtype=DT)
    return X, X @ wt + 0.5 * torch.randn(n, generator=g, dtype=DT), Xv, Xv @ wt


def ridge(T: int = 400, rho: float = 0.1, seed: int = 0) -> InnerProblem:
    X, y, Xv, yv = _ridge_data(seed)

    def train(f: Forward, batch: Batch, hp: HyperView) -> torch.Tensor:
        return 0.5 * ((f(batch[0]) - batch[1]) ** 2).mean() + 0.5 * hp["rho"] * (f.params["w"] ** 2).sum()

    def val(f: Forward, batch: Batch, hp: HyperView) -> torch.Tensor:
        return 0.5 * ((f(batch[0]) - batch[1]) ** 2).mean()

    return InnerProblem(_Linear(X.shape[1]), train, val, SGD(lr=0.3), Hypers(loss={"rho": Hyper(rho, positive="exp")}),
                        Data([(X, y)], (Xv, yv)), horizon=T)


def ridge_closed_form(rho: float = 0.1, seed: int = 0) -> torch.Tensor:
    """dL_val/dr at the ridge fixed point, r = log ρ."""
    X, y, Xv, yv = _ridge_data(seed)
    n, d = X.shape
    A = X.T @ X / n + rho * torch.eye(d, dtype=DT)
    w = torch.linalg.solve(A, X.T @ y / n)
    gval = Xv.T @ (Xv @ w - yv) / n
    return -rho * gval @ torch.linalg.solve(A, w)


def linear(T: int = 20, seed: int = 0) -> InnerProblem:
    g = torch.Generator().manual_seed(seed)
    c, target = torch.randn(6, generator=g, dtype=DT), torch.randn(6, generator=g, dtype=DT)
    one = torch.ones(1, 6, dtype=DT)

    def train(f: Forward, batch: Batch, hp: HyperView) -> torch.Tensor:
        # ⟨λ ⊙ c, w⟩: gradient λ ⊙ c, constant in w
        return (hp["scale"] * c * f.params["w"]).sum() + 0.0 * f(one).sum()

    def val(f: Forward, batch: Batch, hp: HyperView) -> torch.Tensor:
        return 0.5 * ((f.params["w"] - target) ** 2).sum() + 0.0 * f(one).sum()

    return InnerProblem(_Linear(6), train, val, SGD(lr=0.05), Hypers(loss={"scale": Hyper(torch.ones(6, dtype=DT))}),
                        Data([None], (one,)), horizon=T)


def influence_balancing(T: int = 60, decay: float = 0.9, coupling: float = 0.3) -> InnerProblem:
    """A problem on which truncation gets the sign wrong (the idea of Tallec & Ollivier's influence
    balancing, used by the PES paper; our own instance): w = (u, v) under SGD with lr 1 on the quadratic
    L_train = ½u² + ½(1 − d)v² − c·uv − θu + θv, so that u_t = c v_{t−1} + θ and v_t = d v_{t−1} + c u_{t−1}
    − θ. θ raises u at once and lowers it through v over the following steps: for L_val = −u_T one
    step of lookahead gives dL_val/dθ = −1, truncated backpropagation over the last 5 steps −0.14, the
    whole horizon +7.86 (T = 60, d = 0.9, c = 0.3; rmd)."""
    one = torch.ones(1, 2, dtype=DT)
    d, c = decay, coupling

    def train(f: Forward, batch: Batch, hp: HyperView) -> torch.Tensor:
        u, v = f.params["w"][0], f.params["w"][1]
        theta = hp["theta"]
        return 0.5 * u ** 2 + 0.5 * (1 - d) * v ** 2 - c * u * v - theta * u + theta * v + 0.0 * f(one).sum()

    def val(f: Forward, batch: Batch, hp: HyperView) -> torch.Tensor:
        return -f.params["w"][0] + 0.0 * f(one).sum()

    return InnerProblem(_Linear(2), train, val, SGD(lr=1.0), Hypers(loss={"theta": Hyper(torch.tensor(0.5, dtype=DT))}),
                        Data([None], (one,)), horizon=T)
