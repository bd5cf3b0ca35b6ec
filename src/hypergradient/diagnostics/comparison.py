"""Every estimator on the user's own problem, against exact reverse mode: ``hg.compare(problem, λ)`` (:func:`compare`).

For each estimator e, with g_e its hypergradient flattened in λ's key order and g the reference's
(exact RMD through the same T steps from the same state):

    cosine      = ⟨g_e, g⟩ / (‖g_e‖ ‖g‖)
    norm_ratio  = ‖g_e‖ / ‖g‖            (cosine alone hides a one_step that is 170× too small)
    sign_agreement = #{i : g_i ≠ 0, sign(g_e,i) = sign(g_i)} / #{i : g_i ≠ 0}

plus its wall time, its peak memory (:mod:`~hypergradient.diagnostics.memory`) and the primitives it
spent (:class:`~hypergradient.core.state.Cost`). An estimator that raises or does not apply to the
problem is a row with ``error`` set; the comparison goes on.

Example::

    result = hg.compare(problem, problem.init_hparams(), ["rmd", "one_step", ("ift", {"solver": "cg"})])
    print(result.table())
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import inspect
import json
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Mapping, Sequence, Union

import torch

from ..core.types import HparamsLike
from ..estimators.base import ALIASES, REGISTRY, Estimator, Hypergradient, get
from . import comparison_report
from .memory import HeapMeter, SavedTensorMeter
from .similarity import cosine

if TYPE_CHECKING:
    from ..core.problem import InnerProblem
    from ..core.state import State

__all__ = ["compare", "Comparison", "EstimatorSpec", "MEMORY"]

# an estimator to compare: a registry name, (name, options), or an Estimator instance
EstimatorSpec = Union[str, tuple[str, Mapping[str, Any]], Estimator]
MEMORY = (None, "saved", "heap", "both")   # which meters run (compare's ``memory=``)


@dataclass
class Comparison:
    """What :func:`compare` returns. ``rows``: one dict per estimator, in the order asked, with the keys
    ``name`` (a label: the estimator's name and options), ``estimator``, ``options``, ``exact``, ``why``
    (why it is not meant to reach cosine 1, None for exact ones), ``cosine``, ``norm_ratio``,
    ``sign_agreement``, ``seconds``, ``saved_peak_bytes``, ``heap_peak_bytes``, ``cost`` (the
    :class:`~hypergradient.core.state.Cost` counts as a dict) and ``error`` (None, or why it failed)."""

    rows: list[dict[str, Any]]
    reference: str = "rmd"          # the reference's label
    T: int = 0                      # the inner steps every estimator ran
    seed: int = 0                   # the seed every estimator ran under
    memory: str | None = "saved"    # which meters ran (MEMORY)
    reference_row: dict[str, Any] = field(default_factory=dict)   # the reference run's own row

    def row(self, name: str) -> dict[str, Any]:
        """The first row labelled ``name``."""
        for r in self.rows:
            if r["name"] == name:
                return r
        raise KeyError(f"no row {name!r}; rows: {[r['name'] for r in self.rows]}")

    def table(self) -> str:
        """A printable text table, with a footer on the estimators not meant to reach cosine 1."""
        return comparison_report.table(self.rows, reference=self.reference, T=self.T, seed=self.seed, memory=self.memory)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready values (no tensors)."""
        return dataclasses.asdict(self)

    def to_json(self, path: str) -> None:
        with open(path, "w") as f:
            json.dump(self.to_dict(), f, indent=2)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Comparison:
        return cls(**d)

    @classmethod
    def from_json(cls, path: str) -> Comparison:
        with open(path) as f:
            return cls.from_dict(json.load(f))

    def plot(self, path: str | None = None) -> Any:
        """Bar plot of the cosine and the norm ratio per estimator (needs matplotlib); returns the Figure."""
        return comparison_report.plot(self.rows, path, reference=self.reference)


def _spec(spec: EstimatorSpec) -> tuple[str, dict[str, Any], Estimator | None]:
    """(name, options, instance given) of one entry of ``estimators=``."""
    if isinstance(spec, Estimator):
        return spec.name, {}, spec
    if isinstance(spec, str):
        return spec, {}, None
    if isinstance(spec, tuple) and len(spec) == 2 and isinstance(spec[0], str) and isinstance(spec[1], Mapping):
        return spec[0], dict(spec[1]), None
    raise TypeError(f"estimators= takes registry names, (name, options-dict) pairs or Estimator instances, got "
                    f"{spec!r}; e.g. ['rmd', ('ift', {{'solver': 'cg'}})]")


def _build(name: str, options: dict[str, Any], seed: int) -> Estimator:
    """The estimator ``name`` with ``options``, seeded with ``seed`` where it takes a seed and none is given."""
    if name not in REGISTRY and name not in ALIASES:
        raise ValueError(f"unknown estimator {name!r}; known: {sorted(REGISTRY)} (aliases: {sorted(ALIASES)})")
    cls = REGISTRY[ALIASES[name][0] if name in ALIASES else name]
    if "seed" in inspect.signature(cls).parameters and "seed" not in options:
        options = {**options, "seed": seed}
    return get(name, **options)


def _label(name: str, options: Mapping[str, Any]) -> str:
    return name + ("[" + ",".join(f"{k}={v}" for k, v in options.items()) + "]" if options else "")


def default_estimators() -> list[str]:
    """Every registered estimator that runs offline (overrides ``Estimator.estimate``), by name."""
    return sorted(n for n, c in REGISTRY.items() if c.estimate is not Estimator.estimate)


def _run(est: Estimator, problem: InnerProblem, lam: HparamsLike, T: int, state: State | None, seed: int,
         memory: str | None) -> tuple[Hypergradient, dict[str, Any]]:
    """One call under the chosen meters, the global random generators seeded and restored afterwards."""
    gc.collect()
    with contextlib.ExitStack() as stack:
        cuda = torch.cuda.is_available()
        stack.enter_context(torch.random.fork_rng(devices=list(range(torch.cuda.device_count())) if cuda else []))
        torch.manual_seed(seed)
        saved = stack.enter_context(SavedTensorMeter()) if memory in ("saved", "both") else None
        heap = stack.enter_context(HeapMeter()) if memory in ("heap", "both") else None
        if cuda:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        try:
            hg = est(problem, lam, T=T, state=state)
        finally:
            if cuda:
                torch.cuda.synchronize()
            seconds = time.perf_counter() - t0
    meta = {"seconds": seconds, "saved_peak_bytes": saved.peak if saved else None,
            "heap_peak_bytes": heap.peak if heap else None}
    return hg, meta


def agreement(g: torch.Tensor, ref: torch.Tensor) -> dict[str, float | None]:
    """{cosine, norm_ratio, sign_agreement} of ``g`` to ``ref`` (module docstring); the ratio and the
    cosine are None when ‖ref‖ = 0, the sign agreement when no entry of ``ref`` is non-zero."""
    g, ref = g.detach().reshape(-1).to("cpu", torch.float64), ref.detach().reshape(-1).to("cpu", torch.float64)
    if g.shape != ref.shape:
        raise ValueError(f"the hypergradient has {g.numel()} entries, the reference {ref.numel()}")
    rn = float(ref.norm())
    nz = ref != 0
    return {"cosine": cosine(g, ref) if rn > 0 else None,
            "norm_ratio": float(g.norm()) / rn if rn > 0 else None,
            "sign_agreement": float((torch.sign(g[nz]) == torch.sign(ref[nz])).double().mean()) if nz.any() else None}


def compare(problem: InnerProblem, hparams: HparamsLike | None = None, estimators: Sequence[EstimatorSpec] | None = None,
            *, T: int | None = None, state: State | None = None, seed: int = 0, memory: str | None = "saved",
            reference: EstimatorSpec = "rmd") -> Comparison:
    """Run each estimator once on ``problem`` at λ = ``hparams`` (default ``problem.init_hparams()``)
    over T inner steps (default the problem's horizon) from ``state`` and compare it with ``reference``
    (exact RMD), run first (it also absorbs one-time work: the problem's pre-flight probe, tracing).

    ``estimators``: registry names, (name, options) pairs or Estimator instances; default every
    registered estimator with an offline path (:func:`default_estimators`) — those that do not apply
    to this problem (optimizer hyperparameters they cannot differentiate, a vectorized meta-batch)
    are rows whose ``error`` says why. Unknown names and bad options raise before any run.
    ``seed``: given to every estimator that takes one (unless its options set it) and set as torch's
    global seed around each call (the global generators are restored after). ``memory``: ``"saved"``
    (bytes autograd saves, :class:`SavedTensorMeter`), ``"heap"`` (glibc heap peak, :class:`HeapMeter`,
    slower: it samples after every op), ``"both"`` or None; the meters run inside the timed call."""
    if memory not in MEMORY:
        raise ValueError(f"memory must be one of {MEMORY}, got {memory!r}")
    lam = problem.init_hparams() if hparams is None else hparams
    if not isinstance(lam, Mapping):
        raise TypeError(f"hparams must be the λ dict (problem.init_hparams()), got {type(lam).__name__}; pass the "
                        "estimators by keyword: compare(problem, lam, estimators=[...])")
    T = problem.horizon_or(T)
    specs = [_spec(s) for s in (default_estimators() if estimators is None else estimators)]
    built = [(name, opts, inst if inst is not None else _build(name, opts, seed)) for name, opts, inst in specs]
    ref_name, ref_opts, ref_inst = _spec(reference)
    ref_est = ref_inst if ref_inst is not None else _build(ref_name, ref_opts, seed)
    if not ref_est.exact:
        raise ValueError(f"the reference must be an exact estimator, {ref_est.name} is not; use 'rmd' or 'fmd'")
    try:
        ref_hg, ref_meta = _run(ref_est, problem, lam, T, state, seed, memory)
    except Exception as e:
        raise RuntimeError(f"the reference {ref_est.name} failed on this problem ({type(e).__name__}: {e}); fix the "
                           "problem, or pick a reference that fits it, e.g. reference=('rmd', {'storage': "
                           "'checkpoint'}) (on the command line: --reference 'rmd[storage=checkpoint]') when memory "
                           "runs out") from e
    ref = ref_hg.flat()
    rows = []
    for name, opts, est in built:
        row: dict[str, Any] = {"name": _label(name, opts), "estimator": est.name, "options": _plain(opts),
                               "exact": bool(est.exact), "why": comparison_report.why_not_exact(est.name, opts),
                               "cosine": None, "norm_ratio": None, "sign_agreement": None, "seconds": None,
                               "saved_peak_bytes": None, "heap_peak_bytes": None, "cost": None, "error": None}
        try:
            hg, meta = _run(est, problem, lam, T, state, seed, memory)
            g = torch.cat([hg.value[k].reshape(-1) for k in ref_hg.value])    # in the reference's key order
            row.update(meta, **agreement(g, ref), cost=_cost(hg))
        except Exception as e:     # a failing estimator is a row, never the end of the comparison
            row["error"] = f"{type(e).__name__}: {e}"
        rows.append(row)
    ref_row = {"name": _label(ref_name, ref_opts), "cost": _cost(ref_hg), **ref_meta}
    return Comparison(rows, ref_row["name"], T, seed, memory, ref_row)


def _plain(options: Mapping[str, Any]) -> dict[str, Any]:
    """Options as JSON values: numbers, strings, booleans and None as they are, anything else by repr."""
    return {k: v if v is None or isinstance(v, (bool, int, float, str)) else repr(v) for k, v in options.items()}


def _cost(hg: Hypergradient) -> dict[str, int]:
    return {**dataclasses.asdict(hg.cost), "step_equivalents": hg.cost.step_equivalents}
