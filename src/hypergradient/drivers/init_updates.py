"""The shared-initialization updates of meta-learning (one step on φ per meta-iteration, from the
meta-batch's final inner states or offline hypergradients; :func:`~hypergradient.drivers.meta_train`):

* Reptile (Nichol et al. 2018): φ ← φ − η (φ − mean_b w_T^b)   (HyperDistill uses η = 1);
* first-order MAML: φ ← φ − η mean_b ∇_w L_query(w_T^b);
* second-order MAML (Finn et al. 2017; offline ``rmd`` / ``truncated_rmd``): φ ← φ − η mean_b dL_query(w_T^b)/dφ.

mean_b runs over this process's tasks, or over every rank's when ``meta`` is a distributed
:class:`~hypergradient.drivers.distributed.MetaBatch` (set by ``meta_train``; one collective).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, Sequence

import torch

from ..core.problem import InnerProblem
from ..core.state import State
from ..core.types import Hparams
from ..estimators.base import Hypergradient
from .distributed import MetaBatch

__all__ = ["InitUpdate", "Reptile", "FirstOrderMAML", "MAML", "MAML_NEEDS", "INIT_UPDATES", "init_update_of"]

Weights = dict[str, torch.Tensor]   # φ: inner-weight name -> tensor


class InitUpdate(Protocol):
    """φ ← update(φ, tasks' problems, their final states, λ, their offline hypergradients): the
    shared-initialization step. ``hgs`` are the meta-batch's offline hypergradients (None with an
    online estimator): a second-order MAML update reads the reverse pass's gradient at the initial
    weights from them. Returns (new φ, the per-task query losses when it computed them, else None)."""

    def __call__(self, phi: Weights, problems: Sequence[InnerProblem], finals: Sequence[State], lam: Hparams,
                 hgs: Sequence[Hypergradient] | None = None) -> tuple[Weights, list[float] | None]:
        ...


def _mean_over_tasks(per_task: Sequence[Sequence[torch.Tensor]], like: Sequence[torch.Tensor],
                     meta: MetaBatch | None, tasks: Sequence[int] | None,
                     failed: BaseException | None = None) -> list[torch.Tensor]:
    """mean_b of per-task lists of tensors: over this process's tasks, or over every rank's (one
    collective) when ``meta`` is distributed (:meth:`MetaBatch.mean_tensors` either way)."""
    ids = list(range(len(per_task))) if tasks is None else list(tasks)
    mean, _ = (meta or MetaBatch()).mean_tensors([] if failed is not None else list(zip(ids, per_task)), like, failed)
    if mean is None:
        raise RuntimeError("no task of the meta-batch gave an initialization update")
    return mean


@dataclass
class Reptile:
    """φ ← φ − η (φ − mean_b w_T^b) (Nichol et al. 2018; η = ``lr``)."""

    lr: float = 1.0
    meta: MetaBatch | None = None          # set by meta_train for a distributed meta-batch
    tasks: Sequence[int] | None = None

    def __call__(self, phi: Weights, problems: Sequence[InnerProblem], finals: Sequence[State], lam: Hparams,
                 hgs: Sequence[Hypergradient] | None = None) -> tuple[Weights, list[float] | None]:
        names = problems[0].names
        mean_w = _mean_over_tasks([s.params for s in finals], [phi[n] for n in names], self.meta, self.tasks)
        return {n: phi[n] - self.lr * (phi[n] - w) for n, w in zip(names, mean_w)}, None


@dataclass
class FirstOrderMAML:
    """φ ← φ − η mean_b ∇_w L_query(w_T^b) (first-order MAML; η = ``lr``)."""

    lr: float = 1.0
    meta: MetaBatch | None = None
    tasks: Sequence[int] | None = None

    def __call__(self, phi: Weights, problems: Sequence[InnerProblem], finals: Sequence[State], lam: Hparams,
                 hgs: Sequence[Hypergradient] | None = None) -> tuple[Weights, list[float] | None]:
        names = problems[0].names
        failed: BaseException | None = None
        grads: list = []
        try:                    # (distributed: an error here reaches every rank in the collective)
            grads = [p.val_grad(s, lam, wrt_lam=False) for p, s in zip(problems, finals)]
        except Exception as e:
            if self.meta is None or not self.meta.distributed:
                raise
            failed = e
        mean_g = _mean_over_tasks([g[1] for g in grads], [phi[n] for n in names], self.meta, self.tasks, failed)
        return {n: phi[n] - self.lr * g for n, g in zip(names, mean_g)}, [float(g[0]) for g in grads]


@dataclass
class MAML:
    """Second-order MAML: φ ← φ − η mean_b dL_query(w_T^b)/dφ, the meta-gradient at the initialization
    φ = w_0 through the whole inner loop (λ constant during the episode), read from the reverse pass of
    the meta-batch's offline hypergradients (``rmd(wrt_init=True)``; ``truncated_rmd(K, wrt_init=True)``
    for truncated MAML, where it is the gradient at w_{T−K})."""

    lr: float = 1.0
    meta: MetaBatch | None = None
    tasks: Sequence[int] | None = None

    def __call__(self, phi: Weights, problems: Sequence[InnerProblem], finals: Sequence[State], lam: Hparams,
                 hgs: Sequence[Hypergradient] | None = None) -> tuple[Weights, list[float] | None]:
        if hgs is None or any("init_grad" not in h.info for h in hgs):
            raise ValueError(MAML_NEEDS)
        names = problems[0].names
        mean_g = _mean_over_tasks([[h.info["init_grad"][n] for n in names] for h in hgs], [phi[n] for n in names],
                                  self.meta, self.tasks)
        vals = [float(h.val_loss) for h in hgs if h.val_loss is not None]
        return {n: phi[n] - self.lr * g for n, g in zip(names, mean_g)}, vals if len(vals) == len(hgs) else None


MAML_NEEDS = ("second-order MAML needs the reverse pass's gradient at the initial weights: use the estimator "
              "'rmd' or 'truncated_rmd' (meta_train(..., init_update='maml') turns on their wrt_init=True), "
              "or init_update='fomaml' / 'reptile' with any other")
INIT_UPDATES: dict[str, type] = {"reptile": Reptile, "fomaml": FirstOrderMAML, "maml": MAML}


def init_update_of(kind: str | InitUpdate | None, lr: float) -> InitUpdate | None:
    """``"reptile"`` / ``"fomaml"`` with η = ``lr``, an :class:`InitUpdate`, or None (φ fixed)."""
    if kind is None or callable(kind):
        return kind
    if kind not in INIT_UPDATES:
        raise ValueError(f"init_update must be one of {sorted(INIT_UPDATES)}, None or an InitUpdate, got {kind!r}")
    return INIT_UPDATES[kind](lr)
