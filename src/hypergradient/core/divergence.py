"""Finite blow-ups of the inner loop: the rule that calls a trajectory diverged.

Along one trajectory, with L_t the training loss of step t (t = 1 is the first step taken),

    m_1 = L_1,    m_t = β m_{t−1} + (1 − β) L_t                (a running mean)
    diverged at t  ⇔  m_t > factor · max(L_1, floor)   or   L_t is not finite

with defaults β = 0.9, factor = 10, floor = 1. Measured on the case that motivated it (cross-entropy,
a tanh MLP, lr = 100): L = 1.0, 93, 552 over steps 1–3, so m_2 = 10.2 already exceeds 10; at lr = 10
the loss peaks at 38 and the rule fires a few steps later; a training loss that falls, or wanders
around its first value, never comes near it. The problem's ``Settings(divergence=None)`` turns it off.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["Divergence", "Monitor"]


@dataclass(frozen=True)
class Divergence:
    """The rule (see the module docstring)."""

    factor: float = 10.0
    floor: float = 1.0
    beta: float = 0.9

    def __post_init__(self) -> None:
        if not self.factor > 1 or not self.floor >= 0 or not 0 <= self.beta < 1:
            raise ValueError(f"Divergence needs factor > 1, floor >= 0 and 0 <= beta < 1, got {self}")


class Monitor:
    """The rule applied along one trajectory: :meth:`update` with each step's training loss."""

    def __init__(self, rule: Divergence):
        self.rule = rule
        self.first: float | None = None
        self.mean = 0.0
        self.reported = False       # (set by whoever records the event, once per trajectory)

    def update(self, loss: float) -> bool:
        """True when the trajectory has diverged at this step."""
        if self.first is None:
            self.first, self.mean = loss, loss
        else:
            self.mean = self.rule.beta * self.mean + (1 - self.rule.beta) * loss
        return not math.isfinite(loss) or self.mean > self.rule.factor * max(self.first, self.rule.floor)

    def why(self, t: int) -> str:
        return (f"the inner loop diverged at step {t}: the running mean of the training loss reached {self.mean:.4g}, "
                f"over {self.rule.factor:g} × max(first loss {self.first:.4g}, {self.rule.floor:g}); lower the "
                "learning rate or the horizon (Settings(divergence=None) turns the check off)")
