"""The main job: learn per-layer learning rates and weight decay of an MLP on digits by exact RMD.

Inner problem: SGD with momentum 0.9 on a 64-64-64-10 MLP, T unrolled minibatch steps; λ = one learning
rate and one weight decay per parameter tensor (positive via exp). Outer loop: Adam on λ with the exact
reverse-mode hypergradient of the validation cross-entropy. Reports validation and test accuracy with
the initial and the learned hyperparameters (each evaluated by retraining from the same init).
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any, cast

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from ..core.hyper import Hyper
from ..core.inputs import Data, Hypers, Settings
from ..core.problem import InnerProblem
from ..drivers.offline import run_offline
from ..estimators import Hypergradient
from ..learners.data import digits, minibatches
from ..optim import SGD

if TYPE_CHECKING:
    from ..core.functional import Forward
    from ..core.hyper import HyperView
    from ..core.state import State
    from ..core.types import Batch, HparamsLike


def _ce(f: Forward, batch: Batch, hp: HyperView) -> torch.Tensor:
    return F.cross_entropy(f(batch[0]), batch[1])


def _accuracy(problem: InnerProblem, state: State, X: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        f = problem.forward(state)
        return (f(X).argmax(-1) == y).float().mean().item()


def build(T: int = 60, seed: int = 0, width: int = 64, lr: float = 0.02, weight_decay: float = 1e-3
          ) -> tuple[InnerProblem, tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    torch.manual_seed(seed)
    (Xtr, ytr), (Xva, yva), (Xte, yte) = digits(seed, dtype=torch.get_default_dtype())
    model = nn.Sequential(nn.Linear(64, width), nn.Tanh(), nn.Linear(width, width), nn.Tanh(), nn.Linear(width, 10))
    optimizer = SGD(lr=Hyper(lr, "tensor", positive="exp"), momentum=0.9,
                    weight_decay=Hyper(weight_decay, "tensor", positive="exp"))
    problem = InnerProblem(model, _ce, _ce, optimizer, Hypers(), Data(minibatches(Xtr, ytr, 100, T, seed), (Xva, yva)),
                           horizon=T, settings=Settings(seed=seed))
    return problem, (Xva, yva), (Xte, yte)


def run(outer_steps: int = 40, T: int = 80, hyper_lr: float = 0.1, seed: int = 0, quiet: bool = False,
        json_path: str | None = None) -> dict[str, Any]:
    problem, val, test = build(T, seed)
    lam = problem.init_hparams()
    lam0 = {k: v.detach().clone() for k, v in lam.items()}
    outer = torch.optim.Adam(list(lam.values()), lr=hyper_lr)
    t0 = time.perf_counter()
    bar = tqdm(total=outer_steps, desc="outer steps (exact RMD)", disable=quiet)

    def progress(k: int, hg: Hypergradient) -> None:
        bar.update()
        bar.set_postfix(val_loss=f"{float(cast(torch.Tensor, hg.val_loss)):.4f}")

    res = run_offline(problem, "rmd", lam, outer, outer_steps, T=T, callback=progress, progress=False)
    bar.close()
    history = res.history["val_loss"]
    seconds = time.perf_counter() - t0

    def evaluate(l: HparamsLike) -> tuple[float, float, float]:
        s, _ = problem.run(problem.init_state(), l, T)
        return _accuracy(problem, s, *val), _accuracy(problem, s, *test), problem.val_loss_at(s, l).item()

    before, after = evaluate(lam0), evaluate(lam)
    hp = {k: problem.spec.value(lam, k).item() for k in lam}
    result = {"T": T, "outer_steps": outer_steps, "seconds": seconds,
              "initial": dict(zip(("val_acc", "test_acc", "val_loss"), before)),
              "learned": dict(zip(("val_acc", "test_acc", "val_loss"), after)),
              "hyperparameters": hp, "val_loss_history": history}
    if not quiet:
        print(f"\nexact RMD through T={T} steps, {outer_steps} outer steps in {seconds:.1f}s\n")
        print(f"{'hyperparameters':<16}{'val acc':>10}{'test acc':>10}{'val loss':>10}")
        for name, r in (("initial", before), ("learned", after)):
            print(f"{name:<16}{r[0]:>10.3f}{r[1]:>10.3f}{r[2]:>10.4f}")
        print("\nlearned values:")
        for k, v in hp.items():
            print(f"  {k:<34}{v:.4g}")
    if json_path:
        with open(json_path, "w") as fh:
            json.dump(result, fh, indent=2)
    return result
