"""Baselines over the same :class:`~hypergradient.InnerProblem` and the same search box as the
hypergradient methods, at an equal budget in step-equivalents (``problem.cost.step_equivalents``):
random search, a grid (constant values or fixed per-step schedules such as :func:`cosine`), TPE on
Optuna (the ``baselines`` extra), and greedy hypergradient descent (:func:`greedy_hd`).
Layer 4: imports the core and the drivers."""

from .greedy import GreedyResult, clip_hypergradients, greedy_hd
from .schedules import cosine
from .search import Box, SearchResult, Trial, evaluate, grid_search, random_search, tpe_search

__all__ = ["Box", "Trial", "SearchResult", "evaluate", "random_search", "grid_search", "tpe_search",
           "greedy_hd", "GreedyResult", "clip_hypergradients", "cosine"]
