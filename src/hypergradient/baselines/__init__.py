"""Black-box baselines over the same :class:`~hypergradient.InnerProblem` and the same search box as the
hypergradient methods, at an equal budget in step-equivalents (inner steps, from ``problem.cost``):
random search, a grid, and TPE on Optuna (the ``baselines`` extra). Layer 4: imports the core only."""

from .search import Box, SearchResult, Trial, evaluate, grid_search, random_search, tpe_search

__all__ = ["Box", "Trial", "SearchResult", "evaluate", "random_search", "grid_search", "tpe_search"]
