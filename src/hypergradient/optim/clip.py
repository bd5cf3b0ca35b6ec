"""Gradient clipping inside the step Φ, as a gradient transform (``clip=`` of every optimizer).

Both act on the gradient of the training loss before the optimizer's rule (and before its weight
decay), as ``torch.nn.utils.clip_grad_norm_`` / ``clip_grad_value_`` act on ``.grad`` before
``optimizer.step()``::

    by norm:   g ← g · min(1, c / (‖g‖ + 1e-6))        ‖g‖ the norm over all parameter tensors together
    by value:  g ← clamp(g, −c, c)                      element by element

Exactness: reverse mode differentiates through them like any other op. The step's Jacobian becomes
J_clip(g)·H rather than H (ALGORITHMS.md §2, "Two traps"): by value J_clip = M = diag(|g| ≤ c); by norm
J_clip = s·I + g (∂s/∂g)ᵀ with s = min(1, c / (‖g‖ + 1e-6)). Forward mode's SGD closed form stays exact:
it takes H·Z by double backward and then the JVP of the clip alone, J_clip·(H·Z) = M·H·Z
(:meth:`~hypergradient.core.optimizer.Optimizer.transform_jvp`), never the H·M·Z that a double
backward through the clipped gradient would give.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch

from ..core.optimizer import GradientTransform

__all__ = ["clip_by_norm", "clip_by_value", "ClipByNorm", "ClipByValue"]


class ClipByNorm(GradientTransform):
    """g · min(1, c / (‖g‖_p + 1e-6)) with the p-norm over all tensors (torch's ``clip_grad_norm_``)."""

    def __init__(self, max_norm: float, norm_type: float = 2.0):
        if not max_norm > 0 or math.isinf(max_norm):
            raise ValueError(f"clip_by_norm: max_norm must be a positive finite number, got {max_norm!r}")
        if not (norm_type >= 1 or math.isinf(norm_type)):
            raise ValueError(f"clip_by_norm: norm_type must be >= 1 or inf, got {norm_type!r}")
        self.max_norm, self.norm_type = float(max_norm), float(norm_type)

    def __call__(self, grads: Sequence[torch.Tensor]) -> tuple[torch.Tensor, ...]:
        norms = torch.stack([torch.linalg.vector_norm(g, self.norm_type) for g in grads])
        total = torch.linalg.vector_norm(norms, self.norm_type)
        scale = torch.clamp(self.max_norm / (total + 1e-6), max=1.0)
        return tuple(g * scale for g in grads)

    def __repr__(self) -> str:
        return f"clip_by_norm({self.max_norm}" + ("" if self.norm_type == 2 else f", norm_type={self.norm_type}") + ")"


class ClipByValue(GradientTransform):
    """clamp(g, −c, c) element by element (torch's ``clip_grad_value_``)."""

    def __init__(self, clip_value: float):
        if not clip_value > 0:
            raise ValueError(f"clip_by_value: clip_value must be positive, got {clip_value!r}")
        self.clip_value = float(clip_value)

    def __call__(self, grads: Sequence[torch.Tensor]) -> tuple[torch.Tensor, ...]:
        return tuple(g.clamp(-self.clip_value, self.clip_value) for g in grads)

    def __repr__(self) -> str:
        return f"clip_by_value({self.clip_value})"


def clip_by_norm(max_norm: float, norm_type: float = 2.0) -> ClipByNorm:
    """Clip the whole gradient to norm ``max_norm`` inside every step: ``hg.optim.sgd(clip=clip_by_norm(1.0))``."""
    return ClipByNorm(max_norm, norm_type)


def clip_by_value(clip_value: float) -> ClipByValue:
    """Clamp every gradient entry into [−c, c] inside every step: ``hg.optim.sgd(clip=clip_by_value(0.5))``."""
    return ClipByValue(clip_value)
