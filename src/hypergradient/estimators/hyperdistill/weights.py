"""HyperDistill's weights (Lee et al. 2022): the geometric sums S_k of Eq. 15 and the averaging weights
p_k (Eq. 13, forward) and q_s (Eq. 17, backward) of the distilled point."""

from __future__ import annotations

__all__ = ["geometric_sum", "forward_weight", "backward_weight", "mix"]


def geometric_sum(gamma: float, k: int) -> float:
    """S_k = Σ_{i<k} γ^i = (1 − γ^k)/(1 − γ) (= k at γ = 1; S_0 = 0)."""
    if gamma == 1.0:
        return float(k)
    return (1.0 - gamma ** k) / (1.0 - gamma)


def forward_weight(gamma: float, k: int) -> float:
    """p_k = (γ − γ^k)/(1 − γ^k) = γ S_{k−1}/S_k, the weight kept on w*_{k−1} (Eq. 13); p_1 = 0."""
    return gamma * geometric_sum(gamma, k - 1) / geometric_sum(gamma, k)


def backward_weight(gamma: float, s: int) -> float:
    """q_s = (1 − γ^{s−1})/(1 − γ^s) = S_{s−1}/S_s, the weight kept on w*_{s−1} (Eq. 17); q_1 = 0."""
    return geometric_sum(gamma, s - 1) / geometric_sum(gamma, s)


def mix(p: float, old: list | None, new: list, count: int | None = None) -> list:
    """p·old + (1 − p)·new over the first ``count`` entries (all by default), the rest of ``new`` as it
    is; ``new`` itself when p = 0 (exact 1-step equivalence). With ``count`` = |w| only the weights
    are distilled and the optimizer state is the current one (``distill_opt_state=False``)."""
    if p == 0.0:
        return list(new)
    if old is None:
        raise ValueError("mix(p > 0) needs the earlier distilled point")
    n = len(new) if count is None else count
    return [p * a + (1.0 - p) * b for a, b in zip(old[:n], new[:n])] + list(new[n:])
