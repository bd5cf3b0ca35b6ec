"""Random search, grid search and TPE (Optuna) over λ's raw entries in a box, each trial one inner
optimization of T steps from s_0 scored by the validation loss (or ``score(problem, s_T, λ)``), until
a budget of step-equivalents (:attr:`~hypergradient.core.state.Cost.step_equivalents` of ``problem.cost``
spent by the trials: a trial of T steps costs T) is used up.

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
    budget: int | None           # the budget asked for, in step-equivalents (None: a wall-clock budget only)
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def best(self) -> Trial:
        return min(self.trials, key=lambda t: t.value)

    @property
    def steps(self) -> int:
        return sum(t.steps for t in self.trials)

    @property
    def seconds(self) -> float:
        return sum(t.seconds for t in self.trials)

    def within(self, steps: float | None = None, seconds: float | None = None) -> list[Trial]:
        """The first trials (in order) whose cumulative step-equivalents and seconds stay within the
        given budgets: what the search would have found had it stopped there (at least one trial)."""
        out: list[Trial] = []
        n = s = 0.0
        for t in self.trials:
            n, s = n + t.steps, s + t.seconds
            if out and ((steps is not None and n > steps) or (seconds is not None and s > seconds)):
                break
            out.append(t)
        return out

    def best_within(self, steps: float | None = None, seconds: float | None = None) -> Trial:
        """The best trial of :meth:`within`: the search's answer at an equal budget."""
        return min(self.within(steps, seconds), key=lambda t: t.value)


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
    before, t0 = problem.cost.step_equivalents, time.perf_counter()
    value, diverged = evaluate(problem, lam, T, score, penalty)
    return Trial(number, lam, value, problem.cost.step_equivalents - before, time.perf_counter() - t0, diverged)


def _bar(total: int | None, desc: str, progress: bool) -> Any:
    from tqdm.auto import tqdm
    return tqdm(total=total, desc=desc, unit="step", disable=not progress)


def _check_budget(budget: int | None, seconds: float | None) -> None:
    if budget is None and seconds is None:
        raise ValueError("give a budget: budget= (step-equivalents) and/or seconds= (wall-clock)")
    if budget is not None and not budget > 0 or seconds is not None and not seconds > 0:
        raise ValueError(f"budgets must be positive, got budget={budget!r}, seconds={seconds!r}")


def _spent(trials: Sequence[Trial], budget: int | None, seconds: float | None) -> bool:
    """Every given budget used up (so that the result covers an equal budget in each)."""
    return ((budget is None or sum(t.steps for t in trials) >= budget)
            and (seconds is None or sum(t.seconds for t in trials) >= seconds))


def random_search(problem: InnerProblem, boxes: Mapping[str, Box | tuple], budget: int | None = None, *,
                  seconds: float | None = None, T: int | None = None, seed: int = 0, score: Score | None = None,
                  penalty: float = 1e3, progress: bool = False) -> SearchResult:
    """Uniform (or log-uniform) samples in the box until ``budget`` step-equivalents and/or ``seconds``
    of wall-clock are spent (both, when both are given: :meth:`SearchResult.best_within` then answers
    at either budget)."""
    _check_budget(budget, seconds)
    lam0 = problem.init_hparams()
    dims = _dims(problem, lam0, boxes)
    gen = torch.Generator().manual_seed(seed)
    trials: list[Trial] = []
    bar = _bar(budget, "random search", progress)
    while not _spent(trials, budget, seconds):
        u = torch.rand(len(dims), generator=gen, dtype=torch.float64).tolist()
        vals = [math.exp(math.log(b.lo) + x * (math.log(b.hi) - math.log(b.lo))) if b.log else b.lo + x * (b.hi - b.lo)
                for (_, _, b), x in zip(dims, u)]
        trials.append(_trial(problem, len(trials), _with(lam0, dims, vals), T, score, penalty))
        bar.update(trials[-1].steps)
    bar.close()
    return SearchResult("random", trials, budget, {"seed": seed, "dims": len(dims), "seconds_budget": seconds})


def grid_search(problem: InnerProblem, grid: Mapping[str, Iterable[float | Sequence[float]]], *,
                T: int | None = None, score: Score | None = None, penalty: float = 1e3,
                progress: bool = False) -> SearchResult:
    """Every combination of the values given per λ key or hyperparameter name: the hand-tuned grid.
    A value is a float (set on every entry of the leaf: a constant schedule) or a sequence with one
    value per entry (a fixed per-step schedule such as :func:`~hypergradient.baselines.cosine`)."""
    lam0 = problem.init_hparams()
    keys = list(grid)
    dims = {k: [(d[0], d[1]) for d in _dims(problem, lam0, {k: Box(0.0, 1.0)})] for k in keys}
    trials: list[Trial] = []
    combos = list(itertools.product(*(list(grid[k]) for k in keys)))
    bar = _bar(len(combos), "grid", progress)
    for combo in combos:
        lam = {k: v.detach().clone() for k, v in lam0.items()}
        for k, x in zip(keys, combo):
            xs = [float(v) for v in x] if isinstance(x, Sequence) else [float(x)] * len(dims[k])
            if len(xs) != len(dims[k]):
                raise ValueError(f"grid value for {k!r} has {len(xs)} entries; the hyperparameter has {len(dims[k])}")
            for (key, i), v in zip(dims[k], xs):
                lam[key].view(-1)[i] = v
        trials.append(_trial(problem, len(trials), lam, T, score, penalty))
        bar.update()
    bar.close()
    return SearchResult("grid", trials, sum(t.steps for t in trials),
                        {"grid": {k: [list(x) if isinstance(x, Sequence) else x for x in grid[k]] for k in keys}})


def tpe_search(problem: InnerProblem, boxes: Mapping[str, Box | tuple], budget: int | None = None, *,
               seconds: float | None = None, T: int | None = None, seed: int = 0, n_startup_trials: int = 10, storage: str | None = None, study_name: str = "tpe",
               score: Score | None = None, penalty: float = 1e3, progress: bool = False) -> SearchResult:
    """TPE on Optuna (``pip install optuna``: the ``baselines`` extra) with its sampler's arguments passed
    explicitly; with ``storage`` (a journal file path) the study resumes where it stopped: the trials on
    file count toward the budget. Budgets as :func:`random_search`."""
    _check_budget(budget, seconds)
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
    while not _spent(trials, budget, seconds):
        study.optimize(objective, n_trials=1)
        bar.update(trials[-1].steps)
    bar.close()
    return SearchResult("tpe", trials, budget, {"seconds_budget": seconds, "seed": seed, "n_startup_trials": n_startup_trials,
                                                "optuna": optuna.__version__, "dims": len(dims),
                                                "sampler": "TPESampler(multivariate=False)"})
