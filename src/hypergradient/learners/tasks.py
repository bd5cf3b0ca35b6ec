"""Task distributions for meta-learning experiments.

Sinusoid regression (Finn et al. 2017; HyperDistill paper, Appendix G): y = A sin(x − φ) with
amplitude A ~ U(0.1, 5), phase φ ~ U(0, π), inputs x ~ U(−5, 5); K-shot support (K = 10) and a
query set of the same form.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch

from ..drivers.meta import Task, TaskSampler

__all__ = ["SinusoidTasks"]


class SinusoidTasks(TaskSampler):
    """y = A sin(x − φ): A ~ U(amplitude), φ ~ U(phase), x ~ U(x_range); inputs and targets of shape (n, 1).

    Args:
        shots: support examples per task (10-shot in the paper).
        query: query examples per task.
        amplitude: the uniform range of A.
        phase: the uniform range of φ.
        x_range: the uniform range of the inputs x.
        dtype: of the tensors.
    """

    def __init__(self, shots: int = 10, query: int = 10, amplitude: Sequence[float] = (0.1, 5.0),
                 phase: Sequence[float] = (0.0, math.pi), x_range: Sequence[float] = (-5.0, 5.0),
                 dtype: torch.dtype = torch.float32) -> None:
        for name, v in (("shots", shots), ("query", query)):
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive int, got {v!r}")
        self.shots, self.query, self.dtype = shots, query, dtype
        self.amplitude, self.phase, self.x_range = tuple(amplitude), tuple(phase), tuple(x_range)

    def _u(self, lo_hi: Sequence[float], n: tuple[int, ...], g: torch.Generator) -> torch.Tensor:
        lo, hi = lo_hi
        return lo + (hi - lo) * torch.rand(n, generator=g, dtype=torch.float64)

    def sample(self, generator: torch.Generator) -> Task:
        a = self._u(self.amplitude, (), generator)
        ph = self._u(self.phase, (), generator)
        x = self._u(self.x_range, (self.shots + self.query, 1), generator)
        y = a * torch.sin(x - ph)
        x, y = x.to(self.dtype), y.to(self.dtype)
        k = self.shots
        return Task((x[:k], y[:k]), (x[k:], y[k:]), {"amplitude": a.item(), "phase": ph.item()})
