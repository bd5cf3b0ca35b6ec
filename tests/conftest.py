"""Shared small problems and the central finite-difference oracle (ALGORITHMS.md §0, "Check").

Everything here runs in float64 on tiny models with smooth activations (tanh / softplus, never ReLU:
a kink inside the difference interval ruins central differences).
"""

from __future__ import annotations

from typing import Callable, Mapping

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import hypergradient as hg
from hypergradient.core.optimizer import Optimizer, get_optimizer

# Tiny tensors: intra-op threads only add synchronisation, and on a busy 2-core machine OpenMP's
# spinning makes every op ~20x slower. One thread keeps the suite fast and its timing stable.
torch.set_num_threads(1)

STORAGES = ("graph", "recompute", "checkpoint")
FD_RTOL = 1e-6      # exact estimators vs central differences (ALGORITHMS.md §0)
AGREE_RTOL = 1e-10  # exact estimators vs each other


@pytest.fixture(autouse=True)
def _float64():
    """Every test runs with float64 as the default dtype, restored afterwards."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


# ---- data and models ---------------------------------------------------------------------------------
def classification_data(seed: int = 0, n_in: int = 4, n_cls: int = 3, n_train: int = 16, n_batches: int = 2,
                        n_val: int = 8):
    """(train batches, validation batch): Gaussian inputs, random labels."""
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n_train, n_in, generator=g, dtype=torch.float64)
    y = torch.randint(0, n_cls, (n_train,), generator=g)
    Xv = torch.randn(n_val, n_in, generator=g, dtype=torch.float64)
    yv = torch.randint(0, n_cls, (n_val,), generator=g)
    b = n_train // n_batches
    return [(X[i:i + b], y[i:i + b]) for i in range(0, n_train, b)], (Xv, yv)


def mlp(sizes=(4, 6, 3), act=nn.Tanh, seed: int = 0) -> nn.Module:
    """A float64 MLP with smooth activations."""
    torch.manual_seed(seed)
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(act())
    return nn.Sequential(*layers).double()


def ce(f, batch, hp):
    """Cross-entropy of the model on a batch (the default train and validation loss)."""
    x, y = batch
    return F.cross_entropy(f(x), y)


def ce_l2(f, batch, hp):
    """Cross-entropy plus an L2 penalty whose coefficient is the loss hyperparameter ``l2``."""
    return ce(f, batch, hp) + hp["l2"] * sum((p ** 2).sum() for p in f.params.values())


def make_problem(optimizer="sgd", hparams: Mapping | None = None, *, model: nn.Module | None = None,
                 T: int = 6, options: Mapping | None = None, train_loss: Callable = ce,
                 val_loss: Callable = ce, data_seed: int = 0, **kw) -> hg.InnerProblem:
    """An InnerProblem on the small classification task (MLP 4-6-3 unless ``model`` is given), the
    optimizer carrying ``hparams`` and ``options``; ``kw`` are the fields of Hypers (``loss_hparams``, ``model_hparams``, ``hparam_modules``) and Settings."""
    train, val = classification_data(data_seed)
    hypers = hg.Hypers(model=kw.pop("model_hparams", None), loss=kw.pop("loss_hparams", None),
                       modules=kw.pop("hparam_modules", None))
    return hg.InnerProblem(mlp() if model is None else model, train_loss, val_loss,
                           optimizer.with_values(dict(hparams or {})) if isinstance(optimizer, Optimizer)
                           else get_optimizer(optimizer, **dict(hparams or {}), **dict(options or {})), hypers,
                           hg.Data(train, val), horizon=T, settings=hg.Settings(**kw))


# ---- oracles -----------------------------------------------------------------------------------------
def detached(lam: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in lam.items()}


def val_after(problem: hg.InnerProblem, T: int | None = None, state=None) -> Callable[[Mapping], float]:
    """λ ↦ L_val(w_T(λ), λ): the function whose gradient every exact estimator computes."""
    T = problem.horizon_or(T)

    def fun(lam):
        s0 = problem.init_state() if state is None else state
        sT, _ = problem.run(s0, lam, T)
        return problem.val_loss_at(sT, lam).item()
    return fun


def fd_grad(fun: Callable[[Mapping], float], lam: Mapping[str, torch.Tensor], eps: float = 1e-6) -> dict:
    """Central finite differences of ``fun`` at ``lam``, entry by entry, in λ's structure.

    Error ≈ eps² |f⁽³⁾|/6 (truncation) + 1e-16/eps (round-off): at eps = 1e-6 both stay near 1e-10 on
    these problems, while eps = 1e-5 already leaves ~3e-6 relative error where curvature is high."""
    base = detached(lam)
    out = {}
    with torch.no_grad():
        for k, v in base.items():
            g = torch.zeros_like(v)
            for i in range(v.numel()):
                plus, minus = detached(base), detached(base)
                plus[k].view(-1)[i] += eps
                minus[k].view(-1)[i] -= eps
                g.view(-1)[i] = (fun(plus) - fun(minus)) / (2 * eps)
            out[k] = g
    return out


def flat(d: Mapping[str, torch.Tensor], keys=None) -> torch.Tensor:
    keys = list(d) if keys is None else keys
    return torch.cat([d[k].detach().reshape(-1) for k in keys])


def rel_err(a: Mapping | torch.Tensor, b: Mapping | torch.Tensor) -> float:
    """‖a − b‖ / ‖b‖ over all entries (b is the reference)."""
    if isinstance(b, Mapping):
        assert set(a) == set(b), (sorted(a), sorted(b))
        a, b = flat(a, list(b)), flat(b)
    return ((a - b).norm() / b.norm()).item()


def assert_fd_close(hg_value: Mapping, fd: Mapping, rtol: float = FD_RTOL, per_key: bool = True):
    """The hypergradient matches finite differences overall and (where a key's own gradient is not
    negligible against the whole) key by key, so one wrong leaf cannot hide behind a large one."""
    err = rel_err(hg_value, fd)
    assert err < rtol, f"relative error {err:.2e} against finite differences"
    if per_key:
        total = flat(fd).norm()
        for k in fd:
            ref = fd[k].norm()
            scale = max(ref.item(), 1e-3 * total.item())
            e = ((hg_value[k] - fd[k]).norm() / scale).item()
            assert e < rtol, f"{k}: relative error {e:.2e} (|fd| = {ref:.2e}, |all| = {total:.2e})"


def module_snapshot(module: nn.Module) -> dict:
    """Everything a run could modify on a user module: tensors (by value), flags, grads."""
    return {
        "state": {k: v.detach().clone() for k, v in module.state_dict(keep_vars=True).items()},
        "requires_grad": {k: p.requires_grad for k, p in module.named_parameters()},
        "grad": {k: None if p.grad is None else p.grad.clone() for k, p in module.named_parameters()},
        "training": [m.training for m in module.modules()],
        "ids": {k: id(p) for k, p in module.named_parameters()},
    }


def assert_module_unchanged(module: nn.Module, snap: dict):
    now = module_snapshot(module)
    assert now["training"] == snap["training"]
    assert now["requires_grad"] == snap["requires_grad"]
    assert now["ids"] == snap["ids"]
    assert set(now["state"]) == set(snap["state"])
    for k, v in snap["state"].items():
        assert torch.equal(now["state"][k], v), f"{k} was modified"
    for k, v in snap["grad"].items():
        assert (now["grad"][k] is None) == (v is None), f"{k}.grad changed"
