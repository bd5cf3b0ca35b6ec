"""The base of the estimators whose hypergradient at step t needs only the step s_{t−1} → s_t
(one-step lookahead, first order)."""

from __future__ import annotations

from ..core.problem import InnerProblem
from ..core.state import State
from ..core.types import Hparams, Tensors
from .base import Carry, Estimator, EstimatorState, Hypergradient

__all__ = ["Lookahead"]


class Lookahead(Estimator):
    """An online estimator whose hypergradient at step t needs only the step s_{t−1} → s_t:
    subclasses give the :meth:`indirect` term; offline it runs T − 1 steps and looks ahead over the last."""

    online = True
    memory = "O(|s|)"

    def indirect(self, problem: InnerProblem, lam: Hparams, prev: State, state: State, alpha: Tensors) -> Hparams:
        """The indirect term for the step ``prev`` = s_{t−1} → ``state`` = s_t, with α_t = ∂L_val/∂w_t."""
        raise NotImplementedError

    def lookahead(self, problem: InnerProblem, lam: Hparams, prev: State) -> Hypergradient:
        """The step from ``prev`` = s_{t−1} and the hypergradient at s_t."""
        state = problem.step(prev, lam)
        loss, alpha, direct = problem.val_grad(state, lam)
        return Hypergradient.of(direct, self.indirect(problem, lam, prev, state, alpha), state=state, val_loss=loss)

    def estimate(self, problem: InnerProblem, lam: Hparams, T: int, state: State,
                 est_state: EstimatorState) -> Hypergradient:
        prev, _ = problem.run(state, lam, T - 1)
        return self.lookahead(problem, lam, prev)

    def start(self, problem: InnerProblem, lam: Hparams, state: State, est_state: EstimatorState) -> Carry:
        return Carry(est_state)

    def advance(self, problem: InnerProblem, lam: Hparams, state: State, carry: Carry) -> tuple[Hypergradient, Carry]:
        return self.lookahead(problem, lam, state), carry
