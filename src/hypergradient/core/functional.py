"""Any ``nn.Module`` as a pure function of (params, buffers).

The user's module is never modified: we keep a private skeleton (a deep copy whose tensors live on
the ``meta`` device, so it costs no memory) and run it with the given tensors swapped into its
parameter and buffer slots, as ``torch.func.functional_call`` does. Tied
weights appear once in :attr:`FunctionalModel.names` and are tied again on every call. BatchNorm
running statistics are carried as explicit state: every call gets fresh copies of the buffers and
returns the updated ones, so nothing is written back to the user's module. Randomness (dropout) is
made replayable by running the forward under an explicit seed, which the recompute and checkpoint
policies of reverse mode need to replay a step exactly.
"""

from __future__ import annotations

import copy
import fnmatch
import types
import warnings
from typing import Any, Callable, Iterable, Mapping, Sequence, cast

import torch
from torch import nn

from .traced import Traced, global_hooks, slot, trace

__all__ = ["FunctionalModel", "Forward", "select", "seeded", "uncompiled"]


def _compiled(module: nn.Module) -> bool:
    """Is ``module`` torch.compile's wrapper (``torch._dynamo``'s OptimizedModule around ``_orig_mod``)?"""
    return type(module).__name__ == "OptimizedModule" and isinstance(getattr(module, "_orig_mod", None), nn.Module)


def _path(name: str) -> str:
    """A submodule's name as Python: ``model.body[0].conv`` for ``body.0.conv``."""
    return "model" + "".join(f"[{p}]" if p.isdigit() else f".{p}" for p in name.split("."))


def uncompiled(module: nn.Module) -> nn.Module:
    """The module inside torch.compile's wrapper (``model._orig_mod``), with a warning; any other module
    as it is. The inner loop runs it uncompiled: torch.compile's AOT autograd has no double backward,
    which every hypergradient through the inner steps needs (and its compiled backward frees its buffers
    after one use). λ keys and state names are the module's own (no ``_orig_mod.`` prefix). A compiled
    submodule inside a plain module is an error naming the fix."""
    if isinstance(module, nn.Module) and _compiled(module):
        warnings.warn("hypergradient runs a torch.compile'd module uncompiled (model._orig_mod): torch.compile's "
                      "AOT autograd has no double backward, which hypergradients through the inner steps need. "
                      "λ keys use the module's own names; the traced forward (problem.diagnostics()['forward']) "
                      "removes the per-module call overhead instead. Pass the uncompiled module to silence this.",
                      stacklevel=3)
        module = cast(nn.Module, module._orig_mod)
    if isinstance(module, nn.Module):
        inner = [n for n, m in module.named_modules() if _compiled(m)]
        if inner:
            raise TypeError(f"the submodules {inner} are torch.compile'd: torch.compile's AOT autograd has no double "
                            "backward, which hypergradients through the inner steps need; put the uncompiled "
                            f"submodules back (e.g. {_path(inner[0])} = {_path(inner[0])}._orig_mod)")
    return module


def select(names: Sequence[str], which: Callable[[str], bool] | str | Iterable[str] | None) -> list[str]:
    """Names matched by ``which``: a predicate ``name -> bool``, a glob pattern, or an iterable of
    names / prefixes (``"body"`` matches ``"body.0.weight"``)."""
    if which is None:
        return []
    if callable(which):
        return [n for n in names if which(n)]
    if isinstance(which, str):
        which = [which]
    pats = list(which)
    out = []
    for n in names:
        for p in pats:
            if n == p or n.startswith(p + ".") or fnmatch.fnmatchcase(n, p):
                out.append(n)
                break
    unknown = [p for p in pats if not any(n == p or n.startswith(p + ".") or fnmatch.fnmatchcase(n, p)
                                          for n in names)]
    if unknown:
        raise ValueError(f"no parameter of the model matches {unknown}; parameter names are {list(names)}")
    return out


class seeded:
    """Context manager: run the enclosed code with the global RNG of ``device`` seeded by ``seed``
    and restore the previous RNG state afterwards (replayable dropout). ``seed=None`` is a no-op."""

    def __init__(self, seed: int | None, device: torch.device):
        self.seed, self.cuda = seed, device.type == "cuda"

    def __enter__(self) -> None:
        if self.seed is None:
            return
        self._cpu = torch.get_rng_state()
        torch.default_generator.manual_seed(self.seed)
        if self.cuda:
            self._gpu = torch.cuda.get_rng_state()
            torch.cuda.manual_seed(self.seed)

    def __exit__(self, *exc: object) -> None:
        if self.seed is None:
            return
        torch.set_rng_state(self._cpu)
        if self.cuda:
            torch.cuda.set_rng_state(self._gpu)


class FunctionalModel:
    """A stateless view of ``module``.

    Attributes:
        names: parameter names (tied parameters once), in ``named_parameters`` order.
        buffer_names: buffer names.
    """

    def __init__(self, module: nn.Module, *, trace: bool = True):
        if not isinstance(module, nn.Module):
            raise TypeError(f"expected an nn.Module, got {type(module).__name__}")
        module = uncompiled(module)
        self.names = tuple(n for n, _ in module.named_parameters())
        self.buffer_names = tuple(n for n, _ in module.named_buffers())
        self.shapes = {n: p.shape for n, p in module.named_parameters()}
        for n, p in module.named_parameters():
            if not (p.is_floating_point()):
                raise TypeError(f"parameter {n!r} has dtype {p.dtype}; only real floating-point "
                                "parameters can be differentiated (cast the module with .double() or .float())")
        skeleton = copy.deepcopy(module)
        try:
            skeleton = skeleton.to("meta")
        except Exception:  # pragma: no cover - exotic modules keep a real copy
            pass
        _twice_differentiable(skeleton)
        self._skeleton = skeleton
        self._training = skeleton.training
        self._tied = _tied_names(module)  # from the user's module: moving to meta can untie a shared Parameter
        self._slots = _slots(skeleton, module)
        self.has_batchnorm = any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in module.modules())
        # the traced forward per mode (core/traced.py): None = not tried yet, a str = why not taken
        self.trace = trace
        self._traced: dict[bool, Traced | str | None] = {True: None, False: None}
        self._verified = {True: False, False: False}

    def forward_path(self, training: bool) -> str:
        """How a forward in this mode runs: ``"traced"`` (with the submodules it calls as modules, if
        any), ``"module: <why>"``, or ``"not run yet"`` (the trace is taken after a first call shows it
        bitwise equal to the module's)."""
        got = self._traced[training]
        if not self.trace:
            return "module: tracing is off (Settings(trace=False))"
        if got is None:
            return "not run yet"
        if isinstance(got, str):
            return f"module: {got}"
        if not self._verified[training]:
            return "module until a first call outside torch.func transforms checks the trace"
        leaves = [leaf.module.__class__.__name__ for leaf in got.leaves]
        return "traced" + (f" (as modules: {', '.join(leaves)})" if leaves else "")

    def unchecked(self, training: bool) -> bool:
        """True while this mode's trace is taken but not yet checked against the module (a first call
        outside torch.func transforms checks it; inside one, the module runs)."""
        return self._trace(training) is not None and not self._verified[training]

    def _trace(self, training: bool) -> Traced | None:
        """The traced forward of this mode, traced on first use (None where it is not taken)."""
        if not self.trace or global_hooks():
            return None
        got = self._traced[training]
        if got is None:
            names = list(self._slots)
            got = self._traced[training] = trace(self._skeleton, training, names)
        return got if isinstance(got, Traced) else None

    def parameters(self, module: nn.Module) -> dict[str, torch.Tensor]:
        """Detached copies of ``module``'s parameters (the initial point), keyed by name."""
        return {n: p.detach().clone() for n, p in module.named_parameters()}

    def buffers(self, module: nn.Module) -> dict[str, torch.Tensor]:
        return {n: b.detach().clone() for n, b in module.named_buffers()}

    def __call__(self, params: Mapping[str, torch.Tensor], buffers: Mapping[str, torch.Tensor],
                 args: tuple[Any, ...], kwargs: Mapping[str, Any] | None = None, *,
                 training: bool = True) -> tuple[Any, dict[str, torch.Tensor]]:
        """Run the module; returns ``(output, new_buffers)``. ``buffers`` is not modified. Runs the
        traced forward (:mod:`hypergradient.core.traced`) once a first call has shown it bitwise equal
        to the module; the module otherwise."""
        traced = self._trace(training)
        if traced is not None and self._verified[training]:
            new_buffers = {n: b.clone() for n, b in buffers.items()}
            out, rebound = traced(self._tensors(params, new_buffers), args, kwargs)
            new_buffers.update(rebound)
            return out, new_buffers
        check = traced is not None and not _transformed()
        rng = _rng(params) if check else None
        out, new_buffers = self._module_call(params, buffers, args, kwargs, training)
        if check:
            self._check(cast(Traced, traced), training, params, buffers, args, kwargs, out, new_buffers, cast(tuple, rng))
        return out, new_buffers

    def _tensors(self, params: Mapping[str, torch.Tensor], buffers: Mapping[str, torch.Tensor]
                 ) -> dict[str, torch.Tensor]:
        tensors = {**params, **buffers}
        return _untie(self._tied, tensors) if self._tied else tensors

    def _check(self, traced: Traced, training: bool, params: Mapping[str, torch.Tensor],
               buffers: Mapping[str, torch.Tensor], args: tuple, kwargs: Mapping[str, Any] | None,
               out: Any, new_buffers: Mapping[str, torch.Tensor], rng: tuple) -> None:
        """Adopt ``traced`` for this mode if it gives bitwise the module's output and buffers on this
        call (run again from the same random state, without a graph); otherwise record why not."""
        before, after = rng, _rng(params)
        _set_rng(before)
        try:
            with torch.no_grad():
                bufs = {n: b.clone() for n, b in buffers.items()}
                out2, rebound = traced(self._tensors(params, bufs), args, kwargs)
                bufs.update(rebound)
        except Exception as e:   # a trace that runs differently from the module is simply not taken
            self._traced[training] = f"the traced forward failed where the module ran ({type(e).__name__}: {e})"[:200]
            return
        finally:
            _set_rng(after)
        if Traced.matches(out, out2) and Traced.matches(dict(new_buffers), bufs):
            self._verified[training] = True
        else:
            self._traced[training] = "the traced forward's values differed from the module's on a first call"

    def _module_call(self, params: Mapping[str, torch.Tensor], buffers: Mapping[str, torch.Tensor],
                     args: tuple, kwargs: Mapping[str, Any] | None, training: bool
                     ) -> tuple[Any, dict[str, torch.Tensor]]:
        """The module itself, with the tensors swapped into its slots."""
        if training != self._training:
            self._skeleton.train(training)
            self._training = training
        new_buffers = {n: b.clone() for n, b in buffers.items()}
        tensors = self._tensors(params, new_buffers)
        # What torch.func.functional_call does, from maps computed once: put the tensors into the
        # skeleton's parameter and buffer slots, run it, read back buffers the module rebound, put its
        # own tensors back. functional_call resolves every name and re-derives the ties on every call,
        # which on a model of many small tensors costs as much as the arithmetic of its forward pass.
        slots = self._slots
        if not slots.keys() >= tensors.keys():
            raise KeyError(f"the model has no parameter or buffer {sorted(tensors.keys() - slots.keys())}")
        try:
            for n, x in tensors.items():
                d, k, _ = slots[n]
                d[k] = x
            out = self._skeleton(*args, **(kwargs or {}))
            for n in new_buffers:
                d, k, _ = slots[n]
                new_buffers[n] = d[k]
        finally:
            for n in tensors:
                d, k, home = slots[n]
                d[k] = home
        return out, new_buffers


def _transformed() -> bool:
    """True inside a torch.func transform (vmap, grad, jvp), where values cannot be compared."""
    peek = getattr(getattr(torch._C, "_functorch", None), "peek_interpreter_stack", None)
    return peek is None or peek() is not None


def _rng(tensors: Mapping[str, torch.Tensor]) -> tuple:
    """The random states a forward may draw from: the CPU generator's, and each CUDA device's in use."""
    cuda = sorted({x.device.index or 0 for x in tensors.values() if x.device.type == "cuda"})
    return torch.get_rng_state(), [(d, torch.cuda.get_rng_state(d)) for d in cuda]


def _set_rng(state: tuple) -> None:
    cpu, cuda = state
    torch.set_rng_state(cpu)
    for d, s in cuda:
        torch.cuda.set_rng_state(s, d)


def _slots(skeleton: nn.Module, module: nn.Module) -> dict[str, tuple[dict[str, Any], str, torch.Tensor]]:
    """{name: (the ``_parameters`` or ``_buffers`` dict of its submodule in ``skeleton``, key, the
    skeleton's own (meta) tensor there)} for every name of a parameter or buffer of ``module``,
    aliases of tied tensors included."""
    names = [*module.named_parameters(remove_duplicate=False), *module.named_buffers(remove_duplicate=False)]
    return {name: slot(skeleton, name) for name, _ in names}


def _tied_names(module: nn.Module) -> dict[str, frozenset[str]]:
    """{name: all names of that tensor} for every parameter or buffer reachable under several names
    (what ``functional_call(tie_weights=True)`` recomputes on every call)."""
    by_tensor: dict[torch.Tensor, set[str]] = {}
    for name, x in [*module.named_parameters(remove_duplicate=False), *module.named_buffers(remove_duplicate=False)]:
        by_tensor.setdefault(x, set()).add(name)
    return {n: frozenset(names) for names in by_tensor.values() if len(names) > 1 for n in names}


def _untie(tied: Mapping[str, frozenset[str]], tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Give every alias of a tied tensor the value passed for it, exactly as
    ``torch.nn.utils.stateless._untie_named_tensors_map`` does (same error on conflicting values)."""
    given = [n for n in tensors if n in tied]
    for n in given:
        names = tied[n]
        if len(names.intersection(given)) > 1 and len({tensors[m] for m in names if m in tensors}) != 1:
            raise ValueError(f"functional_call got multiple values for keys {sorted(names)}, which are tied. "
                             "Consider using tie_weights=False")
    out = dict(tensors)
    for n in given:
        for m in tied[n]:
            out[m] = tensors[n]
    return out


def _weight_norm(self: nn.Module, weight_g: torch.Tensor, weight_v: torch.Tensor) -> torch.Tensor:
    """w = g · v/‖v‖ (the norm over every dimension but ``dim``; over all of v for dim = −1) in plain
    ops: the same values as ``torch._weight_norm``, whose double backward is wrong (measured against
    finite differences: 0.68 relative error in an HVP, torch 2.13), which every hypergradient needs."""
    dim = cast(int, self.dim)
    if dim == -1:
        return weight_g * (weight_v / weight_v.norm())
    dims = [d for d in range(weight_v.dim()) if d != dim % weight_v.dim()]
    return weight_g * (weight_v / weight_v.norm(dim=dims, keepdim=True))


def _twice_differentiable(skeleton: nn.Module) -> None:
    """Swap, in the skeleton (a copy, never the user's module), the forward of the parametrizations whose
    torch kernel has no correct second derivative for the same math in plain ops (weight_norm)."""
    from torch.nn.utils.parametrizations import _WeightNorm
    for m in skeleton.modules():
        if isinstance(m, _WeightNorm):
            m.forward = types.MethodType(_weight_norm, m)  # type: ignore[method-assign]


class Forward:
    """What a loss function receives as ``f``: call ``f(x)`` to run the model at the current weights.

    ``f.params`` are the inner weights w (name -> tensor) for regularizers, ``f.hparams`` the model
    parts that are hyperparameters. The buffers after the last call are ``f.buffers``.
    """

    __slots__ = ("_fm", "params", "hparams", "buffers", "training", "_seed", "_device", "_calls")

    def __init__(self, fm: FunctionalModel, params: Mapping[str, torch.Tensor],
                 hparams: Mapping[str, torch.Tensor], buffers: Mapping[str, torch.Tensor],
                 training: bool, seed: int | None, device: torch.device):
        self._fm, self.params, self.hparams, self.buffers = fm, params, hparams, buffers
        self.training, self._seed, self._device, self._calls = training, seed, device, 0

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        seed = None if self._seed is None else self._seed + 7919 * self._calls
        self._calls += 1
        with seeded(seed, self._device):
            out, self.buffers = self._fm({**self.params, **self.hparams}, self.buffers, args, kwargs,
                                         training=self.training)
        return out
