"""The schedules experiment's configuration: the methods compared, the paper's numbers and
:class:`SchedulesConfig` (every value a run depends on; written into ``results.json``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from ..common import ReproConfig

__all__ = ["METHODS", "DATASETS", "PAPER_TABLE1", "SchedulesConfig"]

# Table 1 rows, in order: label -> what runs (methods.py). "ours" is the paper's Algorithm 1.
METHODS: dict[str, str] = {
    "ours": "FMD, 7 shared learning rates + momentum + weight decay, Hessian products clipped, sign descent",
    "ours (exact FMD)": "the same without the Hessian-product clipping (exact forward mode)",
    "non-greedy, unshared (RMD)": "one learning rate per step + momentum + weight decay, exact RMD, sign descent",
    "greedy HD": "one online run, one-step hypergradients of lr, momentum and weight decay, SGD 0.2, clipped",
    "random search": "uniform in the sign-descent box, budget = ours' step-equivalents",
    "TPE": "Optuna's TPE in the same box and budget",
    "hand-tuned (cosine)": "cosine annealing from a grid of initial rates (and momentum 0 / 0.9), chosen on validation",
}
DATASETS = ("mnist1d", "digits")
# the paper's Table 1 (test accuracy %, mean ± std over 3 seeds) on MNIST and SVHN, the two small tasks
PAPER_TABLE1: dict[str, dict[str, tuple[float, float]]] = {
    "MNIST": {"ours": (98.7, 0.1), "hand-tuned (cosine)": (98.4, 0.1), "random search": (98.0, 0.2),
              "greedy HD": (97.5, 0.1)},
    "SVHN": {"ours": (85.7, 0.1), "hand-tuned (cosine)": (85.1, 0.1), "random search": (82.2, 1.1),
             "greedy HD": (84.0, 0.2)},
    "CIFAR-10": {"ours": (89.3, 0.1), "hand-tuned (cosine)": (89.2, 0.1), "random search": (82.3, 0.7),
                 "greedy HD": (80.8, 0.2)},
}


@dataclass
class SchedulesConfig(ReproConfig):
    """The paper's values (Sec. 5, App. B, D) where it gives them, then our choices (scaled to 2 CPU cores)."""

    # -- Table 1 (paper): 7 shared learning rates, 1 momentum, 1 weight decay, all raw and started at 0;
    #    sign descent with absolute steps γ and 10 outer steps (so the box is ±10 γ); Hessian products ±10
    lr_values: int = 7
    outer_steps: int = 10
    gamma_lr: float = 0.1
    gamma_momentum: float = 0.15
    gamma_wd: float = 4e-4
    hvp_clip: float = 10.0
    greedy_lr: float = 0.2               # greedy HD: SGD on λ, hypergradients clipped ±1 (App. B)
    greedy_clip: float = 1.0
    hand_alpha0: tuple = (0.05, 0.1, 0.2, 0.4, 0.6)   # cosine annealing's initial rates (App. D)
    # -- our choices (scaled down; the paper trains LeNets / a WRN on MNIST, SVHN, CIFAR-10 on a GPU)
    hand_momentum: tuple = (0.0, 0.9)    # the paper saw no gain from momentum on MNIST/SVHN; we let the grid decide
    T: int = 500                         # inner steps (paper: ~10^3 for MNIST/SVHN)
    batch: int = 128
    width: int = 100                     # MLP in-100-100-10, ReLU
    n_val: int = 400                     # validation examples (mnist1d: of its 4,000 training signals)
    digits_train: int = 1000             # digits: train / validation / test (the rest, 497) by a seeded permutation
    digits_val: int = 300
    inner_clip: float = 1.0              # inner gradients clamped to ±1 (paper: "inner gradients clipped")
    penalty: float = 1e3                 # a diverged trial's validation loss (finite: TPE drops failed trials)
    tpe_startup: int = 10
    datasets: tuple = DATASETS
    seeds: int = 5                       # paired seeds 0..seeds-1: split, initial weights, batch order, search
    # -- Fig. 2 analogue (paper: float64, batch 64, 10 learning rates shared over 40 steps, T = 400,
    #    α0 = 0.05, inner clip ±1; one source of randomness perturbed at a time)
    spread_T: int = 400
    spread_batch: int = 64
    spread_values: int = 10
    spread_alpha0: float = 0.05
    spread_samples: int = 10             # P perturbed runs per source
    spread_val_batch: int = 256          # validation batch drawn from the validation set (the "val" source)
    spread_dataset: str = "mnist1d"
    cost_T: tuple = (250, 500)           # horizons of the memory table (FMD flat in T)
    threads: int = 1                     # torch threads per worker process
    quick: bool = False

    QUICK: ClassVar[dict[str, Any]] = dict(T=40, lr_values=4, outer_steps=3, hand_alpha0=(0.1, 0.4),
                                           hand_momentum=(0.9,), seeds=1, spread_T=40, spread_values=4,
                                           spread_samples=3, n_val=200, cost_T=(20, 40))
    NOT_FINGERPRINTED: ClassVar[tuple[str, ...]] = ("seeds", "threads", "datasets")

    def fingerprinted(self) -> dict[str, Any]:
        return {"methods": METHODS}
