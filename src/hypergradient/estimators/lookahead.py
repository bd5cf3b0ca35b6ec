"""The base of the estimators whose hypergradient at step t needs only the step s_{t−1} → s_t
(one-step lookahead, first order)."""

from __future__ import annotations

from ..core.tree import detached
from .base import Estimator
from .shared import result

__all__ = ["Lookahead"]


class Lookahead(Estimator):
    """An online estimator whose hypergradient at step t needs only the step s_{t−1} → s_t:
    subclasses give the :meth:`indirect` term; offline it runs T − 1 steps and looks ahead over the last."""

    online = True
    memory = "O(|s|)"

    def indirect(self, problem, lam, prev, state, alpha) -> dict:
        """The indirect term for the step ``prev`` = s_{t−1} → ``state`` = s_t, with α_t = ∂L_val/∂w_t."""
        raise NotImplementedError

    def lookahead(self, problem, lam, prev):
        """(s_t, L_val, direct, indirect) for the step from ``prev`` = s_{t−1}."""
        state = problem.step(prev, lam)
        loss, alpha, direct = problem.val_grad(state, lam)
        return state, loss, direct, self.indirect(problem, lam, prev, state, alpha)

    def estimate(self, problem, lam, T, state):
        prev, _ = problem.run(state, lam, T - 1)
        state, loss, direct, indirect = self.lookahead(problem, lam, prev)
        return direct, indirect, {"val_loss": loss, "state": state}

    def online_init(self, problem, lam, state):
        return None

    def online_step(self, problem, lam, state, carry):
        lam, before = detached(lam), problem.cost.copy()
        state, loss, direct, indirect = self.lookahead(problem, lam, state)
        return state, result(problem, before, direct, indirect, {"val_loss": loss}, self.name), carry
