"""Random search, grid search and TPE (Optuna) over λ's raw entries in a box, each trial one inner
optimization of T steps from s_0 scored by the validation loss (or ``score(problem, s_T, λ)``), until
a budget of step-equivalents (``problem.cost.steps`` spent by the trials) is used up.

A diverged trial (DivergenceError, a non-finite loss, FloatingPointError) scores ``penalty``, a finite
number: TPE drops failed trials and NaN would poison a comparison. Boxes are over λ's *raw* leaves
(with ``Hyper(positive="exp")`` a box in log space), keyed by λ key (``"optim.lr"``, ``"optim.lr[0.weight]"``)
or by hyperparameter name (``"lr"``: every leaf of that name); a leaf with several entries (a schedule,
per-tensor or element-wise values) has one dimension per entry.
"""

from __future__ import annotations

import itertools
import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Sequence

import torch

from ..core.problem import InnerProblem
from ..core.state import DivergenceError, State
from ..core.types import Hparams

__all__ = ["Box", "Trial", "SearchResult", "evaluate", "random_search", "grid_search", "tpe_search"]

Score = Callable[[InnerProblem, State, Hparams], float]


@dataclass(frozen=True)
class Box:
    """[lo, hi] for one raw entry of λ; ``log`` samples log-uniformly (lo > 0)."""

    lo: float
    hi: float
    log: bool = False

    def __post_init__(self) -> None:
        if not self.lo < self.hi or (self.log and self.lo <= 0):
            raise ValueError(f"a box needs lo < hi (and lo > 0 with log=True), got {self}")


@dataclass
class Trial:
    number: int
    lam: Hparams                 # the raw λ the trial ran with
    value: float                 # its score (the penalty when it diverged)
    steps: int                   # step-equivalents it spent
    seconds: float
    diverged: bool = False


@dataclass
class SearchResult:
    method: str
    trials: list[Trial]
    budget: int
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def best(self) -> Trial:
        return min(self.trials, key=lambda t: t.value)

    @property
    def steps(self) -> int:
        return sum(t.steps for t in self.trials)


def _dims(problem: InnerProblem, lam: Hparams, boxes: Mapping[str, Box | tuple]) -> list[tuple[str, int, Box]]:
    """(λ key, flat entry, box) for every entry the boxes cover; ValueError for a box matching nothing."""
    box_of: dict[str, Box] = {k: b if isinstance(b, Box) else Box(*b) for k, b in boxes.items()}
    out: list[tuple[str, int, Box]] = []
    used: set[str] = set()
    for k, v in lam.items():
        name = problem.spec.leaves[k][0] if k in problem.spec.leaves else k.split(".", 1)[-1]
        hit = k if k in box_of else name if name in box_of else None
        if hit is None:
            continue
        used.add(hit)
        out.extend((k, i, box_of[hit]) for i in range(v.numel()))
    unknown = set(box_of) - used
    if unknown:
        raise ValueError(f"boxes {sorted(unknown)} match no hyperparameter; λ holds {list(lam)}")
    return out


def _with(lam: Hparams, dims: Sequence[tuple[str, int, Box]], values: Sequence[float]) -> Hparams:
    out = {k: v.detach().clone() for k, v in lam.items()}
    for (k, i, _), x in zip(dims, values):
        out[k].view(-1)[i] = x
    return out


def evaluate(problem: InnerProblem, lam: Hparams, T: int | None = None, score: Score | None = None,
             penalty: float = 1e3) -> tuple[float, bool]:
    """(score, diverged) of one inner optimization of T steps from s_0 with ``lam``."""
    T = problem.horizon_or(T)
    try:
        with torch.no_grad():
            state, _ = problem.run(problem.init_state(), lam, T)
            value = float(problem.val_loss_at(state, lam)) if score is None else float(score(problem, state, lam))
    except (DivergenceError, FloatingPointError):
        return float(penalty), True
    if not math.isfinite(value):
        return float(penalty), True
    return value, False


def _trial(problem: InnerProblem, number: int, lam: Hparams, T: int | None, score: Score | None,
           penalty: float) -> Trial:
    before, t0 = problem.cost.steps, time.perf_counter()
    value, diverged = evaluate(problem, lam, T, score, penalty)
    return Trial(number, lam, value, problem.cost.steps - before, time.perf_counter() - t0, diverged)


def _bar(total: int, desc: str, progress: bool) -> Any:
    from tqdm.auto import tqdm
    return tqdm(total=total, desc=desc, unit="step", disable=not progress)


def random_search(problem: InnerProblem, boxes: Mapping[str, Box | tuple], budget: int, *, T: int | None = None,
                  seed: int = 0, score: Score | None = None, penalty: float = 1e3,
                  progress: bool = False) -> SearchResult:
    """Uniform (or log-uniform) samples in the box until ``budget`` step-equivalents are spent."""
    lam0 = problem.init_hparams()
    dims = _dims(problem, lam0, boxes)
    gen = torch.Generator().manual_seed(seed)
    trials: list[Trial] = []
    bar = _bar(budget, "random search", progress)
    while sum(t.steps for t in trials) < budget:
        u = torch.rand(len(dims), generator=gen, dtype=torch.float64).tolist()
        vals = [math.exp(math.log(b.lo) + x * (math.log(b.hi) - math.log(b.lo))) if b.log else b.lo + x * (b.hi - b.lo)
                for (_, _, b), x in zip(dims, u)]
        trials.append(_trial(problem, len(trials), _with(lam0, dims, vals), T, score, penalty))
        bar.update(trials[-1].steps)
    bar.close()
    return SearchResult("random", trials, budget, {"seed": seed, "dims": len(dims)})


def grid_search(problem: InnerProblem, grid: Mapping[str, Iterable[float]], *, T: int | None = None,
                score: Score | None = None, penalty: float = 1e3, progress: bool = False) -> SearchResult:
    """Every combination of the values given per λ key or hyperparameter name (each value set on all
    of that leaf's entries: a constant schedule): the hand-tuned grid."""
    lam0 = problem.init_hparams()
    keys = list(grid)
    dims = {k: [(d[0], d[1]) for d in _dims(problem, lam0, {k: Box(0.0, 1.0)})] for k in keys}
    trials: list[Trial] = []
    combos = list(itertools.product(*(list(grid[k]) for k in keys)))
    bar = _bar(len(combos), "grid", progress)
    for combo in combos:
        lam = {k: v.detach().clone() for k, v in lam0.items()}
        for k, x in zip(keys, combo):
            for key, i in dims[k]:
                lam[key].view(-1)[i] = float(x)
        trials.append(_trial(problem, len(trials), lam, T, score, penalty))
        bar.update()
    bar.close()
    return SearchResult("grid", trials, sum(t.steps for t in trials), {"grid": {k: list(grid[k]) for k in keys}})


def tpe_search(problem: InnerProblem, boxes: Mapping[str, Box | tuple], budget: int, *, T: int | None = None,
               seed: int = 0, n_startup_trials: int = 10, storage: str | None = None, study_name: str = "tpe",
               score: Score | None = None, penalty: float = 1e3, progress: bool = False) -> SearchResult:
    """TPE on Optuna (``pip install optuna``: the ``baselines`` extra) with its sampler's arguments passed
    explicitly; with ``storage`` (a journal file path) the study resumes where it stopped: the trials on
    file count toward the budget."""
    try:
        import optuna
        from optuna.storages import JournalStorage
        from optuna.storages.journal import JournalFileBackend
    except ImportError as e:
        raise ImportError("tpe_search needs Optuna: pip install optuna (or the 'baselines' extra)") from e
    lam0 = problem.init_hparams()
    dims = _dims(problem, lam0, boxes)
    names = [f"{k}#{i}" for k, i, _ in dims]
    sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=n_startup_trials, multivariate=False)
    store = None if storage is None else JournalStorage(JournalFileBackend(storage))
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name=study_name, storage=store, sampler=sampler, direction="minimize",
                                load_if_exists=True)
    trials: list[Trial] = []
    for ft in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
        vals = [ft.params[n] for n in names]
        trials.append(Trial(ft.number, _with(lam0, dims, vals), float(ft.value or 0.0), int(ft.user_attrs["steps"]),
                            float(ft.user_attrs["seconds"]), bool(ft.user_attrs["diverged"])))

    def objective(trial: Any) -> float:
        vals = [trial.suggest_float(n, b.lo, b.hi, log=b.log) for n, (_, _, b) in zip(names, dims)]
        t = _trial(problem, trial.number, _with(lam0, dims, vals), T, score, penalty)
        trial.set_user_attr("steps", t.steps)
        trial.set_user_attr("seconds", t.seconds)
        trial.set_user_attr("diverged", t.diverged)
        trials.append(t)
        return t.value
    bar = _bar(budget, "TPE", progress)
    bar.update(sum(t.steps for t in trials))
    while sum(t.steps for t in trials) < budget:
        study.optimize(objective, n_trials=1)
        bar.update(trials[-1].steps)
    bar.close()
    return SearchResult("tpe", trials, budget, {"seed": seed, "n_startup_trials": n_startup_trials,
                                                "optuna": optuna.__version__, "dims": len(dims),
                                                "sampler": "TPESampler(multivariate=False)"})
