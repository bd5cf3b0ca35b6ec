"""Spread of hypergradients under randomness (non-greedy paper, Section 5.1; ALGORITHMS.md §2): over P
samples of the same quantity, hypervariance ``std / |mean|`` and sign fluctuation ``min(P+, P−) / P``
per entry, with one source of randomness (training batches, validation batches, initial weights,
initial hyperparameters ±1%) perturbed at a time. Measure spreads in float64: float32 spreads are
machine-dependent."""

from __future__ import annotations

from typing import Callable, Iterable, Mapping

import torch

from ..core.types import Hparams
from .similarity import Vectorlike, as_vector

__all__ = ["spread", "under_randomness", "jitter", "SOURCES"]

SOURCES = ("train", "val", "init", "hparams")


def spread(samples: torch.Tensor | Iterable[Vectorlike]) -> dict[str, torch.Tensor]:
    """Per entry over P samples (a (P, ...) tensor or a list of Hypergradients / tensors):
    ``hypervariance = std / |mean|`` and ``sign_fluctuation = min(P+, P−) / P``."""
    x = torch.stack([as_vector(s) for s in samples]) if not isinstance(samples, torch.Tensor) else \
        samples.reshape(samples.shape[0], -1)
    if x.shape[0] < 2:
        raise ValueError("spread needs at least two samples")
    pos, neg = (x > 0).sum(0), (x < 0).sum(0)
    return {"hypervariance": x.std(0) / x.mean(0).abs(), "sign_fluctuation": torch.minimum(pos, neg) / x.shape[0],
            "mean": x.mean(0), "std": x.std(0)}


def under_randomness(run: Callable[[dict[str, int]], Vectorlike], n: int = 10,
                     sources: Iterable[str] = SOURCES) -> dict[str, dict[str, torch.Tensor]]:
    """{source: :func:`spread`} where ``run(seeds)`` returns one hypergradient for the seeds
    ``{"train": i, "val": j, "init": k, "hparams": l}``; for each source its seed takes the values
    1..n while every other seed stays 0 (one source of randomness at a time)."""
    out: dict[str, dict[str, torch.Tensor]] = {}
    for src in sources:
        if src not in SOURCES:
            raise ValueError(f"unknown source {src!r}; sources are {SOURCES}")
        out[src] = spread([run({**dict.fromkeys(SOURCES, 0), src: i}) for i in range(1, n + 1)])
    return out


def jitter(hparams: Mapping[str, torch.Tensor], seed: int, rel: float = 0.01) -> Hparams:
    """λ · (1 + U(−rel, rel)) entry-wise (the "initial hyperparameters ±1%" source); seed 0 is λ itself."""
    if seed == 0:
        return {k: v.detach().clone().requires_grad_() for k, v in hparams.items()}
    g = torch.Generator().manual_seed(seed)
    return {k: (v.detach() * (1 + rel * (2 * torch.rand(v.shape, generator=g, dtype=v.dtype) - 1))).requires_grad_()
            for k, v in hparams.items()}
