"""A meta-batch of B task problems as one inner problem (vectorized meta-batches, ALGORITHMS.md §11).

The tasks are independent: task b has weights w^b, its own data D_t^b and buffers, and shares λ. Stack
the weights (and the optimizer state, and the buffers) along a leading task axis, W = (w^1, …, w^B), and
take as the stacked problem's losses the *sums*

    L_train(W, λ; D_t) = Σ_b L_train^b(w^b, λ; D_t^b),      L_val(W, λ) = Σ_b L_val^b(w^b, λ).

Since w^b enters only the b-th term, ∂L_train/∂w^b = ∇_w L_train^b(w^b): one step of the stacked Φ is
the B task steps side by side (an elementwise optimizer acts on each slice alone; shared optimizer
coefficients broadcast over the task axis). The Jacobians A_t are block diagonal and B_t = (B_t^1; …;
B_t^B), so reverse (and forward) mode through the stacked loop gives

    dL_val/dλ = Σ_b dL_val^b/dλ                 (exactly: the sum of the per-task hypergradients),

and every estimator that is linear in the adjoint (rmd, truncated_rmd, online_rmd, one_step,
first_order, drmad: ``Estimator.vectorizable``) works on the stacked problem unchanged; the others
refuse it. ``problem.tasks`` = B is what the drivers divide by for the meta-batch mean. BatchNorm buffers stack like the weights (train-mode statistics per task).

The forward runs the per-task loss under ``torch.func.vmap`` over (weights, buffers, batch): each
task's batch is stacked on a leading axis (equal shapes), λ's model parts are not mapped (one body for
all tasks: one matmul over B·n rows instead of B). Dropout: all tasks must share the problems' seed
(one learner's Settings), and the random draws are the same for every task (``randomness="same"``),
which is what B sequential problems with that seed draw, so results do not depend on batching.

    stacked = stack_problems([learner.problem(task) for task in tasks])
    hg = estimate("rmd", stacked, lam, state=stacked.init_state(phi))   # hg.value = Σ_b hypergradients
    per_task = stacked.unstack_state(hg.state)
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence, cast

import torch
from torch.func import vmap
from torch.utils._pytree import tree_flatten, tree_map, tree_unflatten

from .functional import Forward, FunctionalModel
from .inputs import Data
from .primitives import check_scalar
from .problem import InnerProblem
from .state import Cost, State
from .types import Batch, HparamsLike

__all__ = ["StackedProblem", "StackedForward", "stack_problems"]

def _stack(items: Sequence[Any], where: str) -> Any:
    """The per-task batches (or buffers) ``items`` stacked on a leading task axis, leaf by leaf."""
    first = items[0]
    if isinstance(first, torch.Tensor):
        for b, x in enumerate(items):
            if not isinstance(x, torch.Tensor) or x.shape != first.shape:
                got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
                raise ValueError(f"{where}: task {b} has shape {got} but task 0 has {tuple(first.shape)}; a "
                                 "vectorized meta-batch needs batches of equal shapes (same shots and query size)")
        return torch.stack(list(items))
    if isinstance(first, Mapping):
        return {k: _stack([x[k] for x in items], f"{where}[{k!r}]") for k in first}
    if isinstance(first, (tuple, list)):
        if any(not isinstance(x, (tuple, list)) or len(x) != len(first) for x in items):
            raise ValueError(f"{where}: the tasks' batches have different structures")
        return type(first)(_stack([x[i] for x in items], f"{where}[{i}]") for i in range(len(first)))
    if any(x != first for x in items):
        raise ValueError(f"{where}: the tasks' batches differ in a non-tensor entry ({first!r} vs others)")
    return first


def _dims(tree: Any) -> Any:
    """vmap's ``in_dims`` for a batch: 0 for its tensors (stacked), None for anything else (shared)."""
    if isinstance(tree, torch.Tensor):
        return 0
    if isinstance(tree, Mapping):
        return {k: _dims(v) for k, v in tree.items()}
    if isinstance(tree, (tuple, list)):
        return type(tree)(_dims(v) for v in tree)
    return None


class StackedForward(Forward):
    """``f`` of a stacked problem: ``f.params`` / ``f.buffers`` carry the leading task axis. ``f(x)``
    runs the model of every task on its slice of ``x`` (leading axis B) under vmap; :meth:`total` is
    Σ_b loss(f^b, batch^b, hp), the per-task loss run under vmap (what the stacked losses call)."""

    __slots__ = ("randomness",)

    def __init__(self, fm: FunctionalModel, params: Mapping[str, torch.Tensor], hparams: Mapping[str, torch.Tensor],
                 buffers: Mapping[str, torch.Tensor], training: bool, seed: int | None, device: torch.device):
        super().__init__(fm, params, hparams, buffers, training, seed, device)
        # a seeded draw is the same for every task (as B sequential problems with one seed draw it)
        self.randomness = "different" if seed is None else "same"

    def _task(self, p: Mapping[str, torch.Tensor], b: Mapping[str, torch.Tensor], seed: int | None) -> Forward:
        return Forward(self._fm, p, self.hparams, b, self.training, seed, self._device)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        seed = None if self._seed is None else self._seed + 7919 * self._calls   # as Forward numbers its calls
        self._calls += 1

        def one(p: Any, b: Any, a: Any, kw: Any) -> tuple[Any, Any]:
            f = self._task(p, b, seed)
            return f(*a, **kw), f.buffers
        dims = (0, 0, _dims(args), _dims(kwargs))
        out, self.buffers = vmap(one, in_dims=dims, randomness=self.randomness)(self.params, self.buffers, args, kwargs)
        return out

    def total(self, loss: Callable, batch: Batch, hp: Any, name: str) -> torch.Tensor:
        """Σ_b loss(f^b, batch^b, hp): each task's loss on its slice; the new buffers go to ``self.buffers``.

        vmap is handed a flat list of tensors (its pytree handling of nested inputs costs as much as a
        small model's arithmetic): the weights, the buffers and the batch's tensor leaves, rebuilt inside."""
        pn, bn = tuple(self.params), tuple(self.buffers)
        if self._fm.unchecked(self.training):
            self._check_trace(loss, batch, hp)
        leaves, spec = tree_flatten(batch)
        mapped = tuple(i for i, x in enumerate(leaves) if isinstance(x, torch.Tensor))

        n_p, n_b = len(pn), len(bn)

        def one(*xs: torch.Tensor) -> tuple[torch.Tensor, tuple]:
            items = list(leaves)
            for i, x in zip(mapped, xs[n_p + n_b:]):
                items[i] = x
            f = self._task(dict(zip(pn, xs[:n_p])), dict(zip(bn, xs[n_p:n_p + n_b])), self._seed)
            out = check_scalar(loss(f, tree_unflatten(items, spec), hp), name)
            return out, tuple(f.buffers[k] for k in bn)
        losses, new = vmap(one, randomness=self.randomness)(
            *self.params.values(), *self.buffers.values(), *(leaves[i] for i in mapped))
        self.buffers = dict(zip(bn, new))
        return losses.sum()


    def _check_trace(self, loss: Callable, batch: Batch, hp: Any) -> None:
        """Task 0's loss once outside vmap, without a graph and from a forked random state: the call
        on which the functional model checks its traced forward (core/traced.py), which it cannot do
        under vmap."""
        first = lambda tree: tree_map(lambda x: x[0] if isinstance(x, torch.Tensor) else x, tree)  # noqa: E731
        cuda = [self._device.index or 0] if self._device.type == "cuda" else []
        with torch.no_grad(), torch.random.fork_rng(devices=cuda):
            loss(self._task(first(self.params), first(self.buffers), self._seed), first(batch), hp)


class StackedProblem(InnerProblem):
    """B task problems as one (module docstring): inner weights, optimizer state and buffers with a
    leading task axis B; L_train and L_val the sums over tasks; shared λ. Built by :func:`stack_problems`.

    Every primitive (step, unroll, vjp, jvp, hvp, val_grad) is the parent's, on stacked tensors. The
    hypergradient of an estimator in :data:`VECTORIZABLE` is Σ_b of the per-task ones and its
    ``val_loss`` is Σ_b L_val^b: divide by :attr:`B`. The divergence rule and the finiteness check see
    the summed training loss (a task's non-finite loss makes the sum non-finite)."""

    def __init__(self, problems: Sequence[InnerProblem]) -> None:
        problems = list(problems)
        _check_alike(problems)
        p0 = problems[0]
        self.__dict__.update(p0.__dict__)             # the shared configuration (model, spec, optimizer, settings)
        self.problems, self.B = tuple(problems), len(problems)
        self.tasks = self.B             # the meta-batch mean divides the summed hypergradient by this
        starts = [p.init_state() for p in problems]
        self._w0 = tuple(torch.stack([s.params[i] for s in starts]) for i in range(len(self.names)))
        self._buffers0 = cast(dict, _stack([s.buffers for s in starts], "buffers"))
        self.train_loss = self._summed(p0.train_loss, "train_loss")
        self.val_loss = self._summed(p0.val_loss, "val_loss")
        self._train = self._train_batch
        val = [p.data.val for p in problems]
        fixed = None if any(callable(v) for v in val) else _stack(val, "the validation batch")
        self._val = (lambda t: fixed) if fixed is not None else self._val_batch
        self.data = Data(self._train, self._val)
        self._cache: tuple[list[int], list[Any], Any] | None = None
        self.cost = Cost()
        self.layout = self._layout(self.settings.layout)
        self.on_divergence, self.divergences = "raise", []
        self.last_step_loss, self._loss = None, None
        # the probe's answers are the per-task problems' (one learner's, checked alike): share their cache
        self._unused, self._val_unreached = p0._unused, p0._val_unreached

    # ---- data: each task's batch of step t, stacked --------------------------------------------------
    def _train_batch(self, t: int) -> Batch:
        items = [p.train_batch(t) for p in self.problems]
        ids = [id(x) for x in items]
        if self._cache is not None and self._cache[0] == ids:   # the same per-task batch objects: stack once
            return self._cache[2]
        out = _stack(items, f"the training batch of step {t}")
        self._cache = (ids, items, out)                          # (items keep the ids alive)
        return out

    def _val_batch(self, t: int) -> Batch:
        return _stack([v(t) if callable(v) else v for v in (p.data.val for p in self.problems)],
                      f"the validation batch of step {t}")

    def _summed(self, loss: Callable, name: str) -> Callable:
        def total(f: Forward, batch: Batch, hp: Any) -> torch.Tensor:
            return cast(StackedForward, f).total(loss, batch, hp, name)
        return total

    def _forward(self, params: Sequence[torch.Tensor], lam: HparamsLike, buffers: Mapping[str, torch.Tensor],
                 training: bool, seed: int | None) -> Forward:
        parts = {**self._frozen, **self.spec.model_values(lam)} if self._frozen else self.spec.model_values(lam)
        return StackedForward(self.fmodel, dict(zip(self.names, params)), parts, buffers, training, seed, self.device)

    # ---- states ------------------------------------------------------------------------------------
    def _initial(self, i: int, x: torch.Tensor) -> torch.Tensor:
        """``init_state``'s i-th weight with the task axis: given shared (the per-task shape: φ broadcast
        to B copies) or stacked (B, ...)."""
        n, full = self.names[i], self._w0[i].shape
        if x.shape == full:
            return x.detach().clone()
        if x.shape == full[1:]:
            return x.detach().expand(full).clone()                 # a shared φ: B copies
        raise ValueError(f"initial weight {n!r} has shape {tuple(x.shape)}; expected {tuple(full[1:])} (shared by "
                         f"the tasks) or {tuple(full)} (one per task)")

    def _initial_buffers(self) -> dict[str, torch.Tensor]:
        return {k: v.clone() for k, v in self._buffers0.items()}

    def stack_states(self, states: Sequence[State]) -> State:
        """One stacked state from B per-task states (of one step t)."""
        if len(states) != self.B or len({s.t for s in states}) != 1:
            raise ValueError(f"stack_states needs {self.B} states of one step t, got {len(states)} at "
                             f"{sorted({s.t for s in states})}")
        flat = [torch.stack(list(xs)) for xs in zip(*(s.tensors() for s in states))]
        return states[0].with_tensors(flat)._replace(buffers=_stack([s.buffers for s in states], "buffers"))

    def unstack_state(self, state: State) -> list[State]:
        """The B per-task states of a stacked state (views into its tensors)."""
        for x in [*state.tensors(), *state.buffers.values()]:
            if x.dim() < 1 or x.shape[0] != self.B:
                raise ValueError(f"a state tensor of shape {tuple(x.shape)} has no leading task axis of {self.B}")
        return [state.with_tensors([x[b] for x in state.tensors()])._replace(
            buffers={k: v[b] for k, v in state.buffers.items()}) for b in range(self.B)]


def stack_problems(problems: Sequence[InnerProblem]) -> StackedProblem:
    """B task problems (one learner's: same model, λ, weights, optimizer, horizon, losses, settings) as
    one :class:`StackedProblem` (ALGORITHMS.md §11); ValueError naming the first mismatch."""
    return StackedProblem(problems)


def _check_alike(problems: list[InnerProblem]) -> None:
    if not problems:
        raise ValueError("stack_problems needs at least one task problem")
    for b, p in enumerate(problems):
        if not isinstance(p, InnerProblem) or isinstance(p, StackedProblem):
            raise TypeError(f"stack_problems takes InnerProblems (not stacked ones); task {b} is {type(p).__name__}")
    p0 = problems[0]
    if p0.optimizer.clip or not p0.optimizer.elementwise:
        why = "clip transforms see all tasks' gradients at once" if p0.optimizer.clip else \
            f"{type(p0.optimizer).__name__} is not elementwise (its update may reduce over a tensor)"
        raise ValueError(f"a vectorized meta-batch needs an elementwise optimizer without clip transforms: {why}, "
                         "which would couple the tasks; run the meta-batch sequentially")

    def facts(p: InnerProblem) -> dict[str, Any]:
        s = p.init_state()
        return {
            "model": repr(p.fmodel._skeleton), "inner weights": p.names,
            "weight shapes": [tuple(x.shape) for x in s.params],
            "buffers": {k: (tuple(v.shape), v.dtype) for k, v in s.buffers.items()},
            "hyperparameters (λ keys and shapes)": {k: tuple(v.shape) for k, v in p.init_hparams().items()},
            "optimizer": repr(p.optimizer), "horizon": p.horizon, "train_loss": p.train_loss,
            "val_loss": p.val_loss, "settings": (p.settings.val_mode, p.settings.check_finite, p.settings.layout,
                                                  p.settings.divergence),
            "seed (dropout draws must not depend on batching)": p.seed, "dtype and device": (p.dtype, p.device),
            "frozen parameters": sorted(p._frozen)}
    ref = facts(p0)
    for b, p in enumerate(problems[1:], 1):
        got = facts(p)
        for what, v in ref.items():
            if got[what] != v:
                raise ValueError(f"task {b}'s problem differs from task 0's in its {what}: {got[what]!r} vs {v!r}; "
                                 "a vectorized meta-batch needs the problems of one learner")
        if any(not torch.equal(p._frozen[n], x) for n, x in p0._frozen.items()):
            raise ValueError(f"task {b}'s frozen parameters differ from task 0's")
