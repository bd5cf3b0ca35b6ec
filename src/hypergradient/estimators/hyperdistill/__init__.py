"""HyperDistill (Lee et al., ICLR 2022): the estimator, its linear estimation of θ, its weights and
distilled datasets."""

from .data import distill_batch, subsample
from .estimator import HyperDistill, HyperDistillCarry, direct_is_zero
from .linear_estimation import linear_estimation
from .weights import backward_weight, forward_weight, geometric_sum

__all__ = ["HyperDistill", "HyperDistillCarry", "direct_is_zero", "linear_estimation", "geometric_sum",
           "forward_weight", "backward_weight", "subsample", "distill_batch"]
