"""SAMA (Choe et al., NeurIPS 2023, "Making Scalable Meta Learning Practical"): the base Jacobian taken
as the identity (no propagation through earlier inner steps, as one-step lookahead), the inner
optimizer's preconditioning kept, the mixed second-order term as a finite difference of first-order
gradients — no second-order autograd at all::

    v = α_t ∂U/∂g            (the optimizer's update differentiated w.r.t. its gradient at s_{t−1}:
                              −lr α for SGD, Adam's diagonal preconditioner for Adam, ...)
    g_t = ∂L_val/∂λ + α_t ∂U/∂λ|_g + (∇_λ L_train(w + ε v) − ∇_λ L_train(w − ε v)) / (2ε),   ε = R / ‖v‖

It is :class:`~hypergradient.estimators.one_step.OneStep` with ``fd=R`` (the same mechanism, one
implementation): with SGD and ε → 0 it is one_step exactly (float64 test). Where we depart from
Betty's implementation (read for its behaviour): the preconditioner is the optimizer's own update
derivative for every optimizer (Betty writes Adam's by hand and refuses RMSprop, Adagrad, Adadelta),
and the mixed term is taken at s_{t−1} with the batch of step t (the point of the step; Betty takes it
at the weights after the step). ``R`` is the step rule's radius (Betty's ``darts_adam_alpha``).
"""

from __future__ import annotations

from .base import register
from .one_step import OneStep

__all__ = ["SAMA"]


@register
class SAMA(OneStep):
    """SAMA: identity base Jacobian, the optimizer's preconditioning, a central difference of
    first-order gradients at radius ``R`` (ε = R / ‖v‖); memory O(|s|), no second-order graph."""

    name = "sama"

    def __init__(self, R: float = 1e-2) -> None:
        super().__init__(fd=R)
        self.R = self.fd
