"""The inner problem's pre-flight probe: before any inner loop runs, which λ entries nothing depends on
(their hypergradient is zero, allowed: DESIGN.md) and which the validation loss does not reach (the
direct term is zero), and an error where the losses do not use the inner weights at all (``model(x)``
instead of ``f(x)``). :class:`~hypergradient.core.problem.InnerProblem` inherits it."""

from __future__ import annotations

from typing import Any

import torch

from .primitives import check_scalar, check_val_loss
from .state import State
from .tree import detached
from .types import Batch, HparamsLike
from .warn import warn_user

__all__ = ["Probe"]


class Probe:
    """Two steps of Φ and one validation loss with a graph, once per key set of λ (cached)."""

    horizon: int | None
    _unused: dict[tuple, list[str]]
    _val_unreached: dict[tuple, list[str]]

    def init_state(self, params: Any = None) -> State:
        raise NotImplementedError

    def train_loss_at(self, state: State, lam: HparamsLike, t: int, batch: Batch = None) -> tuple[torch.Tensor, Any]:
        raise NotImplementedError

    def val_loss_at(self, state: State, lam: HparamsLike, t: int | None = None) -> torch.Tensor:
        raise NotImplementedError

    def _phi(self, state: State, lam: HparamsLike, create_graph: bool, batch: Batch = None, *,
             coef: Any = None, flat: bool = False) -> State:
        raise NotImplementedError

    def unused_hparams(self, lam: HparamsLike) -> list[str]:
        """Keys of λ that neither Φ (over two steps, one at horizon 1) nor L_val reaches in autograd's
        graph; cached per key set, not counted in :attr:`cost`. Being the estimators' pre-flight probe,
        it also raises ``ValueError`` before any inner loop runs when no inner weight reaches the
        training loss, or when the validation loss is not a scalar or reaches neither w nor λ (the
        losses call ``model(x)`` instead of ``f(x)``), and warns when L_val reaches λ but no weight."""
        key = tuple(lam)
        if key not in self._unused:
            lam_d = detached(lam, requires_grad=True)
            steps = min(2, self.horizon or 2)
            with torch.enable_grad():
                s0 = self.init_state()
                probe = s0.detach(requires_grad=True)
                train = check_scalar(self.train_loss_at(probe, lam_d, 1)[0], "train_loss")
                reached = train.requires_grad and any(
                    g is not None for g in torch.autograd.grad(train, probe.params, allow_unused=True))
                if not reached:
                    raise ValueError("no inner weight reaches the training loss, so every hypergradient would be "
                                     "zero: train_loss must call f(x) (the model at the inner weights), not model(x)")
                states = [self._phi(s0, lam_d, True)]
                while len(states) < steps:
                    states.append(self._phi(states[-1], lam_d, True))
                outs = [o.sum() for s in states for o in s.tensors() if o.requires_grad]
                val = self.val_loss_at(probe, lam_d)
                check_val_loss(val)
                reach = torch.autograd.grad(val, list(probe.params) + list(lam_d.values()), allow_unused=True,
                                            retain_graph=True)
                gv = reach[len(probe.params):]
                if all(g is None for g in reach):
                    raise ValueError("the validation loss reaches neither the inner weights nor the "
                                     "hyperparameters, so every hypergradient would be zero: call f(x) (the model "
                                     "at the inner weights), not model(x), or use hp")
                if all(g is None for g in reach[:len(probe.params)]):
                    warn_user("the validation loss does not reach the inner weights: the hypergradient is its "
                              "direct term only; call f(x) (the model at the inner weights), not model(x)")
                outs = [o for o in outs if o.requires_grad]
                g = torch.autograd.grad(outs, list(lam_d.values()), allow_unused=True) if outs else \
                    [None] * len(lam_d)
            self._val_unreached[key] = [k for k, gi in zip(lam_d, gv) if gi is None]
            self._unused[key] = [k for k, gi, gvi in zip(lam_d, g, gv) if gi is None and gvi is None]
        return self._unused[key]

    def val_unreached(self, lam: HparamsLike) -> list[str]:
        """Keys of λ that L_val does not reach in autograd's graph (∂L_val/∂λ ≡ 0: the direct term is
        zero, e.g. Meta-Weight-Net); from the same cached probe as :meth:`unused_hparams`."""
        self.unused_hparams(lam)
        return self._val_unreached[tuple(lam)]
