"""Small helpers shared by the online estimators (fmd, ift, one_step, first_order)."""

from __future__ import annotations

from ..problem import Cost, InnerProblem
from .base import Estimator, Hypergradient


def detached(lam) -> dict:
    """λ as the estimators use it: the driver's raw leaves, detached."""
    return {k: v.detach() for k, v in lam.items()}


def result(problem: InnerProblem, before: Cost, direct: dict, indirect: dict, info: dict, name: str) -> Hypergradient:
    """The Hypergradient of one online step: value = direct + indirect, cost since ``before``.
    Non-finite values are returned as they are: the caller owns the policy (``lockstep``'s
    ``nonfinite``, an element-wise outer optimizer, or ``Estimator.__call__``'s check offline)."""
    value = {k: direct[k] + indirect[k] for k in direct}
    return Hypergradient(value, direct, indirect, problem.cost - before, info)


def padded(alpha: list, state) -> list:
    """The adjoint (∂L_val/∂w, 0) aligned with ``State.tensors()`` (no cotangent on optimizer state)."""
    return list(alpha) + [None] * (len(state.tensors()) - len(alpha))


class Lookahead(Estimator):
    """An online estimator whose hypergradient at step t needs only the step s_{t−1} → s_t:
    subclasses give :meth:`lookahead`; offline it runs T − 1 steps and looks ahead over the last."""

    online = True
    memory = "O(|s|)"

    def lookahead(self, problem, lam, prev):
        """(s_t, L_val, direct, indirect) for the step from ``prev`` = s_{t−1}."""
        raise NotImplementedError

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
