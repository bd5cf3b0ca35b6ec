"""DrMAD (Fu et al. 2016; HyperDistill paper Algorithm 2): reverse mode on an interpolated trajectory.

Keep only s_0 and s_T. On the way back replace every intermediate state by the straight line

    ŝ_{t-1} = (1 − (t−1)/T) s_0 + ((t−1)/T) s_T,     g += ᾱ_t B̂_t,   ᾱ_{t-1} = ᾱ_t Â_t

with Â, B̂ the step Jacobians at ŝ_{t-1} (Algorithm 2, line 5). The state s = (w, optimizer state):
the momentum buffer / Adam moments are interpolated the same way (our choice, the paper is silent;
ALGORITHMS.md §3), floating buffers (BatchNorm statistics) too. Memory O(|s|), constant in T;
T steps and T VJPs. Exact when the trajectory is a straight line.

    >>> hg = estimate("drmad", problem, lam, T=100)
"""

from __future__ import annotations

from ..core.problem import InnerProblem
from ..core.state import State
from ..core.types import Hparams
from .base import Estimator, EstimatorState, Hypergradient, register
from .shared import Interpolated, padded, reverse_sweep


@register
class DrMAD(Estimator):
    """Reverse mode over the linear interpolation of s_0 and s_T; memory O(|s|)."""

    vectorizable = True

    name = "drmad"
    memory = "O(|s|), constant in T"

    def estimate(self, problem: InnerProblem, lam: Hparams, T: int, state: State,
                 est_state: EstimatorState) -> Hypergradient:
        first = state
        last, _ = problem.run(state, lam, T)
        loss, alpha, direct = problem.val_grad(last, lam)
        indirect = reverse_sweep(problem, lam, Interpolated(first, last), last.t, T, padded(alpha, last))
        return Hypergradient.of(direct, indirect, state=last, val_loss=loss,
                                info={"stored_bytes": first.nbytes() + last.nbytes()})
