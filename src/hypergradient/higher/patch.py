"""``higher.patch``: any ``nn.Module`` as a "stateless" copy whose weights are the fast weights.

The patched copy shares the module's code and structure, not its tensors: every submodule is a
shallow copy whose ``_parameters`` hold the current fast weights (plain tensors, so they carry the
inner loop's graph) and whose buffers are its own clones (BatchNorm statistics evolve inside the
copy). Because the fast weights sit where the module reads its weights, calling the copy, or any of
its submodules directly, uses them; tied weights (one tensor under several names) and shared
submodules stay tied; RNN / LSTM / GRU refresh their flat weight lists. The fast weights are kept as a
history (``parameters(time=t)``) while tracking higher-order gradients, as higher does.
"""

from __future__ import annotations

import copy
from typing import Any, Callable, Iterable, Iterator, Sequence

import torch
from torch import nn

__all__ = ["monkeypatch", "make_functional", "buffer_sync", "PatchedModule"]


class PatchedModule:
    """Mixed into the class of a patched copy (``isinstance(fmodel, type(module))`` still holds).

    ``fmodel(x, params=[...])`` runs with ``params`` (positional, in ``module.named_parameters()``
    order) as the new current fast weights; ``parameters(time=t)`` is the history (t = 0 the initial
    weights; IndexError outside it, negative indices from the end, as higher); ``fast_params`` gets the
    current ones and sets new ones (appended to the history while tracking, replacing it otherwise)."""

    _hg_slots: list[list[tuple[nn.Module, str]]]   # per fast weight: where it lives (every alias)
    _hg_rnns: list[nn.Module]
    _hg_history: list[list[torch.Tensor]]
    _hg_track: bool

    def forward(self, *args: Any, params: Sequence[torch.Tensor] | None = None, **kwargs: Any) -> Any:
        if params is not None:
            self.fast_params = list(params)
        elif not self._hg_history:
            raise ValueError("this functional module has no weights yet: call it with params=[...] "
                             "(in module.named_parameters() order)")
        return super().forward(*args, **kwargs)  # type: ignore[misc]

    def parameters(self, time: int | None = None) -> Iterator[torch.Tensor]:
        if not self._hg_history:
            return iter(())
        if time is None:
            return iter(self._hg_history[-1])
        if not self._hg_track and time not in (0, -1):
            raise ValueError("no history of fast weights is kept with track_higher_grads=False; only the "
                             "current ones (time=0 or -1)")
        return iter(self._hg_history[time])

    @property
    def fast_params(self) -> list[torch.Tensor] | None:
        return list(self._hg_history[-1]) if self._hg_history else None

    @fast_params.setter
    def fast_params(self, value: Iterable[torch.Tensor]) -> None:
        params = list(value)
        if len(params) != len(self._hg_slots):
            raise ValueError(f"expected {len(self._hg_slots)} fast weights (module.named_parameters() order), "
                             f"got {len(params)}")
        if self._hg_track:
            self._hg_history.append(params)
        else:
            self._hg_history = [params]
        for p, slots in zip(params, self._hg_slots):
            for sub, name in slots:
                sub._parameters[name] = p  # type: ignore[assignment]
        for rnn in self._hg_rnns:
            rnn._init_flat_weights()  # type: ignore[operator]

    @property
    def init_fast_params(self) -> list[torch.Tensor] | None:
        return list(self._hg_history[0]) if self._hg_history else None

    @property
    def track_higher_grads(self) -> bool:
        return self._hg_track

    @track_higher_grads.setter
    def track_higher_grads(self, value: bool) -> None:
        if not isinstance(value, bool):
            raise ValueError(f"track_higher_grads must be a bool, got {value!r}")
        self._hg_track = value

    def start_window(self) -> None:
        """Truncated back-propagation: the current fast weights, detached (still requiring grad where
        they did), become time 0 of a new history; the graph to the older ones is released. With
        ``diffopt.detach_()`` the optimizer state is cut the same way and the inner loop goes on."""
        current = self._hg_history[-1] if self._hg_history else []
        self._hg_history = []
        track, self._hg_track = self._hg_track, True
        self.fast_params = [p.detach().requires_grad_(p.requires_grad) for p in current]
        self._hg_track = track


_CLASSES: dict[type, type] = {}   # one patched class per module class (a class per context would pile up)


def _patched_class(cls: type) -> type:
    if cls not in _CLASSES:
        _CLASSES[cls] = type(f"Functional{cls.__name__}", (PatchedModule, cls), {})
    return _CLASSES[cls]


def _copy_tree(module: nn.Module, device: torch.device | str | None) -> tuple[nn.Module, dict[int, nn.Module]]:
    """Shallow copies of ``module`` and its submodules (shared ones copied once), with cloned buffers
    and empty parameter slots; returns (root copy, id(original) -> copy)."""
    memo: dict[int, nn.Module] = {}

    def visit(m: nn.Module) -> nn.Module:
        if id(m) in memo:
            return memo[id(m)]
        c = copy.copy(m)
        memo[id(m)] = c
        c._parameters = dict.fromkeys(m._parameters)
        c._buffers = {n: None if b is None else b.detach().clone().to(device or b.device)
                      for n, b in m._buffers.items()}
        c._modules = {n: None if s is None else visit(s) for n, s in m._modules.items()}
        return c
    return visit(module), memo


def make_functional(module: nn.Module, encapsulator: Callable[[Any, nn.Module], None] | None = None,
                    *, device: torch.device | str | None = None, track_higher_grads: bool = True) -> Any:
    """A stateless version of ``module``: calls take ``params=[...]`` (until fast weights are set);
    ``encapsulator(fmodule, module)``, when given, sets it up (as :func:`monkeypatch` does)."""
    root, memo = _copy_tree(module, device)
    root.__class__ = _patched_class(type(module))
    slots: dict[int, list[tuple[nn.Module, str]]] = {}
    order: list[int] = []
    for name, sub in module.named_modules(remove_duplicate=False):
        for pname, p in sub._parameters.items():
            if p is None:
                continue
            if id(p) not in slots:
                slots[id(p)] = []
            slots[id(p)].append((memo[id(sub)], pname))
    for p in module.parameters():          # named_parameters() order, one entry per tied tensor
        order.append(id(p))
    fm: Any = root
    fm._hg_slots = [slots[i] for i in order]
    fm._hg_rnns = [c for c in memo.values() if isinstance(c, nn.RNNBase)]
    fm._hg_history = []
    fm._hg_track = track_higher_grads
    if encapsulator is not None:
        encapsulator(fm, module)
    return fm


def monkeypatch(module: nn.Module, device: torch.device | str | None = None, copy_initial_weights: bool = True,
                track_higher_grads: bool = True) -> Any:
    """A patched copy of ``module`` whose time-0 fast weights are detached copies of its parameters
    (``copy_initial_weights=True``: gradients do not reach ``module``) or its parameters themselves
    (False: MAML's meta-gradient lands on ``module.parameters()``); buffers are copied."""
    def init(fm: Any, m: nn.Module) -> None:
        if copy_initial_weights:
            fm.fast_params = [p.detach().clone().to(device or p.device).requires_grad_(p.requires_grad)
                              for p in m.parameters()]
        else:
            fm.fast_params = [p if device is None else p.to(device) for p in m.parameters()]
    return make_functional(module, init, device=device, track_higher_grads=track_higher_grads)


def buffer_sync(module: nn.Module, fmodule: Any, device: torch.device | str | None = None) -> None:
    """One-off copy of ``module``'s buffers into ``fmodule`` (by name)."""
    own = dict(fmodule.named_buffers())
    with torch.no_grad():
        for name, b in module.named_buffers():
            if name in own:
                own[name].copy_(b.to(device or own[name].device))
