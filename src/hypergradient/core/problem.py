"""The inner problem and the one-step map Φ; the primitives every estimator uses come from
:mod:`hypergradient.core.primitives`.

Inner dynamics ``s_t = Φ(s_{t-1}, λ; D_t)`` where the state s = (w, optimizer state) (ALGORITHMS.md
§0). Estimators touch Φ only through:

* :meth:`InnerProblem.step`      — s_t from s_{t-1} (optionally keeping autograd's graph);
* :meth:`InnerProblem.unroll`    — s_{t+n} from s_t through n steps, keeping the graph (flat layout);
* the primitives (``vjp``, ``vjp_through``, ``jvp``, ``hvp``, ``step_hvp``, ``mixed_vjp``, ``val_grad``).

:attr:`InnerProblem.cost` counts every primitive spent; each primitive counts itself. The problem is
built from :class:`~hypergradient.core.inputs.Hypers`, :class:`~hypergradient.core.inputs.Data` and
:class:`~hypergradient.core.inputs.Settings`; its pre-flight probe (:meth:`InnerProblem.unused_hparams`)
catches losses that do not use the inner weights before any work.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import math
from typing import Any, Callable, Iterator, Mapping, Sequence, cast

import torch
from torch import nn

from .autograd import grad_or_zero
from .batches import leaves, stream
from .deprecation import warn
from .divergence import Monitor
from .flat import FlatLayout
from .functional import Forward, FunctionalModel, select, uncompiled
from .groups import resolve_groups
from .hyper import HyperSpec
from .inputs import OPTIMIZER_KEYWORDS, Data, HparamsView, Hypers, Settings, from_keywords
from .optimizer import Optimizer, get_optimizer
from .primitives import Primitives, check_scalar
from .probe import Probe
from . import results
from .state import Cost, DivergenceError, State
from .types import Batch, HparamsLike, TrainGrad

__all__ = ["InnerProblem", "State", "Cost", "DivergenceError"]


LAYOUTS = ("auto", "flat", "tensors")
FLAT_MAX_MEAN = 16384  # "auto" takes the flat layout up to this mean number of elements per weight tensor


def _seed(base: int, t: int, tag: str) -> int:
    return int.from_bytes(hashlib.blake2b(f"{base}:{t}:{tag}".encode(), digest_size=6).digest(), "little")


class InnerProblem(Primitives, Probe):
    """Everything an estimator needs: model, losses, optimizer, hyperparameters and data.

    Args:
        model: any ``nn.Module`` (never modified).
        train_loss: ``train_loss(f, batch, hp) -> scalar``; ``f(x)`` runs the model at the current
            weights (``f.params`` are the inner weights), ``hp[name]`` gives a loss hyperparameter.
        val_loss: same signature, evaluated on validation batches.
        optimizer: an :class:`hypergradient.core.optimizer.Optimizer` carrying its hyperparameters,
            options and param groups (``hg.optim.sgd(lr=Hyper(0.1, "tensor"), momentum=0.9)``), or a
            registry name (``"sgd"``, ``"adam"``, ...: its defaults).
        hypers: what else λ holds (:class:`~hypergradient.core.inputs.Hypers`: model parts, loss
            hyperparameters, hyperparameter modules).
        data: the training and validation batches (:class:`~hypergradient.core.inputs.Data`).
        horizon: T, the default number of inner steps (needed by schedules).
        settings: validation mode, dropout seed, finiteness check, weight layout
            (:class:`~hypergradient.core.inputs.Settings`).

    The flat keywords of 0.2 (``optimizer_values=``, ``train_batches=``, ``loss_hparams=``, ...) still
    work for one minor version, with a DeprecationWarning naming their place.
    """

    def __init__(self, model: nn.Module, train_loss: Callable, val_loss: Callable,
                 optimizer: str | Optimizer = "sgd", hypers: Hypers | None = None, data: Data | None = None,
                 *, horizon: int | None = None, settings: Settings | None = None,
                 optimizer_options: Mapping | None = None, **keywords: Any) -> None:
        if not callable(train_loss) or not callable(val_loss):
            raise TypeError("train_loss and val_loss must be callables (f, batch, hp) -> scalar tensor")
        if optimizer_options is not None:
            warn("InnerProblem(optimizer_options=...)", "InnerProblem(optimizer=get_optimizer(name, **options)) "
                 "or an optimizer instance such as hg.optim.SGD(nesterov=True)")
        hypers, given, settings = from_keywords("InnerProblem", keywords, hypers, data, settings)
        data = cast(Data, given)   # from_keywords raises when there is none
        if horizon is not None and (not isinstance(horizon, int) or horizon < 1):
            raise ValueError(f"horizon must be a positive int, got {horizon!r}")
        model = uncompiled(model)    # torch.compile's wrapper: the module inside, with a warning (functional.py)
        self.fmodel = FunctionalModel(model, trace=settings.trace)
        self.module = model          # the user's module: module_at / learned return copies of it, never it
        all_params = self.fmodel.parameters(model)
        if not all_params:
            raise ValueError(f"the model ({type(model).__name__}) has no parameters, so there is nothing for the "
                             "inner loop to train; give a module with parameters (nn.Linear, ...)")
        lam_names = select(self.fmodel.names, hypers.model)
        # parameters with requires_grad=False are constants, as torch.optim leaves them (unless they are λ or
        # Settings(frozen="train") asks for them to be trained)
        frozen = {n for n, p in model.named_parameters() if not p.requires_grad} - set(lam_names)
        if settings.frozen == "train":
            frozen = set()
        self._frozen = {n: all_params[n] for n in self.fmodel.names if n in frozen}
        self.names = tuple(n for n in self.fmodel.names if n not in lam_names and n not in frozen)
        if not self.names:
            raise ValueError("nothing is left for the inner loop to train: every model parameter is a "
                             "hyperparameter (narrow Hypers(model=...)) or frozen with requires_grad=False "
                             "(unfreeze it, or Settings(frozen='train'))")
        self._w0 = tuple(all_params[n] for n in self.names)
        self._buffers0 = self.fmodel.buffers(model)
        self.dtype = self._w0[0].dtype
        self.device = self._w0[0].device
        self.optimizer = get_optimizer(optimizer, **dict(optimizer_options or {}))
        if hypers.optimizer:
            if not hypers.warned:
                warn("Hypers(optimizer={...})", OPTIMIZER_KEYWORDS)
            self.optimizer = self.optimizer.with_values(hypers.optimizer)
        named = dict(model.named_parameters())
        groups = None if self.optimizer.groups is None else resolve_groups(self.optimizer.groups, named, self.names)
        self.spec = HyperSpec(
            self.optimizer, self.names, {n: all_params[n].shape for n in self.names}, groups=groups,
            model={n: all_params[n] for n in lam_names}, loss=hypers.loss, modules=hypers.modules,
            horizon=horizon, dtype=self.dtype, device=self.device)
        self.train_loss, self.val_loss = train_loss, val_loss
        self.hypers, self.data, self.settings = hypers, data, settings
        self._train = stream(data.train, "Data.train")
        val = data.val
        self._val = val if callable(val) else (lambda t: val)
        self.horizon, self.val_mode, self.seed = horizon, settings.val_mode, settings.seed
        self.check_finite = settings.check_finite
        self.cost = Cost()
        self.layout = self._layout(settings.layout)  # a FlatLayout where Φ runs on one flat buffer (see unroll)
        self.divergence = settings.divergence
        self.on_divergence = "raise"             # what run / unroll do on a diverged trajectory (divergence_mode)
        self.divergences: list[dict[str, Any]] = []   # the trajectories recorded as diverged ("record" mode)
        self.last_step_loss: float | None = None      # L_train of the last step taken (step, step_hvp, jvp)
        self.tasks = 1          # tasks this problem sums over (a vectorized meta-batch: core.stacked, B)
        self._loss: float | None = None
        self._unused: dict[tuple, list[str]] = {}
        self._val_unreached: dict[tuple, list[str]] = {}

    def with_data(self, data: Data) -> "InnerProblem":
        """The same problem — model, losses, optimizer, λ's structure, settings, horizon: shared, not
        rebuilt — on other data (a meta-learner's next task), with its own cost counter and divergence
        records; no copy of the model. The probe's answers are about the losses' structure: shared."""
        if not isinstance(data, Data):
            raise TypeError(f"with_data takes a hypergradient Data(train=..., val=...), got {type(data).__name__}")
        new = copy.copy(self)
        new.data = data
        new._train = stream(data.train, "Data.train")
        val = data.val
        new._val = val if callable(val) else (lambda t: val)
        new.cost = Cost()
        new.on_divergence, new.divergences, new.last_step_loss, new._loss = "raise", [], None, None
        return new

    # ---- divergence (core/divergence.py) ---------------------------------------------------------------
    def _monitor(self) -> Monitor | None:
        return None if self.divergence is None else Monitor(self.divergence)

    def watcher(self) -> Callable[[int], None]:
        """For an estimator that takes a trajectory's steps itself (forward mode, the online methods
        run offline): call the result after each step t; it applies the divergence rule to the step's
        training loss like :meth:`run` does (raise, or record under ``divergence_mode("record")``)."""
        monitor = self._monitor()
        return lambda t: self._watch(monitor, t, self.last_step_loss)

    def _watch(self, monitor: Monitor | None, t: int, loss: float | None = None) -> None:
        """Apply the divergence rule after step t: raise :class:`DivergenceError`, or record it."""
        loss = self._loss if loss is None else loss
        if monitor is None or loss is None or not monitor.update(loss):
            return
        if self.on_divergence == "raise":
            raise DivergenceError(monitor.why(t))
        if not monitor.reported:                  # one event per trajectory: its first diverged step
            monitor.reported = True
            self.divergences.append({"t": t, "mean": monitor.mean, "first": monitor.first})

    @contextlib.contextmanager
    def divergence_mode(self, mode: str) -> Iterator[list[dict[str, Any]]]:
        """Within the block, a diverged trajectory of :meth:`run` / :meth:`unroll` is ``"raise"``-d (the
        default) or ``"record"``-ed: the yielded list receives one event per diverged trajectory
        (its first diverged step ``t``, the running mean, the first loss) and the run goes on."""
        if mode not in ("raise", "record"):
            raise ValueError(f"divergence mode must be 'raise' or 'record', got {mode!r}")
        old, self.on_divergence = self.on_divergence, mode
        start = len(self.divergences)
        events: list[dict[str, Any]] = []
        try:
            yield events
        finally:
            self.on_divergence = old
            events.extend(self.divergences[start:])
            del self.divergences[start:]

    def hparams_view(self, hparams: HparamsLike) -> HparamsView:
        """λ by hyperparameter name, constrained: ``problem.hparams_view(lam)["lr"]`` (see
        :class:`~hypergradient.core.inputs.HparamsView`)."""
        return HparamsView(self.spec, hparams)

    @property
    def hparams(self) -> HyperSpec:
        """Deprecated name of :attr:`spec` ('hparams' names the λ dict only)."""
        warn("problem.hparams", "problem.spec")
        return self.spec

    def diagnostics(self) -> dict[str, Any]:
        """How this problem runs: ``layout`` (``"flat"`` or ``"tensors"``), ``forward`` per mode (``"traced"``
        or ``"module: <why>"``: ``FunctionalModel.forward_path``), ``optimizer``, the number of inner weights."""
        return {"layout": "flat" if self.layout is not None else "tensors",
                "forward": {mode: self.fmodel.forward_path(mode == "train") for mode in ("train", "eval")},
                "optimizer": repr(self.optimizer), "inner weights": sum(p.numel() for p in self._w0)}

    # ---- set-up -------------------------------------------------------------------------------------
    def _layout(self, layout: str) -> FlatLayout | None:
        if layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
        able = self.optimizer.elementwise and all(p.dtype == self.dtype and p.device == self.device for p in self._w0)
        if layout == "flat" and not able:
            raise ValueError(f"layout='flat' needs an elementwise optimizer ({type(self.optimizer).__name__}"
                             f".elementwise is {self.optimizer.elementwise}) and weights of one dtype and device; "
                             "use layout='tensors' or 'auto'")
        small = sum(p.numel() for p in self._w0) <= FLAT_MAX_MEAN * len(self._w0)
        if layout == "tensors" or not able or (layout == "auto" and not small):
            return None
        return FlatLayout([p.shape for p in self._w0], self.dtype, self.device)

    def init_hparams(self) -> dict[str, torch.Tensor]:
        """Fresh raw leaves of λ (see :mod:`hypergradient.core.hyper` for the keys)."""
        return self.spec.init()

    def init_state(self, params: Mapping[str, torch.Tensor] | Sequence[torch.Tensor] | None = None) -> State:
        """s_0: the module's weights (or ``params``), a fresh optimizer state, the module's buffers."""
        if params is None:
            w = tuple(p.clone() for p in self._w0)
        else:
            if isinstance(params, Mapping):
                missing = set(self.names) - set(params)
                if missing:
                    raise ValueError(f"initial weights miss {sorted(missing)}")
                params = [params[n] for n in self.names]
            w = tuple(self._initial(i, x) for i, x in enumerate(params))
        return State(w, self.optimizer.init(w), self._initial_buffers(), 0)

    def _initial(self, i: int, x: torch.Tensor) -> torch.Tensor:
        """The i-th initial weight from a given tensor (a copy, checked against the module's shape)."""
        a = x.detach().clone()
        if a.shape != self._w0[i].shape:
            raise ValueError(f"initial weight {self.names[i]!r} has shape {tuple(a.shape)}, expected "
                             f"{tuple(self._w0[i].shape)}")
        return a

    def _initial_buffers(self) -> dict[str, torch.Tensor]:
        return dict(self._buffers0)

    def params_dict(self, state: State) -> dict[str, torch.Tensor]:
        """The inner weights of ``state`` by parameter name."""
        return dict(zip(self.names, state.params))

    # ---- results out (core/results.py) ----------------------------------------------------------------
    def final_state(self, lam: HparamsLike, T: int | None = None) -> State:
        """s_T: T inner steps (default: the horizon) from s_0 with λ, without a graph."""
        return self.run(self.init_state(), {k: v.detach() for k, v in lam.items()}, self.horizon_or(T))[0]

    def module_at(self, state: State, lam: HparamsLike | None = None) -> nn.Module:
        """A copy of the user's module holding ``state``'s weights and buffers (:func:`results.module_at`)."""
        return results.module_at(self, state, lam)

    def learned(self, lam: HparamsLike) -> dict[str, Any]:
        """λ by hyperparameter name as plain values: floats, schedules as lists, modules as modules
        (:func:`results.learned`)."""
        return results.learned(self, lam)

    def horizon_or(self, T: int | None) -> int:
        T = T if T is not None else self.horizon
        if T is None:
            raise ValueError("give the number of inner steps T (or InnerProblem(horizon=T))")
        if not isinstance(T, int) or isinstance(T, bool) or T < 1:
            raise ValueError(f"the number of inner steps T must be a positive int, got {T!r}")
        if self.horizon is not None and T != self.horizon and self.spec.scheduled():
            raise ValueError(f"schedules were built for horizon {self.horizon}; T={T} differs")
        return T

    # ---- losses -------------------------------------------------------------------------------------
    def _forward(self, params: Sequence[torch.Tensor], lam: HparamsLike, buffers: Mapping[str, torch.Tensor],
                 training: bool, seed: int | None) -> Forward:
        parts = {**self._frozen, **self.spec.model_values(lam)} if self._frozen else self.spec.model_values(lam)
        return Forward(self.fmodel, dict(zip(self.names, params)), parts, cast(dict, buffers),
                       training, seed, self.device)

    def forward(self, state: State, lam: HparamsLike | None = None, *, training: bool = False) -> Forward:
        """The model at ``state``'s weights and buffers (and λ's model parts), as the losses see it:
        ``problem.forward(state, lam)(x)`` predicts (eval mode by default, no seed: for evaluation)."""
        if self.spec.model and lam is None:
            raise ValueError(f"the model's parts {sorted(self.spec.model)} are hyperparameters: give lam")
        return self._forward(state.params, lam or {}, state.buffers, training, None)

    def train_loss_at(self, state: State, lam: HparamsLike, t: int,
                      batch: Batch = None) -> tuple[torch.Tensor, Mapping[str, torch.Tensor]]:
        """L_train at state's weights on the batch of step t; returns (loss, new buffers)."""
        f = self._forward(state.params, lam, state.buffers, True, _seed(self.seed, t, "train"))
        loss = self.train_loss(f, self._train(t) if batch is None else batch, self.spec.view(lam))
        return loss, f.buffers

    def train_batch(self, t: int) -> Batch:
        """D_t: the training batch that step t uses (t = 1, 2, ...) unless ``batch=`` is given."""
        return self._train(t)

    def val_loss_at(self, state: State, lam: HparamsLike, t: int | None = None) -> torch.Tensor:
        """L_val(w, λ) at ``state``'s weights on the validation batch of step t (default: the state's)."""
        t = state.t if t is None else t
        f = self._forward(state.params, lam, state.buffers, self.val_mode == "train", _seed(self.seed, t, "val"))
        return self.val_loss(f, self._val(t), self.spec.view(lam))

    # ---- Φ ------------------------------------------------------------------------------------------
    def step(self, state: State, lam: HparamsLike, *, create_graph: bool = False, batch: Batch = None) -> State:
        """Φ: s_t = Φ(s_{t-1}, λ; D_t). With ``create_graph`` the result stays differentiable with
        respect to ``state`` and ``lam``; otherwise it is detached."""
        self.cost.steps += 1
        out = self._phi(state, lam, create_graph, batch)
        self.last_step_loss = self._loss
        return out

    def _train_grad(self, state: State, lam: HparamsLike, t: int, *, create_graph: bool, batch: Batch = None,
                    flat: bool = False) -> TrainGrad:
        """(params, ∇_w L_train, buffers) at state's weights on the batch of step t (or ``batch``):
        ``params`` are the differentiable weights the gradient was taken at (state's own when they
        already require grad). With ``flat`` the state is on :attr:`layout` (``params`` is one flat
        buffer, and so is the gradient). Raises :class:`DivergenceError` on a non-finite loss
        (``check_finite``) and ``ValueError`` for a loss that does not depend on w. The building block
        of the counted primitives (step, hvp, step_hvp, mixed_vjp); not a primitive itself."""
        params = tuple(p if p.requires_grad else p.detach().requires_grad_() for p in state.params)
        with torch.enable_grad():
            views = cast(FlatLayout, self.layout).unpack(params[0]) if flat else params
            loss, buffers = self.train_loss_at(state._replace(params=views), lam, t, batch)
            loss = check_scalar(loss, "train_loss")
            self._loss = loss.item() if self.check_finite or self.divergence is not None else None
            if self.check_finite and not math.isfinite(cast(float, self._loss)):
                bad = [x for x in leaves(self._train(t) if batch is None else batch)
                       if x.is_floating_point() and not bool(torch.isfinite(x).all())]
                if bad:
                    raise ValueError(f"the training batch of step {t} already holds NaN or inf values: the data is at "
                                     "fault, not the learning rate; clean or mask it before training")
                raise DivergenceError(f"the inner loop diverged at step {t} (training loss {loss.item()}); "
                                      "lower the learning rate or clip the hyperparameters")
            if not loss.requires_grad:
                raise ValueError("the training loss does not depend on the inner weights; train_loss must "
                                 "call f(x) (or use f.params)")
            grads = tuple(grad_or_zero(loss, params, create_graph=create_graph))
        return params, grads, buffers

    def _phi(self, state: State, lam: HparamsLike, create_graph: bool, batch: Batch = None, *, coef: Any = None,
             flat: bool = False) -> State:
        """Φ; ``coef`` are step t's optimizer coefficients when already resolved (required with
        ``flat``, where the state and ``coef`` are on :attr:`layout`)."""
        t = state.t + 1
        params, grads, buffers = self._train_grad(state, lam, t, create_graph=create_graph, batch=batch, flat=flat)
        if coef is None:
            coef = self.spec.coefficients(lam, t)
        if create_graph:
            new_p, new_opt = self.optimizer.apply(grads, state.opt, params, coef, t)
        else:
            with torch.no_grad():
                new_p, new_opt = self.optimizer.apply(grads, state.opt, state.params, coef, t)
        return State(tuple(new_p), new_opt, buffers, t)

    def unroll(self, state: State, lam: HparamsLike, n: int) -> State:
        """s_{t+n} from s_t = ``state`` by n applications of Φ keeping autograd's graph, as a function
        of ``state``'s tensors and ``lam``; counted as n steps.

        With a flat :attr:`layout` (argument ``layout``) the steps run on one buffer
        (:mod:`hypergradient.core.flat`): one op per optimizer operation for all weight tensors. Either
        way each step's optimizer hyperparameters (transforms, and spreading on the flat layout) are
        computed once per schedule window and shared by its steps. The flat result holds views into
        the flat buffers; the same values as n :meth:`step` calls up to the order of summation."""
        self.cost.steps += n
        return self._unroll(state, lam, n, self._monitor())

    def _unroll(self, state: State, lam: HparamsLike, n: int, monitor: Monitor | None = None) -> State:
        lay, coef = self.layout, {}

        def at(t: int) -> Any:
            key = self.spec.window(t)
            if key not in coef:
                v = self.spec.coefficients(lam, t)
                coef[key] = v if lay is None else lay.spread_coefficients(v)
            return coef[key]
        if lay is None:
            for _ in range(n):
                state = self._phi(state, lam, True, coef=at(state.t + 1))
                self._watch(monitor, state.t)
            return state
        s = State((lay.pack(state.params),), type(state.opt)(*lay.pack_fields(state.opt)), state.buffers, state.t)
        for _ in range(n):
            s = self._phi(s, lam, True, coef=at(s.t + 1), flat=True)
            self._watch(monitor, s.t)
        return State(lay.unpack(s.params[0]), type(s.opt)(*lay.unpack_fields(s.opt)), s.buffers, s.t)

    def run(self, state: State, lam: HparamsLike, T: int, *, create_graph: bool = False,
            keep: Callable[[int], bool] | None = None) -> tuple[State, dict[int, State]]:
        """Apply Φ T times from ``state``; returns (final state, {t: s_t for kept t})."""
        kept: dict[int, State] = {}
        if keep is not None and keep(state.t):
            kept[state.t] = state
        monitor = self._monitor()
        for _ in range(T):
            state = self.step(state, lam, create_graph=create_graph)
            self._watch(monitor, state.t)
            if keep is not None and keep(state.t):
                kept[state.t] = state
        return state, kept
