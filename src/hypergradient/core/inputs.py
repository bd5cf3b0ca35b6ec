"""The few objects an :class:`~hypergradient.core.problem.InnerProblem` is built from, besides the
model, the losses and the optimizer:

* :class:`Hypers`   what λ holds: the optimizer's hyperparameters (constants or :class:`Hyper`),
                    model parts, loss hyperparameters and hyperparameter modules;
* :class:`Data`     the training batches D_1, D_2, … and the validation batch(es);
* :class:`Settings` how the problem runs: the validation mode, the dropout seed, the finiteness
                    check, the weight layout of differentiable unrolls.

Also :class:`HparamsView` (``problem.hparams_view(λ)["lr"]``: a hyperparameter by its name) and the
mapping of the old flat keyword arguments onto these objects (:func:`from_keywords`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Mapping

from torch import nn

from .deprecation import warn
from .divergence import Divergence
from .hyper import Hyper, HyperSpec
from .types import Batch, Batches, HparamsLike

__all__ = ["Hypers", "Data", "Settings", "HparamsView", "from_keywords", "KEYWORDS"]


@dataclass
class Hypers:
    """What λ holds (see :mod:`hypergradient.core.hyper` for the keys).

    Args:
        optimizer: deprecated (goes in 0.3): the optimizer carries its hyperparameters,
            ``hg.optim.sgd(lr=Hyper(0.1, "tensor", positive="exp"), momentum=0.9)``.
        model: which model parameters are hyperparameters (names, prefixes, glob patterns or a
            predicate; ANIL's body); the rest are the inner weights w.
        loss: free hyperparameters of the losses: name -> tensor / float / :class:`Hyper`
            (``hp["l2"]`` inside a loss).
        modules: modules whose parameters are hyperparameters (``hp["mwn"](x)``, Meta-Weight-Net).
    """

    optimizer: Mapping[str, float | Hyper] | None = field(default_factory=dict)
    model: Any = None
    loss: Mapping[str, Any] | None = None
    modules: Mapping[str, nn.Module] | None = None

    # set by from_keywords when ``optimizer`` came from a flat keyword that has already warned
    warned: bool = field(default=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.optimizer = dict(self.optimizer or {})


@dataclass
class Data:
    """The data of one inner optimization.

    Args:
        train: ``t -> batch`` for t = 1, 2, …, a sequence of batches (cycled) or an iterator (cached).
        val: a batch, or ``t -> batch``.
    """

    train: Batches
    val: Batch | Callable[[int], Batch]

    def __post_init__(self) -> None:
        if self.train is None or self.val is None:
            raise ValueError("give Data(train=..., val=...): the training batches (t -> batch, or a sequence) "
                             "and the validation batch")


@dataclass
class Settings:
    """How an inner problem runs.

    Args:
        val_mode: ``"train"`` or ``"eval"``: the module mode (BatchNorm, dropout) for the validation
            loss. The paper's reference code uses train mode; we make it explicit. In eval mode
            BatchNorm's running statistics enter L_val as constants (they are carried without a
            graph), so the hypergradient leaves out their dependence on λ.
        seed: base of the per-step seeds that make dropout replayable.
        check_finite: raise :class:`~hypergradient.core.state.DivergenceError` when a training loss is
            not finite.
        layout: how differentiable unrolls hold the weights: ``"flat"`` (one buffer, see
            :mod:`hypergradient.core.flat`), ``"tensors"`` (one tensor each) or ``"auto"``: flat when
            the optimizer is elementwise and the weight tensors average at most ``FLAT_MAX_MEAN``
            elements. Flat saves per-tensor ops, which dominate on many small tensors; on large ones
            it costs a copy per step and keeps whole weight buffers in the graph where the per-tensor
            layout keeps only the tensors backward needs (``benchmarks/unroll.py``: 0.6x the time on a
            40-tensor MLP, 1.05x the memory on a 300k-weight one).
        frozen: what the inner loop does with parameters that have ``requires_grad=False``:
            ``"constant"`` (they stay at their value, as with ``torch.optim``) or ``"train"``.
        divergence: the rule that calls a trajectory diverged although its loss is finite
            (:class:`~hypergradient.core.divergence.Divergence`; ``None``: off).
        trace: run the model's forward traced to functional calls (:mod:`hypergradient.core.traced`:
            bitwise the module's values, without ``nn.Module.__call__`` per submodule) where it traces
            and a first call matched the module; ``False``: always call the module (e.g. a forward
            that reads Python state which changes between calls). ``problem.diagnostics()`` says which.
    """

    val_mode: str = "train"
    seed: int = 0
    check_finite: bool = True
    layout: str = "auto"
    frozen: str = "constant"
    divergence: Divergence | None = field(default_factory=Divergence)
    trace: bool = True

    def __post_init__(self) -> None:
        if self.val_mode not in ("train", "eval"):
            raise ValueError(f"val_mode must be 'train' or 'eval', got {self.val_mode!r}")
        if self.frozen not in ("constant", "train"):
            raise ValueError(f"frozen must be 'constant' or 'train', got {self.frozen!r}")


# old flat keyword of InnerProblem / ProblemLearner -> (object, its field)
KEYWORDS = {"optimizer_values": ("hypers", "optimizer"), "hparams": ("hypers", "optimizer"),
            "model_hparams": ("hypers", "model"), "loss_hparams": ("hypers", "loss"),
            "hparam_modules": ("hypers", "modules"), "train_batches": ("data", "train"),
            "val_batches": ("data", "val"), "val_mode": ("settings", "val_mode"), "seed": ("settings", "seed"),
            "check_finite": ("settings", "check_finite"), "layout": ("settings", "layout")}
CLASSES = {"hypers": "Hypers", "data": "Data", "settings": "Settings"}
OPTIMIZER_KEYWORDS = "the optimizer's own keywords: hg.optim.sgd(lr=Hyper(0.1), momentum=0.9)"


def from_keywords(owner: str, keywords: dict[str, Any], hypers: Hypers | None, data: Data | None,
                  settings: Settings | None, *, need_data: bool = True) -> tuple[Hypers, Data | None, Settings]:
    """The objects from the old flat keywords (each with a DeprecationWarning naming its new place);
    ``TypeError`` for an unknown keyword, one given next to its object, or data where there is none
    (``need_data=False``: a learner, whose tasks give the data)."""
    unknown = sorted(set(keywords) - set(KEYWORDS))
    if unknown:
        raise TypeError(f"{owner}() got unexpected keyword arguments {unknown}")
    if not need_data and any(KEYWORDS[k][0] == "data" for k in keywords):
        raise TypeError(f"{owner} takes no data: each task gives its own (support and query)")
    groups: dict[str, dict[str, Any]] = {"hypers": {}, "data": {}, "settings": {}}
    for old, value in keywords.items():
        obj, name = KEYWORDS[old]
        new = f"{owner}(optimizer=hg.optim.sgd(lr=..., ...))" if name == "optimizer" else \
            f"{owner}({obj}={CLASSES[obj]}({name}=...))"
        warn(f"{owner}({old}=...)", new)
        groups[obj][name] = value
    given = {"hypers": hypers, "data": data, "settings": settings}
    for obj, fields_ in groups.items():
        if fields_ and given[obj] is not None:
            raise TypeError(f"{owner}: give {sorted(fields_)} inside {obj}={CLASSES[obj]}(...), not next to it")
    hypers = hypers if hypers is not None else Hypers(**groups["hypers"], warned="optimizer" in groups["hypers"])
    if data is None and need_data:
        if "train" not in groups["data"] or "val" not in groups["data"]:
            raise ValueError("give data=Data(train=..., val=...): the training batches (t -> batch, or a sequence) "
                             "and the validation batch")
        data = Data(**groups["data"])
    settings = settings if settings is not None else Settings(**groups["settings"])
    return hypers, data, settings


class HparamsView(Mapping[str, Any]):
    """λ read by hyperparameter name, in the constrained space: ``view["lr"]`` is the learning rate
    (a tensor; ``{parameter name: tensor or float}`` where it differs between weights: per group,
    per tensor, element-wise; the K values of a schedule; the float of a constant), ``view["l2"]`` a loss hyperparameter, ``view["mwn"]`` a
    hyperparameter module as a function, ``view["body.0.weight"]`` a model part."""

    def __init__(self, spec: HyperSpec, lam: HparamsLike):
        self._spec, self._lam = spec, lam
        self._loss = spec.view(lam)

    def _names(self) -> list[str]:
        return list(self._spec.optimizer.hparam_names) + list(self._loss.keys()) + list(self._spec.model)

    def __getitem__(self, name: str) -> Any:
        spec = self._spec
        if name in spec.optimizer.hparam_names:
            if f"optim.{name}" in spec.leaves and len(spec.leaves[f"optim.{name}"][2]) == len(spec.param_names):
                return spec.value(self._lam, f"optim.{name}")
            if name in spec.constants:
                return spec.constants[name]
            per: dict[str, Any] = dict(spec.const_by_weight[name])         # weight -> value (constants, then leaves)
            for key, (n, _, ps) in spec.leaves.items():
                if n == name:
                    per.update({p: spec.value(self._lam, key) for p in ps})
            return {p: per[p] for p in spec.param_names}
        if name in self._loss:
            return self._loss[name]
        if name in spec.model:
            return self._lam[f"model.{name}"]
        raise KeyError(f"no hyperparameter {name!r}; known: {self._names()}")

    def __iter__(self) -> Iterator[str]:
        return iter(self._names())

    def __len__(self) -> int:
        return len(self._names())
