"""Plots of what a run learned: the learned schedules (one line per scheduled hyperparameter and weight,
over the fraction of training) and the drivers' history (validation loss, hypergradient norm, ... per
outer or inner step). matplotlib is an optional extra (``pip install "hypergradient[experiments]"``);
it is imported when a plot is drawn."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping, Sequence

from ..core.types import HparamsLike

if TYPE_CHECKING:
    from ..core.problem import InnerProblem

__all__ = ["plot_schedules", "plot_history"]


def _pyplot() -> Any:
    try:
        import matplotlib.pyplot as plt
    except ImportError as e:   # pragma: no cover - matplotlib is in the test extra
        raise ImportError("plots need matplotlib: pip install matplotlib (or the [experiments] extra)") from e
    return plt


def _finish(fig: Any, path: str | None) -> Any:
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=120)
        _pyplot().close(fig)
    return fig


def schedules_of(problem: "InnerProblem", hparams: HparamsLike) -> dict[str, dict[str, list[float]]]:
    """hyperparameter name -> {weight name (or "all") -> its K learned values}, for every optimizer
    hyperparameter with a schedule of numbers (:meth:`InnerProblem.learned`)."""
    out: dict[str, dict[str, list[float]]] = {}
    for name, v in problem.learned(hparams).items():
        if isinstance(v, list):
            out[name] = {"all": v}
        elif isinstance(v, Mapping):
            lines = {w: x for w, x in v.items() if isinstance(x, list)}
            if lines:
                out[name] = lines
    return out


def plot_schedules(problem: "InnerProblem", hparams: HparamsLike, path: str | None = None) -> Any:
    """One panel per scheduled hyperparameter: value k of K drawn over the k-th K-th of training (the
    step function the inner loop applies, x = t / T). Returns the figure; with ``path``, saves it."""
    sched = schedules_of(problem, hparams)
    if not sched:
        raise ValueError("no optimizer hyperparameter has a schedule of numbers (Hyper(..., schedule=K) "
                         "or block=B); plot_history shows how a run went instead")
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(sched), figsize=(5 * len(sched), 3.5), squeeze=False)
    for ax, (name, lines) in zip(axes[0], sched.items()):
        for w, values in lines.items():
            K = len(values)
            ax.step([k / K for k in range(K + 1)], values + values[-1:], where="post", label=w)
        ax.set(title=name, xlabel="fraction of training t / T", ylabel=name)
        if len(lines) > 1:
            ax.legend(fontsize=7)
    return _finish(fig, path)


def plot_history(result: Any, keys: Sequence[str] | None = None, path: str | None = None) -> Any:
    """One panel per numeric series of a driver's ``result.history`` (or of a history dict):
    ``val_loss`` and ``hypergrad_norm`` by default where present, else every list of numbers.
    Returns the figure; with ``path``, saves it."""
    history = result if isinstance(result, Mapping) else getattr(result, "history", None)
    if not isinstance(history, Mapping):
        raise TypeError(f"plot_history takes a driver's result (run_offline, run_online, meta_train) or its "
                        f".history dict, got {type(result).__name__}")
    numeric = [k for k, v in history.items() if isinstance(v, list) and v
               and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in v)]
    if keys is None:
        keys = [k for k in ("val_loss", "hypergrad_norm") if k in numeric] or numeric
    missing = [k for k in keys if k not in numeric]
    if missing or not keys:
        raise ValueError(f"no numeric history series {missing or ''}; this history has {numeric}")
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(keys), figsize=(4.5 * len(keys), 3.2), squeeze=False)
    for ax, k in zip(axes[0], keys):
        ax.plot(range(1, len(history[k]) + 1), history[k])
        ax.set(title=k, xlabel="step", yscale="log" if k == "hypergrad_norm" else "linear")
    return _finish(fig, path)
