"""Reproduce EvoGrad's rotation experiment (Bohdal, Yang & Hospedales, NeurIPS 2021, §4.2, Table 3,
App. C.2) with ``hypergradient reproduce rotation [--quick] [--seeds N] [--out DIR] [--workers N]``.

Training images are upright, validation and test images rotated by 30°; the angle applied to every
training batch (differentiable: ``affine_grid`` / ``grid_sample``) is the one hyperparameter, started
at 0 and learned online by Adam (lr 1e-2) after every step of the LeNet (Adam 1e-3) from EvoGrad's
hypergradient (K = 2, σ = 1e-3, τ = 0.05, sign noise, after the model's step as Algorithm 3), from
T1–T2 (``one_step``) and from exact reverse mode through the last 5 steps (``online_rmd``); the baseline
keeps the angle at 0. Scaled down: scikit-learn's 8×8 digits instead of MNIST, the LeNet adapted to
8×8, 400 steps instead of 5 MNIST epochs (all in :class:`RotationConfig`).
"""

from .config import METHODS, PAPER, RotationConfig
from .methods import run_method
from .problem import build, lenet, rotate, splits
from .report import markdown, plots, summarize
from .runner import main, run

__all__ = ["RotationConfig", "METHODS", "PAPER", "rotate", "lenet", "splits", "build", "run_method", "summarize",
           "markdown", "plots", "run", "main"]
