"""The inner state s_t = (w_t, optimizer state, buffers, t) and the cost counter.

``State`` is what Φ maps to the next step (ALGORITHMS.md §0); ``Cost`` counts the primitives an
estimator spent (steps, VJPs, JVPs, HVPs, validation gradients), by which the papers compare methods.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Mapping, NamedTuple, Sequence

import torch

__all__ = ["State", "Cost", "DivergenceError"]


class DivergenceError(FloatingPointError):
    """The inner loop produced a non-finite training loss."""


@dataclass
class Cost:
    """How many primitives were spent (the papers compare estimators by exactly this)."""

    steps: int = 0      # applications of Φ
    vjps: int = 0       # reverse products with ∂Φ/∂(s, λ)
    jvps: int = 0       # forward products (a batched call with N columns counts N)
    hvps: int = 0       # Hessian-vector products of the training loss
    val_grads: int = 0  # validation-loss gradients
    grads: int = 0      # first-order training-loss gradients w.r.t. λ (finite differences of gradients)

    def __sub__(self, other: "Cost") -> "Cost":
        return Cost(**{f.name: getattr(self, f.name) - getattr(other, f.name) for f in fields(self)})

    def __add__(self, other: "Cost") -> "Cost":
        return Cost(**{f.name: getattr(self, f.name) + getattr(other, f.name) for f in fields(self)})

    def __mul__(self, k: int) -> "Cost":
        """Every counter × k (a vectorized meta-batch's step is k tasks' steps)."""
        return Cost(**{f.name: getattr(self, f.name) * k for f in fields(self)})

    def copy(self) -> "Cost":
        return Cost(**vars(self))

    @property
    def step_equivalents(self) -> int:
        """Steps plus every product and gradient, each counted as one step's worth of work (a batched
        JVP or HVP with N columns counts N): the unit in which the non-greedy paper's methods and the
        black-box baselines get an equal budget (forward mode over T steps with N columns costs about
        T·(1 + N); one random-search trial costs T)."""
        return self.steps + self.vjps + self.jvps + self.hvps + self.val_grads + self.grads


class State(NamedTuple):
    """s_t: inner weights, optimizer state, buffers (not differentiated) and the step index t."""

    params: tuple   # w_t, aligned with InnerProblem.names
    opt: tuple      # optimizer state (a NamedTuple of tuples of tensors)
    buffers: Mapping[str, torch.Tensor]   # BatchNorm running statistics etc., carried explicitly
    t: int          # number of inner steps taken

    def tensors(self) -> list[torch.Tensor]:
        """The differentiable part, flattened: w then every optimizer-state tensor."""
        return list(self.params) + [x for field in self.opt for x in field]

    def with_tensors(self, flat: Sequence[torch.Tensor]) -> "State":
        n = len(self.params)
        params, rest = tuple(flat[:n]), list(flat[n:])
        fields_ = []
        for field in self.opt:
            fields_.append(tuple(rest[:len(field)]))
            rest = rest[len(field):]
        return State(params, type(self.opt)(*fields_), self.buffers, self.t)

    def detach(self, requires_grad: bool = False) -> "State":
        flat = [x.detach().requires_grad_(requires_grad) for x in self.tensors()]
        return self.with_tensors(flat)

    def nbytes(self) -> int:
        return sum(x.numel() * x.element_size() for x in self.tensors()) + \
            sum(b.numel() * b.element_size() for b in self.buffers.values())
