"""Agreement between hypergradients: cosine similarity, and an estimator's cosine to exact reverse mode
at several horizons of one trajectory (HyperDistill paper, Fig. 3)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterable, Mapping, Union

import torch

from ..core.tree import flatten
from ..core.types import HparamsLike
from ..estimators.base import Estimator, Hypergradient, get

if TYPE_CHECKING:
    from ..core.problem import InnerProblem
    from ..core.state import State

__all__ = ["cosine", "cosine_to_rmd"]

# what as_vector accepts: a Hypergradient, a λ-shaped dict or a tensor
Vectorlike = Union[Hypergradient, Mapping[str, torch.Tensor], torch.Tensor]


def as_vector(x: Vectorlike) -> torch.Tensor:
    """A Hypergradient's value, a λ-shaped dict or a tensor as one 1-D tensor."""
    if isinstance(x, Hypergradient):
        return x.flat()
    if isinstance(x, Mapping):
        return flatten(x)
    return x.reshape(-1)


def cosine(a: Vectorlike, b: Vectorlike) -> float:
    """cos(a, b) for tensors, λ-shaped dicts or Hypergradients (0 when either is zero)."""
    a, b = as_vector(a), as_vector(b)
    den = a.norm() * b.norm()
    return float((a @ b) / den) if den > 0 else 0.0


def cosine_to_rmd(estimator: Estimator | str, problem: InnerProblem, hparams: HparamsLike, horizons: Iterable[int], *,
                  part: str = "value", state: State | None = None, **options: Any) -> list[float]:
    """cos(estimator, RMD) of the hypergradient over each horizon t in ``horizons`` (every one starting
    from ``state``); ``part`` = ``"value"`` or ``"indirect"`` (g^SO only, as in HyperDistill Fig. 3c).
    A problem with schedules admits only its own horizon."""
    if part not in ("value", "indirect"):
        raise ValueError(f"part must be 'value' or 'indirect', got {part!r}")
    est = get(estimator, **options) if isinstance(estimator, str) else estimator
    rmd = get("rmd", storage="recompute")
    out = []
    for t in horizons:
        a, b = est(problem, hparams, T=t, state=state), rmd(problem, hparams, T=t, state=state)
        out.append(cosine(getattr(a, part), getattr(b, part)))
    return out
