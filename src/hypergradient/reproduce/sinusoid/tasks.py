"""Task sets and the fast evaluator: fixed val / test / probe task sets, the batched meta-test
:func:`adapt_and_score` and the inner loop's stability measure, both on the fixed body features."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping, cast

import torch

from .config import TASK_SEEDS, SinusoidConfig

if TYPE_CHECKING:
    from ...core.types import HparamsLike
    from ...learners import ProblemLearner, SinusoidTasks

__all__ = ["task_set", "adapt_and_score", "inner_stability"]


def _sampler(cfg: SinusoidConfig, query: int) -> SinusoidTasks:
    from ...learners.tasks import SinusoidTasks
    return SinusoidTasks(shots=cfg.shots, query=query, dtype=cfg.torch_dtype)


def task_set(cfg: SinusoidConfig, which: str, n: int | None = None) -> dict:
    """A fixed task set ('val', 'test' or 'probe') drawn exactly as ``meta_test`` draws its tasks:
    ``SinusoidTasks.sample`` with ``torch.Generator(TASK_SEEDS[which])``. Returns stacked tensors
    and the list of tasks."""
    query = cfg.query if which == "probe" else cfg.eval_query
    n = n if n is not None else {"val": cfg.val_tasks, "test": cfg.test_tasks, "probe": cfg.cosine_tasks}[which]
    sampler = _sampler(cfg, query)
    gen = torch.Generator().manual_seed(TASK_SEEDS[which])
    tasks: list[Any] = [sampler.sample(gen) for _ in range(n)]   # Task.support / .query: (x, y) here
    return {"x": torch.stack([t.support[0] for t in tasks]), "y": torch.stack([t.support[1] for t in tasks]),
            "xq": torch.stack([t.query[0] for t in tasks]), "yq": torch.stack([t.query[1] for t in tasks]),
            "tasks": tasks, "seed": TASK_SEEDS[which], "query": query}


def _body_features(learner: ProblemLearner, lam: HparamsLike, x: torch.Tensor) -> torch.Tensor:
    """The ANIL body at λ on x (any leading batch dims)."""
    body = {k[len("model.body."):]: v.detach() for k, v in lam.items() if k.startswith("model.body.")}
    return torch.func.functional_call(cast(torch.nn.Module, learner.model.body), body, (x,))


def adapt_and_score(learner: ProblemLearner, lam: HparamsLike, phi: Mapping[str, torch.Tensor], tasks: dict,
                    cfg: SinusoidConfig) -> torch.Tensor:
    """Per-task query MSE after T steps of SGD with momentum on the head from φ, λ fixed: all tasks
    at once. The same arithmetic as ``InnerProblem.run`` + ``val_loss_at`` with ANIL's MSE (PyTorch's
    SGD convention v ← μ v + g, w ← w − lr v, v_0 = 0), since the body features do not change."""
    with torch.no_grad():
        f, fq = _body_features(learner, lam, tasks["x"]), _body_features(learner, lam, tasks["xq"])
        y, yq = tasks["y"], tasks["yq"]
        n = len(f)
        W = phi["head.weight"].detach().expand(n, *phi["head.weight"].shape).clone()   # (n, 1, h)
        b = phi["head.bias"].detach().expand(n, *phi["head.bias"].shape).clone()        # (n, 1)
        vW, vb = torch.zeros_like(W), torch.zeros_like(b)
        m = y.shape[1] * y.shape[2]                                                     # MSE averages over shots × out
        for _ in range(cfg.T):
            r = f @ W.transpose(1, 2) + b[:, None, :] - y                               # (n, shots, 1)
            gW = (2.0 / m) * r.transpose(1, 2) @ f
            gb = (2.0 / m) * r.sum(1)
            vW, vb = cfg.inner_momentum * vW + gW, cfg.inner_momentum * vb + gb
            W, b = W - cfg.inner_lr * vW, b - cfg.inner_lr * vb
        pred = fq @ W.transpose(1, 2) + b[:, None, :]
        mse = ((pred - yq) ** 2).mean(dim=(1, 2)).double()
        return torch.where(torch.isfinite(mse), mse, torch.full_like(mse, float("inf")))


def inner_stability(learner: ProblemLearner, lam: HparamsLike, tasks: dict, cfg: SinusoidConfig) -> dict:
    """lr · λ_max of the head's training Hessian H = (2/m) [f 1]ᵀ[f 1] on each task's support set at
    the body λ: heavy-ball SGD (momentum μ) on this quadratic diverges when it exceeds 2(1 + μ).
    Median and max over the tasks, and that threshold."""
    with torch.no_grad():
        f = _body_features(learner, lam, tasks["x"]).double()
        fb = torch.cat([f, torch.ones(*f.shape[:-1], 1, dtype=f.dtype)], -1)
        m = tasks["y"].shape[1] * tasks["y"].shape[2]
        top = cfg.inner_lr * 2.0 / m * torch.linalg.matrix_norm(fb, ord=2) ** 2
    return {"median": float(top.median()), "max": float(top.max()), "limit": 2 * (1 + cfg.inner_momentum)}
