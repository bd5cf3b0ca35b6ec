"""Reproduce EvoGrad's 1-D illustration (Bohdal, Yang & Hospedales, NeurIPS 2021, §4.1, Fig. 2, App. C.1)
with ``hypergradient reproduce evograd-toy [--quick] [--out DIR]``.

f_T(x, λ) = (x − 1)² + λ x², f_V(x) = (x − 0.5)²: 100 values of λ in [0.1, 2], 100 estimates each by the
registered ``evograd`` estimator at x*(λ) = 1/(1 + λ) with populations 2, 10 and 100, σ = 1 (Gaussian
noise), τ = 0.5; the mean estimate per λ against the closed form (λ − 1)/(λ + 1)³ (its correlation, its
spread), and Algorithm 2's trajectories of (x, λ) by SGD at learning rate 0.1 with EvoGrad's and with
the true hypergradient. Nothing is scaled down; the settings the paper leaves open are fields of
:class:`ToyConfig`.
"""

from .config import ToyConfig
from .experiment import closed_form, estimates, toy_problem, trajectories
from .report import CORRELATION_GOALS, markdown, plots, summarize
from .runner import main, run

__all__ = ["ToyConfig", "toy_problem", "closed_form", "estimates", "trajectories", "summarize", "markdown",
           "plots", "CORRELATION_GOALS", "run", "main"]
