"""What the optimizers share: exact-zero tests, a square root safe under double backward, fused axpy,
the fused division step of the adaptive rules, the two execution strategies of a per-tensor rule (per
tensor, or as ``torch._foreach_*`` ops) and :class:`Rule`, the base that runs them and writes weight
decay once. The protocol itself is
:class:`hypergradient.core.optimizer.Optimizer`."""

from __future__ import annotations

from typing import Any, Mapping, Sequence, cast

import torch

from ..core.optimizer import Coefficient, Coefficients, Optimizer
from ..core.tree import is_number

__all__ = ["Optimizer", "Rule", "TensorOps", "ForeachOps", "is_zero", "safe_sqrt", "zeros_like_all", "foreach_ok", "same_zero", "fmul", "axpy",
           "shared_number", "faxpy", "sub_div", "add_div"]


def is_zero(x: object) -> bool:
    """True when a hyperparameter value is the Python number 0 (a term that can be skipped)."""
    return isinstance(x, (int, float)) and x == 0


def _half_over(r: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """g / (2 r) where r > 0 (torch's own sqrt derivative, the same ops), 0 where r = 0; the inner where
    keeps the untaken branch finite, so differentiating this again gives no 0·inf."""
    pos = r > 0
    if not torch.is_grad_enabled():    # nothing differentiates this: the untaken branch's inf / NaN is discarded
        return torch.where(pos, g / (2 * r), 0.0)
    return torch.where(pos, g / (2 * torch.where(pos, r, 1.0)), 0.0)


class _SafeSqrt(torch.autograd.Function):
    """√x whose derivative is 0 at x = 0: one op forward (``torch.sqrt``); backward, forward mode and
    vmap from :func:`_half_over`, itself differentiable (double backward, as RMD through Adam needs)."""

    generate_vmap_rule = True

    @staticmethod
    def forward(x: torch.Tensor) -> torch.Tensor:
        return x.sqrt()

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple, output: torch.Tensor) -> None:
        ctx.save_for_backward(output)
        ctx.save_for_forward(output)

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor) -> torch.Tensor:
        return _half_over(ctx.saved_tensors[0], g)

    @staticmethod
    def jvp(ctx: Any, t: torch.Tensor) -> torch.Tensor:
        return _half_over(ctx.saved_tensors[0], t)


def safe_sqrt(x: torch.Tensor) -> torch.Tensor:
    """sqrt with derivative 0 (not inf) at x = 0, so double backward through Adam / RMSprop stays
    finite where a gradient is exactly zero. Same values as ``torch.sqrt`` everywhere, and the same
    derivative where x > 0. Under autograd one ``torch.sqrt`` in the graph (:class:`_SafeSqrt`), not
    the four ops of the masked form ``where(x > 0, where(x > 0, x, 1).sqrt(), 0)``, which runs inside
    torch.func transforms (it composes under nested forward mode, the Function does not)."""
    if _functorch_wrapped(x):    # inside torch.func transforms: the masked form composes under all of them
        pos = x > 0              # (the Function's jvp rule is not differentiated by an outer forward level)
        return torch.where(pos, torch.where(pos, x, 1.0).sqrt(), 0.0)
    if not x.requires_grad:      # no derivative will be taken (a forward_ad dual tensor takes this path too)
        return x.sqrt()
    return cast(torch.Tensor, _SafeSqrt.apply(x))


def _functorch_wrapped(x: torch.Tensor) -> bool:
    """Inside torch.func transforms (grad, jvp, vmap) a tensor's ``requires_grad`` does not say whether
    a derivative will be taken."""
    return bool(torch._C._functorch.is_functorch_wrapped_tensor(x))


def zeros_like_all(params: Sequence[torch.Tensor]) -> tuple[torch.Tensor, ...]:
    return tuple(torch.zeros_like(p) for p in params)


# ---- torch._foreach_* fast path ------------------------------------------------------------------------
# One ``torch._foreach_*`` call per operation for the whole list of parameter tensors instead of one per
# tensor: the same elementwise arithmetic in the same order, so the results are bitwise those of the
# per-tensor loop (on CPU a foreach op *is* that loop, run in C++). Used only for steps taken without
# autograd (``problem.step`` without a graph: plain inner steps, replays, online estimators): under
# autograd, torch's foreach ops save every input for backward (two to three times the bytes of the
# per-tensor ops, measured with torch 2.13) and change the order in which gradients of a shared
# hyperparameter are summed. Also required: plain CPU tensors of one dtype (CUDA's fused foreach kernels
# have not been checked bitwise against the loop yet), and no torch.func transform active (vmap has no
# batching rule for foreach ops). Otherwise the per-tensor loop runs.
_peek_transforms = getattr(getattr(torch._C, "_functorch", None), "peek_interpreter_stack", None)
_PLAIN = (torch.Tensor, torch.nn.Parameter)


def foreach_ok(tensor_lists: Sequence[Sequence[torch.Tensor]], hps: Sequence[Sequence[Coefficient]]) -> bool:
    """True when the foreach path may replace a per-tensor loop over ``tensor_lists`` (aligned lists
    of tensors) with per-tensor hyperparameters ``hps`` (each a sequence of all numbers or all
    tensors, one per parameter tensor): autograd off, no torch.func transform, CPU, one dtype (why:
    the comment above; under autograd an unrolled SGD graph held 2.3x the saved bytes of the loop in
    ``benchmarks/unroll.py``)."""
    if torch.is_grad_enabled() or _peek_transforms is None or _peek_transforms() is not None:
        return False
    first = tensor_lists[0]
    if not first:
        return False
    dev, dt = first[0].device, first[0].dtype
    if dev.type != "cpu":
        return False
    for xs in tensor_lists:
        if len(xs) != len(first):
            return False
        for x in xs:
            if type(x) not in _PLAIN or x.device != dev or x.dtype != dt:
                return False
    for h in hps:
        if len(h) != len(first):
            return False
        if all(is_number(v) for v in h):
            continue
        if not all(type(v) in _PLAIN and cast(torch.Tensor, v).device == dev for v in h):
            return False
    return True


def same_zero(h: Sequence[Coefficient]) -> bool | None:
    """For a per-tensor hyperparameter: True if every entry :func:`is_zero`, False if none does, None
    if mixed (then the caller must take the per-tensor loop)."""
    z = [is_zero(v) for v in h]
    return True if all(z) else (False if not any(z) else None)


def fmul(xs: Sequence[torch.Tensor], h: Sequence[Coefficient]) -> tuple[torch.Tensor, ...]:
    """[h_i · x_i] as one foreach call; ``h`` holds numbers or tensors, one per tensor of ``xs``."""
    # Any: h is all numbers or all tensors (foreach_ok), and torch's overloads take one kind or the other
    return torch._foreach_mul(list(xs), list(cast(Sequence[Any], h)))


# ---- fused axpy ------------------------------------------------------------------------------------------
# y + a·x is one op (``torch.add(y, x, alpha=a)``, torch.optim's own form) when a is a number: one graph
# node and one pass over memory instead of two, which matters once Φ runs on one flat buffer. On AVX2 /
# AVX-512 CPUs torch computes it as a fused multiply-add (one rounding, not two: bitwise torch.optim's
# SGD, not the plain ``y + a * x``; see the fused division steps below).
def axpy(y: torch.Tensor, a: Coefficient, x: torch.Tensor) -> torch.Tensor:
    """y + a·x: one fused op for a number a, ``y + a * x`` for a tensor."""
    return torch.add(y, x, alpha=a) if is_number(a) else y + a * x


def shared_number(h: Sequence[Coefficient]) -> bool | None:
    """For a per-tensor hyperparameter on the foreach path: True if all entries are the same number
    (one fused foreach op does what :func:`axpy` does per tensor), False if all are tensors, None if
    neither (then the caller must take the per-tensor loop)."""
    if all(is_number(v) for v in h):
        return True if all(v == h[0] for v in h) else None
    return False if not any(is_number(v) for v in h) else None


def faxpy(ys: Sequence[torch.Tensor], h: Sequence[Coefficient], xs: Sequence[torch.Tensor]) -> tuple[torch.Tensor, ...]:
    """[axpy(y_i, h_i, x_i)] as foreach calls, bitwise the per-tensor :func:`axpy` (``h``: see
    :func:`shared_number`, which must not be None)."""
    if shared_number(h):
        return torch._foreach_add(list(ys), list(xs), alpha=cast(float, h[0]))
    return torch._foreach_add(list(ys), fmul(xs, h))


# ---- fused division steps (the adaptive rules) ------------------------------------------------------------
# y − c·x/d, the step of Adam (AdamW), RMSprop, NAdam and RAdam, is one ``torch.addcdiv`` (torch.optim's
# own form): one graph node and one pass over memory instead of three. addcdiv computes y + (v·a)/b with
# a rounding after each operation (there is no fused multiply-add for a division), so it is bitwise the
# plain ``y - (c * x) / d`` for a number c (v = −c) and for a tensor c (a = c·x, v = −1), torch.optim's
# association, not the c·(x/d) these rules had before (one rounding apart); tests/test_optim_fused.py
# checks it against the plain forms. Adagrad and Adamax keep c·(x/d), higher's association, which no
# fused op computes: :mod:`hypergradient.higher` gives higher's numbers for them (rules/adagrad.py: why). The multiply-add forms (``add(alpha=)``,
# ``addcmul``, ``lerp``) are not used in those rules: on AVX2 / AVX-512 CPUs torch computes them as one
# fused multiply-add (a single rounding), bitwise equal to no plain form (measured with torch 2.13; plain
# only under ATEN_CPU_CAPABILITY=default).
def sub_div(y: torch.Tensor, c: Coefficient, x: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
    """y − (c·x)/d as one ``addcdiv`` for a number c, as ``addcdiv(y, c·x, d, value=−1)`` for a tensor
    c; bitwise the plain ``y - (c * x) / d``."""
    return torch.addcdiv(y, x, d, value=-c) if is_number(c) else torch.addcdiv(y, c * x, d, value=-1)


def add_div(y: torch.Tensor, x: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
    """y + x/d as one ``addcdiv``; bitwise the plain ``y + x / d``."""
    return torch.addcdiv(y, x, d)


# ---- execution strategies --------------------------------------------------------------------------------
# An optimizer's rule is written once, for one parameter tensor, against an ``ops`` namespace. The
# per-tensor strategy (:class:`TensorOps`) runs it once per tensor on tensors and that tensor's
# coefficients; the foreach strategy (:class:`ForeachOps`) runs it once on the lists of all tensors, one
# ``torch._foreach_*`` call per operation, where :func:`foreach_ok` allows and every coefficient is uniform
# across the tensors (the same zero test, all one number or all tensors): the same arithmetic in the same
# order, so the results are bitwise those of the per-tensor strategy.
class TensorOps:
    """The per-tensor strategy: ``x`` a tensor, ``h`` one coefficient (number or tensor)."""

    @staticmethod
    def zero(h: Any) -> bool:
        return is_zero(h)

    @staticmethod
    def axpy(y: Any, h: Any, x: Any) -> Any:
        return axpy(y, h, x)

    @staticmethod
    def mul(x: Any, h: Any) -> Any:
        return h * x

    @staticmethod
    def one_minus(h: Any) -> Any:
        return 1 - h

    @staticmethod
    def descend(p: Any, lr: Any, u: Any) -> Any:
        """p − lr·u as one op: ``add(alpha=−lr)`` for a number, ``addcmul`` for a tensor lr."""
        return torch.add(p, u, alpha=-lr) if is_number(lr) else torch.addcmul(p, lr, u, value=-1)


class ForeachOps:
    """The foreach strategy: ``x`` a list of tensors, ``h`` a list of coefficients (uniform)."""

    @staticmethod
    def zero(h: Any) -> bool:
        return is_zero(h[0])

    @staticmethod
    def axpy(y: Any, h: Any, x: Any) -> Any:
        return faxpy(y, h, x)

    @staticmethod
    def mul(x: Any, h: Any) -> Any:
        return fmul(x, h)

    @staticmethod
    def one_minus(h: Any) -> Any:
        return [1 - v for v in h]

    @staticmethod
    def descend(p: Any, lr: Any, u: Any) -> Any:
        if shared_number(lr):
            return torch._foreach_add(list(p), list(u), alpha=-cast(float, lr[0]))
        return torch._foreach_addcmul(list(p), list(lr), list(u), value=-1)


def _uniform(coef: Mapping[str, Sequence[Coefficient]]) -> bool:
    return all(same_zero(h) is not None and shared_number(h) is not None for h in coef.values())


class Rule(Optimizer):
    """An optimizer written as a per-tensor rule (:meth:`rule`); :meth:`update` runs it by the per-tensor
    strategy, or by the foreach strategy where the subclass allows (``foreach = True``: its rule uses
    only the ``ops`` operations) and :func:`foreach_ok` holds. Also the one place weight decay is
    written (:meth:`decay`, torch.optim's coupled form g + μ w)."""

    foreach: bool = False

    def rule(self, o: Any, t: int, p: Any, g: Any, s: tuple[Any, ...], c: Mapping[str, Any]
             ) -> tuple[Any, tuple[Any, ...]]:
        """(new p, new state fields) for one tensor ``p`` with gradient ``g``, state fields ``s`` (None
        for an empty field) and coefficients ``c`` (name -> value), at step ``t``."""
        raise NotImplementedError

    @staticmethod
    def decay(o: Any, g: Any, p: Any, wd: Any) -> Any:
        """Coupled weight decay g + μ w (torch.optim's ``grad.add(param, alpha=weight_decay)``),
        skipped for the number 0."""
        return g if o.zero(wd) else o.axpy(g, wd, p)

    def weight_decay(self, o: Any, p: Any, g: Any, lr: Any, wd: Any) -> tuple[Any, Any]:
        """(w, g) after weight decay μ: coupled, g + μ w (:meth:`decay`), or with the option
        ``decoupled_weight_decay`` w (1 − α μ) (Loshchilov & Hutter 2019; torch.optim's
        ``param.mul_(1 - lr * weight_decay)``); skipped for the number 0."""
        if not getattr(self, "decoupled_weight_decay", False):
            return p, self.decay(o, g, p, wd)
        return (p if o.zero(wd) else p * (1 - lr * wd)), g

    def update(self, grads: Sequence[torch.Tensor], state: Any, params: Sequence[torch.Tensor],
               coef: Coefficients, t: int) -> tuple[tuple[torch.Tensor, ...], Any]:
        fields = tuple(state)
        if self.foreach and _uniform(coef) and foreach_ok([params, grads, *[f for f in fields if len(f)]],
                                                          list(coef.values())):
            p, new = self.rule(ForeachOps, t, list(params), list(grads),
                               tuple(list(f) if len(f) else None for f in fields), {k: list(v) for k, v in coef.items()})
            return tuple(p), type(state)(*(tuple(f) if f is not None else () for f in new))
        out_p, out_s = [], []
        for i, (p, g) in enumerate(zip(params, grads)):
            q, s = self.rule(TensorOps, t, p, g, tuple(f[i] if len(f) else None for f in fields),
                             {k: v[i] for k, v in coef.items()})
            out_p.append(q)
            out_s.append(s)
        new_fields = [() if out_s[0][j] is None else tuple(s[j] for s in out_s) for j in range(len(fields))]
        return tuple(out_p), type(state)(*new_fields)
