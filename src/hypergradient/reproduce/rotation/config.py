"""The rotation experiment's configuration (EvoGrad paper §4.2, App. C.2; written into results.json)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from ..common import ReproConfig

__all__ = ["RotationConfig", "METHODS", "PAPER"]

# label -> (estimator, its options); "baseline" trains with the angle fixed at 0 (no meta-learning)
METHODS: dict[str, tuple[str | None, dict[str, Any]]] = {
    "baseline": (None, {}),
    "EvoGrad": ("evograd", {"population": 2, "sigma": 1e-3, "temperature": 0.05, "noise": "sign", "when": "after"}),
    # not in the paper: the fix evograd's noise warning names (a larger population), everything else the same
    "EvoGrad (population 8)": ("evograd", {"population": 8, "sigma": 1e-3, "temperature": 0.05, "noise": "sign",
                                           "when": "after"}),
    "T1-T2 (one_step)": ("one_step", {}),
    "online RMD (last 5 steps)": ("online_rmd", {"window": 5}),
}
PAPER = {"baseline": (81.79, 0.64), "EvoGrad": (98.11, 0.32), "angle": (28.47, 5.23), "matched": 98.40}


@dataclass
class RotationConfig(ReproConfig):
    # -- the paper (App. C.2): validation and test images rotated by 30°, training images upright; one
    #    learnable angle λ applied to the training images (rotation matrix [[cos, −sin], [sin, cos]]),
    #    started at 0; a LeNet (2 conv + 3 fully connected, ReLU, max-pooling) trained by Adam 1e-3, the
    #    angle by Adam 1e-2 after every model step; batch 128; EvoGrad K = 2, σ = 1e-3, τ = 0.05, sign noise
    angle_deg: float = 30.0
    inner_lr: float = 1e-3
    meta_lr: float = 1e-2
    batch: int = 128
    # -- scaled down: scikit-learn's 8×8 digits instead of MNIST (1,000 train / 300 validation / 497
    #    test, by a seeded permutation), the LeNet adapted to 8×8 (3×3 convolutions, padding 1), and
    #    T = 400 steps (the paper: 5 epochs of MNIST, ~2,300 steps)
    data: str = "digits"
    n_train: int = 1000
    n_val: int = 300
    T: int = 400
    channels: tuple = (6, 16)
    hidden: tuple = (120, 84)
    seeds: int = 5
    threads: int = 1
    quick: bool = False

    QUICK: ClassVar[dict[str, Any]] = dict(T=40, seeds=1)

    def fingerprinted(self) -> dict[str, Any]:
        return {"methods": {m: [n, o] for m, (n, o) in METHODS.items()}}
