"""Checkpoints of a driver's run, so that a long run never loses finished work.

A checkpoint holds what the rest of the run depends on — λ, the learned initialization, the outer
optimizer's state, the estimator's state (θ, counters, every generator), the task generator, the
history, the step counter — plus the library version and a fingerprint of the run's configuration.
It is written every ``every`` finished steps (an outer step, an episode, a meta-iteration) and when
the run is interrupted (Ctrl-C), atomically: to ``path + ".tmp"``, then renamed over ``path``, so the
previous good checkpoint stays until the new one is whole. It is read with
``torch.load(weights_only=True)`` (tensors and plain values only, no pickled code).

Giving the same ``checkpoint=`` path again resumes: the run continues from the last finished step and
ends with the same λ and history, bit for bit, as an uninterrupted run (for data given as ``t ->
batch`` functions or sequences; an iterator's position is not saved). A checkpoint written by a run
with another configuration, or a truncated / corrupted file, is refused with an error naming it.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
from typing import Any, Callable, Mapping, Sequence

import torch

from ..core.state import State
from ..core.version import VERSION
from ..core.types import HparamsLike
from ..estimators.base import Estimator, EstimatorState

__all__ = ["Checkpointer", "fingerprint", "capture", "restore", "estimator_config", "pack_states", "unpack_states"]

FORMAT = 1


def _plain(x: object) -> object:
    """JSON for what is not: a function or class by its qualified name, anything else by its type."""
    return getattr(x, "__qualname__", None) or type(x).__name__


def fingerprint(config: Mapping[str, Any]) -> str:
    """A short hash of the configuration (plain values; functions by name)."""
    text = json.dumps(config, sort_keys=True, default=_plain)
    return hashlib.sha1(text.encode()).hexdigest()[:16]


def estimator_config(est: Estimator, hparams: HparamsLike, outer: torch.optim.Optimizer) -> dict[str, Any]:
    """The part of every driver's configuration that names the estimator, λ and the outer optimizer."""
    return {"estimator": est.name, "options": {k: v for k, v in vars(est).items()},
            "hparams": {k: list(v.shape) for k, v in hparams.items()}, "outer": type(outer).__name__,
            "outer_defaults": {k: v for k, v in outer.defaults.items() if isinstance(v, (int, float, bool, tuple))}}


def capture(hparams: HparamsLike, outer: torch.optim.Optimizer, est_state: EstimatorState,
            **extra: Any) -> dict[str, Any]:
    """A copy of the run's state now (λ, the outer optimizer, the estimator state, ``extra``)."""
    return {"hparams": {k: v.detach().clone() for k, v in hparams.items()},
            "outer": copy.deepcopy(outer.state_dict()), "est_state": copy.deepcopy(est_state.state_dict()),
            **copy.deepcopy(extra)}


def pack_states(states: Sequence[State]) -> list[dict[str, Any]]:
    """Inner states as plain values (their tensors, buffers and step index)."""
    return [{"tensors": [x.detach().clone() for x in s.tensors()], "buffers": dict(s.buffers), "t": s.t}
            for s in states]


def unpack_states(packed: Sequence[Mapping[str, Any]], like: Sequence[State]) -> list[State]:
    """The states of :func:`pack_states`, structured like ``like`` (same optimizer and model)."""
    return [s.with_tensors(p["tensors"])._replace(buffers=p["buffers"], t=p["t"]) for p, s in zip(packed, like)]


def restore(saved: Mapping[str, Any], hparams: HparamsLike, outer: torch.optim.Optimizer,
            est_state: EstimatorState) -> None:
    """Put λ (in place: the caller's tensors), the outer optimizer's and the estimator's state back."""
    with torch.no_grad():
        for k, v in hparams.items():
            v.copy_(saved["hparams"][k])
    outer.load_state_dict(saved["outer"])
    est_state.load_state_dict(saved["est_state"])


class Checkpointer:
    """Saves and loads one run's checkpoint at ``path`` (``None``: does nothing)."""

    def __init__(self, path: str | os.PathLike[str] | None, every: int, config: Mapping[str, Any]) -> None:
        if not isinstance(every, int) or isinstance(every, bool) or every < 1:
            raise ValueError(f"checkpoint_every must be a positive int, got {every!r}")
        self.path = None if path is None else os.fspath(path)
        self.every, self.config = every, dict(config)
        self.fingerprint = fingerprint(self.config)

    def load(self) -> dict[str, Any] | None:
        """The saved payload, or None when there is no checkpoint yet."""
        if self.path is None or not os.path.exists(self.path):
            return None
        try:
            data = torch.load(self.path, weights_only=True)
        except Exception as e:   # truncated, corrupted, or not a checkpoint
            raise RuntimeError(f"the checkpoint {self.path} cannot be read ({type(e).__name__}: {e}); it is left "
                               "as it is: delete it to start afresh, or give another checkpoint= path") from e
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise RuntimeError(f"{self.path} is not a hypergradient checkpoint (format {FORMAT})")
        if data["fingerprint"] != self.fingerprint:
            raise RuntimeError(f"the checkpoint {self.path} was written by a run with another configuration "
                               f"(fingerprint {data['fingerprint']} != {self.fingerprint}); give another "
                               "checkpoint= path, or delete it to start afresh")
        return dict(data["payload"])

    def save(self, payload: Mapping[str, Any]) -> None:
        if self.path is None:
            return
        data = {"format": FORMAT, "fingerprint": self.fingerprint, "version": VERSION,
                "config": json.dumps(self.config, sort_keys=True, default=_plain), "payload": dict(payload)}
        tmp = self.path + ".tmp"
        torch.save(data, tmp)
        os.replace(tmp, self.path)

    def due(self, done: int, total: int) -> bool:
        """Whether to save after ``done`` of ``total`` steps (every ``every``, and at the end)."""
        return self.path is not None and (done % self.every == 0 or done == total)

    def run(self, body: Callable[[], None], snapshot: Callable[[], Mapping[str, Any]]) -> None:
        """``body()``; on Ctrl-C, save ``snapshot()`` (the last finished step) before re-raising."""
        try:
            body()
        except KeyboardInterrupt:
            if self.path is not None:
                self.save(snapshot())
            raise
