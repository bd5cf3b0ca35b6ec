"""The model's forward traced to functional calls: the inner loop's fast path (issue 20).

:class:`~hypergradient.core.functional.FunctionalModel` runs the user's module with the weights swapped
into its slots; every step then pays ``nn.Module.__call__`` once per submodule (a 20-layer MLP: 40
calls per forward), which on small layers costs as much as their arithmetic. Here the module is traced
once per mode (train / eval) with ``torch.fx`` *through* its submodules down to the functional calls
(``nn.Linear`` → ``F.linear(x, w, b)``), and every parameter and buffer the graph reads becomes an
input of the traced function, so a step calls one generated Python function on the tensors directly.
It runs the same ATen calls in the same order as the module, so its values and gradients are
bitwise the module's.

What does not trace through:

* a submodule whose forward branches on tensor values or shapes (BatchNorm's input check, RNNs)
  stays a *leaf*: the graph calls that submodule with its tensors swapped in (:class:`Leaf`), so the
  rest of the model still runs traced;
* a model that cannot be traced at all (control flow in the top-level forward), that has hooks
  (tracing skips them), that creates tensors at trace time (they would be frozen into the graph: fresh
  ``torch.randn`` each call would become one constant), or whose forward assigns module attributes
  (which a trace runs once) is not traced: :func:`trace` returns the reason, and the module path runs.

:class:`~hypergradient.core.functional.FunctionalModel` adopts a traced function only after its first
call in that mode gave bitwise the module's outputs and buffers (:meth:`Traced.matches`).
"""

from __future__ import annotations

import copy
from typing import Any, Callable, Mapping

import torch
from torch import fx, nn
from torch.utils._pytree import tree_flatten

__all__ = ["Traced", "Leaf", "trace", "global_hooks", "slot"]

_CALL_HOOKS = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks")


def global_hooks() -> bool:
    """True while global module hooks are registered (``nn.modules.module.register_module_forward_hook``
    and friends): a traced forward would skip them, so the module path runs."""
    from torch.nn.modules import module as M
    return any(bool(getattr(M, n, None)) for n in ("_global_forward_hooks", "_global_forward_pre_hooks",
                                                     "_global_backward_hooks", "_global_backward_pre_hooks",
                                                     "_global_forward_hooks_always_called"))


class Leaf:
    """A submodule that did not trace through, called by the traced graph with its tensors swapped into
    its slots (in the traced copy of the model). A buffer its forward *rebinds* (assigns) is collected
    in :attr:`rebound` (full name → tensor) for the caller to read back, as the module path does."""

    def __init__(self, prefix: str, module: nn.Module, names: list[str]):
        self.names, self.module = names, module
        self.__name__ = self.__qualname__ = "leaf_" + prefix.replace(".", "_")     # fx's name for the call
        self.slots = [slot(module, n[len(prefix) + 1:]) for n in names]
        self.rebound: dict[str, torch.Tensor] = {}

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        k = len(self.slots)
        tensors, args = args[:k], args[k:]
        try:
            for (d, key, _), x in zip(self.slots, tensors):
                d[key] = x
            out = self.module(*args, **kwargs)
            for name, (d, key, _), x in zip(self.names, self.slots, tensors):
                if d[key] is not x:
                    self.rebound[name] = d[key]
        finally:
            for d, key, home in self.slots:
                d[key] = home
        return out


def slot(module: nn.Module, name: str) -> tuple[dict[str, Any], str, torch.Tensor]:
    """(the ``_parameters`` or ``_buffers`` dict holding ``name`` in ``module``, its key, the tensor there);
    Any: torch types these dicts' values as Optional, but a named parameter or buffer is a tensor."""
    prefix, _, key = name.rpartition(".")
    sub = module.get_submodule(prefix)
    d: dict[str, Any] = sub._parameters if key in sub._parameters else sub._buffers
    return d, key, d[key]


class Traced:
    """The traced forward of one mode: ``traced(tensors, args, kwargs)`` with ``tensors`` the model's
    parameters and buffers by name (aliases of tied tensors included) runs the generated function.
    :attr:`leaves` are the submodules it calls as modules (:class:`Leaf`)."""

    def __init__(self, gm: fx.GraphModule, inputs: list[str], leaves: list[Leaf]):
        self._fn: Callable[..., Any] = gm.forward      # the generated code, without nn.Module.__call__
        self.gm, self.inputs, self.leaves = gm, inputs, leaves

    def __call__(self, tensors: Mapping[str, torch.Tensor], args: tuple, kwargs: Mapping[str, Any] | None
                 ) -> tuple[Any, dict[str, torch.Tensor]]:
        """(output, the buffers the leaves rebound)."""
        out = self._fn(*[tensors[n] for n in self.inputs], *args, **(kwargs or {}))
        rebound: dict[str, torch.Tensor] = {}
        for leaf in self.leaves:
            if leaf.rebound:
                rebound.update(leaf.rebound)
                leaf.rebound = {}
        return out, rebound

    @staticmethod
    def matches(a: Any, b: Any) -> bool:
        """Bitwise equal outputs (same structure, dtypes, shapes, values; NaN where NaN)."""
        la, sa = tree_flatten(a)
        lb, sb = tree_flatten(b)
        if sa != sb:
            return False
        for x, y in zip(la, lb):
            if isinstance(x, torch.Tensor) != isinstance(y, torch.Tensor):
                return False
            if not isinstance(x, torch.Tensor):
                if x != y:
                    return False
                continue
            if x.dtype != y.dtype or x.shape != y.shape or x.device != y.device:
                return False
            if x.is_floating_point() or x.is_complex():
                same = (x == y) | (torch.isnan(x) & torch.isnan(y))
                if not bool(same.all()):
                    return False
            elif not torch.equal(x, y):
                return False
        return True


class _Tracer(fx.Tracer):
    """Traces through every submodule except the ``leaves`` (qualified names); remembers the innermost
    submodule whose forward raised, so the caller can make it a leaf and try again."""

    def __init__(self, leaves: set[str]):
        super().__init__()
        self.leaves = leaves

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return qualname in self.leaves

    def call_module(self, m: nn.Module, forward: Callable, args: Any, kwargs: Any) -> Any:
        try:
            return super().call_module(m, forward, args, kwargs)
        except Exception as e:
            if not hasattr(e, "_hg_failed"):
                e._hg_failed = self.path_of_module(m)      # type: ignore[attr-defined]
            raise


def _state(module: nn.Module) -> list[tuple[str, dict[str, Any]]]:
    """Every submodule's plain attributes (not its tensors or children): a trace must leave them as they were."""
    skip = {"_parameters", "_buffers", "_modules", "training"}
    return [(n, {k: v for k, v in vars(m).items() if k not in skip}) for n, m in module.named_modules()]


def _changed(before: list[tuple[str, dict[str, Any]]], module: nn.Module) -> str | None:
    after = dict(_state(module))
    for n, attrs in before:
        now = after.get(n, {})
        for k, v in attrs.items():
            if k not in now or (now[k] is not v and not _same(now[k], v)):
                return f"{n or 'the model'}.{k}"
        extra = set(now) - set(attrs)
        if extra:
            return f"{n or 'the model'}.{sorted(extra)[0]}"
    return None


def _same(a: Any, b: Any) -> bool:
    try:
        return bool(a == b)
    except Exception:
        return False


def trace(skeleton: nn.Module, training: bool, names: list[str]) -> Traced | str:
    """The traced forward of ``skeleton`` in mode ``training``, or the reason it is not taken (module
    docstring). ``names``: the model's parameter and buffer names, aliases of tied tensors included."""
    for n, m in skeleton.named_modules():
        hooks = [h for h in _CALL_HOOKS if getattr(m, h, None)]
        if hooks or getattr(m, "_forward_hooks_with_kwargs", None):
            return f"{n or 'the model'} has hooks ({', '.join(hooks) or 'forward hooks'}), which a trace would skip"
    leaves: set[str] = set()
    for _ in range(len(list(skeleton.modules())) + 1):
        root = copy.deepcopy(skeleton).train(training)
        slots = {n: slot(root, n) for n in names}
        before = _state(root)
        try:
            cuda = list(range(torch.cuda.device_count())) if torch.cuda.is_initialized() else []
            with torch.random.fork_rng(devices=cuda):      # code run at trace time draws nothing for real
                graph = _Tracer(leaves).trace(root)
        except Exception as e:
            failed = getattr(e, "_hg_failed", None)
            if failed is None or failed in leaves:
                return f"the model does not trace ({type(e).__name__}: {str(e).splitlines()[0][:120]})"
            leaves.add(failed)         # trace that submodule as a module call and try again
            continue
        made = [str(n.target) for n in graph.nodes if n.op == "get_attr" and str(n.target) not in slots]
        if made:
            return f"its forward creates the tensor {made[0]!r} at trace time (it would become a constant)"
        where = _changed(before, root)
        if where is not None:
            return f"its forward changes module attributes ({where}), which a trace runs only once"
        moved = [n for n, (d, k, x) in slots.items() if d.get(k) is not x]
        if moved:
            return f"its forward rebinds {moved[0]}, which a trace runs only once"
        return _build(root, graph, names)
    return "the model does not trace"


def _build(root: nn.Module, graph: fx.Graph, names: list[str]) -> Traced | str:
    """The graph with every parameter / buffer read turned into an input (placed before the forward's
    own arguments, which may have defaults) and every leaf submodule call into a :class:`Leaf` call."""
    nodes = list(graph.nodes)
    if not nodes:
        return "the model's forward is empty"
    start = nodes[0]
    inputs: list[str] = []
    placeholders: dict[str, fx.Node] = {}

    def input_node(name: str) -> fx.Node:
        if name not in placeholders:
            with graph.inserting_before(start):
                placeholders[name] = graph.placeholder(f"_hg_in{len(inputs)}")
            inputs.append(name)
        return placeholders[name]

    leaves: list[Leaf] = []
    for node in nodes:
        if node.op == "get_attr":
            node.replace_all_uses_with(input_node(str(node.target)))
            graph.erase_node(node)
        elif node.op == "call_module":
            prefix = str(node.target)
            own = [n for n in names if n.startswith(prefix + ".")]
            leaf = Leaf(prefix, root.get_submodule(prefix), own)
            leaves.append(leaf)
            with graph.inserting_before(node):
                call = graph.call_function(leaf, (*[input_node(n) for n in own], *node.args), dict(node.kwargs))
            node.replace_all_uses_with(call)
            graph.erase_node(node)
    graph.lint()
    return Traced(fx.GraphModule(nn.Module(), graph), inputs, leaves)
