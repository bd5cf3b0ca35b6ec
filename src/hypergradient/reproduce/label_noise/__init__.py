"""Reproduce EvoGrad's label-noise experiment (Bohdal, Yang & Hospedales, NeurIPS 2021, §4.4, Table 5,
Figs. 5 and 7, App. C.4) with ``hypergradient reproduce label-noise [--quick] [--seeds N] [--out DIR]``.

Meta-Weight-Net (a 1-100-1 network mapping each example's training loss to its weight; λ = its
parameters) learned online under 40% uniform label noise from a small clean meta set, by EvoGrad
(K = 2, σ = 1e-3, τ = 0.05, sign noise, before the model's step as Algorithm 5), by T1–T2
(``one_step``), by HyperDistill (its defaults, and the safeguard chosen in the sinusoid reproduction),
against the unweighted baseline; test accuracy over seeds, the learned weighting, and the Fig. 7
analogue — seconds and memory of one step of EvoGrad and T1–T2 side by side as the model widens.
Scaled down: digits and an MLP instead of CIFAR-10 and a ResNet-32 (:class:`LabelNoiseConfig`).
"""

from .config import METHODS, PAPER, LabelNoiseConfig
from .methods import COST_METHODS, LOSS_GRID, cost_sweep, run_method
from .problem import build, splits
from .report import markdown, plots, summarize
from .runner import main, run

__all__ = ["LabelNoiseConfig", "METHODS", "PAPER", "COST_METHODS", "LOSS_GRID", "splits", "build", "run_method",
           "cost_sweep", "summarize", "markdown", "plots", "run", "main"]
