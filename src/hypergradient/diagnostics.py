"""Diagnostics for hypergradient estimators: agreement with exact RMD, hypervariance, memory.

* :func:`cosine_to_rmd` — cosine similarity of any estimator to exact reverse mode at several
  horizons of one trajectory (HyperDistill paper, Fig. 3).
* :func:`spread` — over P hypergradients of the same quantity: hypervariance ``std / |mean|`` and sign
  fluctuation ``min(P+, P−) / P`` per entry (non-greedy paper, Section 5.1; ALGORITHMS.md §2).
* :func:`under_randomness` — :func:`spread` with one source of randomness (training batches,
  validation batches, initial weights, initial hyperparameters ±1%) perturbed at a time.
* :class:`SavedTensorMeter` — peak bytes that autograd held in saved tensors (memory claims
  measured without RSS noise).

Measure spreads in float64: float32 spreads are machine-dependent.
"""

from __future__ import annotations

from typing import Callable, Iterable, Mapping

import torch

from .estimators.base import Estimator, Hypergradient, get

__all__ = ["cosine", "cosine_to_rmd", "spread", "under_randomness", "jitter", "SavedTensorMeter", "SOURCES"]

SOURCES = ("train", "val", "init", "hparams")


def _flat(x) -> torch.Tensor:
    if isinstance(x, Hypergradient):
        return x.flat()
    if isinstance(x, Mapping):
        return torch.cat([v.reshape(-1) for v in x.values()])
    return x.reshape(-1)


def cosine(a, b) -> float:
    """cos(a, b) for tensors, λ-shaped dicts or Hypergradients (0 when either is zero)."""
    a, b = _flat(a), _flat(b)
    den = a.norm() * b.norm()
    return float((a @ b) / den) if den > 0 else 0.0


def cosine_to_rmd(estimator: Estimator | str, problem, hparams, horizons: Iterable[int], *, part: str = "value",
                  state=None, **options) -> list[float]:
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


def spread(samples) -> dict[str, torch.Tensor]:
    """Per entry over P samples (a (P, ...) tensor or a list of Hypergradients / tensors):
    ``hypervariance = std / |mean|`` and ``sign_fluctuation = min(P+, P−) / P``."""
    x = torch.stack([_flat(s) for s in samples]) if not isinstance(samples, torch.Tensor) else \
        samples.reshape(samples.shape[0], -1)
    if x.shape[0] < 2:
        raise ValueError("spread needs at least two samples")
    pos, neg = (x > 0).sum(0), (x < 0).sum(0)
    return {"hypervariance": x.std(0) / x.mean(0).abs(), "sign_fluctuation": torch.minimum(pos, neg) / x.shape[0],
            "mean": x.mean(0), "std": x.std(0)}


def under_randomness(run: Callable[[dict], object], n: int = 10, sources: Iterable[str] = SOURCES) -> dict:
    """{source: :func:`spread`} where ``run(seeds)`` returns one hypergradient for the seeds
    ``{"train": i, "val": j, "init": k, "hparams": l}``; for each source its seed takes the values
    1..n while every other seed stays 0 (one source of randomness at a time)."""
    out = {}
    for src in sources:
        if src not in SOURCES:
            raise ValueError(f"unknown source {src!r}; sources are {SOURCES}")
        out[src] = spread([run({**dict.fromkeys(SOURCES, 0), src: i}) for i in range(1, n + 1)])
    return out


def jitter(hparams: Mapping[str, torch.Tensor], seed: int, rel: float = 0.01) -> dict:
    """λ · (1 + U(−rel, rel)) entry-wise (the "initial hyperparameters ±1%" source); seed 0 is λ itself."""
    if seed == 0:
        return {k: v.detach().clone().requires_grad_() for k, v in hparams.items()}
    g = torch.Generator().manual_seed(seed)
    return {k: (v.detach() * (1 + rel * (2 * torch.rand(v.shape, generator=g, dtype=v.dtype) - 1))).requires_grad_()
            for k, v in hparams.items()}


class _Held:
    """A saved tensor (detached: keeping an op's output with its grad_fn would form a reference cycle
    through the graph) that tells its meter when autograd lets go of it."""

    __slots__ = ("tensor", "meter", "size")

    def __init__(self, tensor, meter, size):
        self.tensor, self.meter, self.size = tensor, meter, size

    def __del__(self):
        self.meter.live -= self.size


class SavedTensorMeter:
    """``with SavedTensorMeter() as m: ...`` then ``m.peak``: the largest number of bytes that autograd
    held at once in saved tensors (for backward) inside the block; ``m.live`` is what is still held.
    Tensors count by their own size, so views of one storage may count twice; compare like with like."""

    def __init__(self):
        self.live = self.peak = self.total = 0

    def _pack(self, x: torch.Tensor):
        size = x.numel() * x.element_size()
        self.live += size
        self.total += size
        self.peak = max(self.peak, self.live)
        return _Held(x.detach(), self, size)

    def __enter__(self):
        self._hooks = torch.autograd.graph.saved_tensors_hooks(self._pack, lambda h: h.tensor)
        self._hooks.__enter__()
        return self

    def __exit__(self, *exc):
        self._hooks.__exit__(*exc)
