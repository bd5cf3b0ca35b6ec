"""The label-noise experiment's configuration (EvoGrad paper §4.4, Figs. 5 and 7, App. C.4)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from ..common import ReproConfig

__all__ = ["LabelNoiseConfig", "METHODS", "PAPER"]

# label -> (estimator, options); None: the unweighted baseline (plain cross-entropy, no Meta-Weight-Net).
# Every method estimates before the model's step (Algorithm 5: the meta-update, then the model's step
# with the noisy batch), through the driver's online loop: λ_t's step, then λ's update.
METHODS: dict[str, tuple[str | None, dict[str, Any]]] = {
    "baseline (unweighted)": (None, {}),
    "EvoGrad": ("evograd", {"population": 2, "sigma": 1e-3, "temperature": 0.05, "noise": "sign", "when": "before"}),
    "T1-T2 (one_step)": ("one_step", {}),
    "HyperDistill": ("hyperdistill", {}),
    # the safeguard chosen on meta-validation in the sinusoid reproduction (results/sinusoid, issue 15)
    "HyperDistill+safeguard": ("hyperdistill", {"gamma": 0.9999, "theta_smoothing": 0.9, "theta_range": (0.0, 1.0)}),
}
# the paper's Table 5 (CIFAR-10, ResNet-32, 40% uniform noise): MWN (T1-T2) and EvoGrad test accuracy
PAPER = {"dataset": "CIFAR-10, 40% uniform noise", "T1-T2 (one_step)": (89.27, 0.28), "EvoGrad": (88.52, 0.89),
         "baseline (unweighted)": (68.07, 1.23), "memory": "over half saved", "time": "about a third less"}


@dataclass
class LabelNoiseConfig(ReproConfig):
    # -- the paper (App. C.4): 40% uniform label noise, Meta-Weight-Net 1-hidden-layer MLP (the library's
    #    WeightNet, 1-100-1, sigmoid output), EvoGrad K = 2, σ = 1e-3, τ = 0.05; inner SGD with momentum
    noise: float = 0.4
    mwn_hidden: int = 100
    inner_lr: float = 0.1
    inner_momentum: float = 0.9
    # -- scaled down: scikit-learn's digits (1,000 training images with noisy labels, a clean meta set of
    #    100, the other 697 as the test set) and an MLP 64-256-256-10 instead of CIFAR-10 and a ResNet-32;
    #    T = 2,000 steps of batch 100 (the paper: 60 epochs of 500 iterations). MNIST-1D (data="mnist1d")
    #    was tried first: an MLP fits its clean signals too poorly (~60%) for the losses to tell noisy
    #    labels from clean ones, so no method had anything to learn
    data: str = "digits"
    n_train: int = 1000
    n_meta: int = 100
    width: int = 256
    T: int = 2000
    batch: int = 100
    meta_batch: int = 100
    meta_lr: float = 1e-3     # Adam on λ for every method: Adam's steps ignore the hypergradient's scale,
                              # which is what absorbs EvoGrad's tiny virtual step σ²(1 − 1/K)/τ
    widths: tuple = (128, 512, 2048)   # Fig. 7 analogue: seconds and memory per step as the model grows
    cost_steps: int = 20
    seeds: int = 5
    threads: int = 1
    quick: bool = False

    QUICK: ClassVar[dict[str, Any]] = dict(T=60, seeds=1, widths=(64, 256), cost_steps=3)

    def fingerprinted(self) -> dict[str, Any]:
        return {"methods": {m: [n, o] for m, (n, o) in METHODS.items()}}   # (tuples: lists in JSON)
