"""One run of a method on one seed: train the LeNet for T steps with the angle learned online (λ updated
by Adam after every model step from the method's hypergradient) or fixed at 0 (the baseline)."""

from __future__ import annotations

import math
import time
from typing import Any

import torch

from ...drivers.online import run_online
from .config import METHODS, RotationConfig
from .problem import accuracy, build, splits

__all__ = ["run_method"]


def run_method(method: str, cfg: RotationConfig, seed: int) -> dict[str, Any]:
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; methods are {list(METHODS)}")
    data = splits(cfg, seed)
    problem = build(cfg, data, seed)
    lam = problem.init_hparams()
    name, options = METHODS[method]
    t0 = time.perf_counter()
    angles: list[float] = []
    if name is None:
        with torch.no_grad():
            state, _ = problem.run(problem.init_state(), lam, cfg.T)
    else:
        outer = torch.optim.Adam(list(lam.values()), lr=cfg.meta_lr)
        res = run_online(problem, name, lam, outer, T=cfg.T, progress=False,
                         callback=lambda states, g: angles.append(math.degrees(float(lam["loss.angle"].detach()))),
                         **options)
        state = res.state
    seconds = time.perf_counter() - t0
    return {"method": method, "seed": seed, "test_acc": accuracy(problem, state, data.test),
            "test_acc_upright": accuracy(problem, state, data.test_upright),
            "val_acc": accuracy(problem, state, data.val), "angle_deg": math.degrees(float(lam["loss.angle"].detach())),
            "angle_trajectory": angles[::max(1, len(angles) // 200)], "seconds": seconds,
            "cost": problem.cost.step_equivalents}
