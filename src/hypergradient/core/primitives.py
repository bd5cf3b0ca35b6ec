"""The primitives every estimator uses, as products with the one-step map Φ and the losses
(ALGORITHMS.md §0), each counting itself in ``problem.cost``:

* :meth:`Primitives.vjp`          (ᾱ A_t, ᾱ B_t): one reverse-mode product with ∂Φ/∂s and ∂Φ/∂λ;
* :meth:`Primitives.vjp_through`  the same through n steps at once (n VJPs, one backward pass);
* :meth:`Primitives.jvp`          A_t z + B_t ζ: one forward-mode product (columns batchable);
* :meth:`Primitives.hvp`          ∂²L_train/∂w² v;
* :meth:`Primitives.step_hvp`     a step with the transformed gradient T(g) and J_T H_t Z (forward mode's closed forms);
* :meth:`Primitives.mixed_vjp`    x ∂²L_train/∂w∂λ (implicit differentiation);
* :meth:`Primitives.step_update`  a step, and ᾱ through its optimizer update alone, the gradient held fixed;
* :meth:`Primitives.lam_grad`     ∂L_train/∂λ at given weights (first order: finite differences of gradients);
* :meth:`Primitives.val_grad`     ∂L_val/∂w and ∂L_val/∂λ (the adjoint and the direct term).

:class:`~hypergradient.core.problem.InnerProblem` inherits them; they rely on its Φ (``_phi``,
``_unroll``, ``_train_grad``), its hyperparameter spec and its validation loss.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Sequence

import torch

from .autograd import grad_or_zero
from .state import Cost, State
from .tree import detached
from .types import Batch, Hparams, HparamsLike, Tensors, TrainGrad

if TYPE_CHECKING:
    from .hyper import HyperSpec
    from .optimizer import Optimizer

__all__ = ["Primitives", "check_scalar", "check_val_loss"]


def check_scalar(loss: object, name: str) -> torch.Tensor:
    """A loss must be a scalar tensor: a clear error for a Python number or an unreduced loss."""
    if not isinstance(loss, torch.Tensor):
        raise TypeError(f"{name} returned a {type(loss).__name__}; return a scalar tensor computed from f(x) "
                        "(a Python number has no gradient)")
    if loss.dim() != 0:
        raise ValueError(f"{name} returned a tensor of shape {tuple(loss.shape)}; reduce it to a scalar "
                         "(reduction='mean', or .mean() / .sum())")
    return loss


def check_val_loss(loss: object) -> None:
    """L_val must be a scalar that depends on w or λ (else every hypergradient is zero)."""
    loss = check_scalar(loss, "val_loss")
    if not loss.requires_grad:
        raise ValueError("the validation loss depends neither on the inner weights nor on the "
                         "hyperparameters, so every hypergradient is zero; val_loss must call f(x) "
                         "or use hp")



class Primitives:
    """The counted products of an inner problem (mixed into :class:`InnerProblem`)."""

    cost: Cost
    spec: "HyperSpec"
    optimizer: "Optimizer"
    _loss: float | None
    last_step_loss: float | None

    def _phi(self, state: State, lam: HparamsLike, create_graph: bool, batch: Batch = None, *,
             coef: Any = None, flat: bool = False) -> State:
        raise NotImplementedError

    def _unroll(self, state: State, lam: HparamsLike, n: int) -> State:
        raise NotImplementedError

    def _train_grad(self, state: State, lam: HparamsLike, t: int, *, create_graph: bool, batch: Batch = None,
                    flat: bool = False) -> TrainGrad:
        raise NotImplementedError

    def val_loss_at(self, state: State, lam: HparamsLike, t: int | None = None) -> torch.Tensor:
        raise NotImplementedError

    def train_loss_at(self, state: State, lam: HparamsLike, t: int,
                      batch: Batch = None) -> tuple[torch.Tensor, Any]:
        raise NotImplementedError

    def vjp(self, state: State, lam: HparamsLike, cotangent: Tensors, *, wrt_lam: bool = True,
            batch: Batch = None) -> tuple[list[torch.Tensor], Hparams]:
        """(ᾱ ∂Φ/∂s, ᾱ ∂Φ/∂λ) at s = ``state`` for ᾱ = ``cotangent`` (aligned with
        ``State.tensors()`` of the next state; ``None`` entries are zero). Recomputes the step, on
        ``batch`` when given (else on the batch of step ``state.t + 1``)."""
        self.cost.vjps += 1
        s = state.detach(requires_grad=True)
        lam_d = detached(lam, requires_grad=wrt_lam)
        with torch.enable_grad():
            nxt = self._phi(s, lam_d, True, batch)
            inputs = s.tensors() + (list(lam_d.values()) if wrt_lam else [])
            g = grad_or_zero(nxt.tensors(), inputs, cotangent)
        n = len(s.tensors())
        return list(g[:n]), dict(zip(lam_d, g[n:])) if wrt_lam else {}

    def vjp_through(self, state: State, lam: HparamsLike, n: int,
                    cotangent: Tensors) -> tuple[list[torch.Tensor], Hparams]:
        """The VJP of n steps at once: (ᾱ ∂s_{t+n}/∂s_t, ᾱ ∂s_{t+n}/∂λ) for ᾱ = ``cotangent`` at
        s_{t+n}, by replaying the n steps from s_t = ``state`` with a graph and one backward pass
        (memory: n steps' graph); counted as n VJPs, whose work it is."""
        self.cost.vjps += n
        s0 = state.detach(requires_grad=True)
        lam_d = detached(lam, requires_grad=True)
        with torch.enable_grad():
            s = self._unroll(s0, lam_d, n)
            g = grad_or_zero(s.tensors(), s0.tensors() + list(lam_d.values()), cotangent)
        k = len(s0.tensors())
        return list(g[:k]), dict(zip(lam_d, g[k:]))

    def step_hvp(self, state: State, lam: HparamsLike, Z: Sequence[torch.Tensor] | None, coef: Any = None
                 ) -> tuple[State, tuple[torch.Tensor, ...], list[torch.Tensor | None]]:
        """(s_t, g̃, J_T H_t Z) for the step from s_{t−1} = ``state``: g = ∇_w L_train(w_{t−1}), H_t the
        training Hessian at w_{t−1}, T the optimizer's gradient transforms (:meth:`Optimizer.transform`:
        clips, then the sign of ``maximize``), g̃ = T(g) and J_T = ∂T/∂g at g; Z is a batch of N tangents
        over the weights (leading axis N; ``None``: no product, the third entry all ``None``).

        H Z is the batched double backward of g (H is symmetric, so the VJP is the JVP); J_T·(H Z) is
        the exact JVP of T alone (:meth:`Optimizer.transform_jvp`), so the product is M·H·Z for a clip
        mask M, not the H·M·Z a double backward through T(g) would give (ALGORITHMS.md §2). The step
        is ``update(g̃)``, the same s_t as Φ. ``coef`` are step t's optimizer coefficients when the
        caller already has them. Counted as one step and N HVPs (forward mode's closed-form recursions)."""
        t = state.t + 1
        params, grads, buffers = self._train_grad(state.detach(), lam, t, create_graph=Z is not None)
        hz: list = [None] * len(params)
        live = [i for i, g in enumerate(grads) if g.requires_grad]
        if Z is not None and live:
            with torch.enable_grad():
                hz = list(torch.autograd.grad([grads[i] for i in live], params, [Z[i] for i in live],
                                              is_grads_batched=True, allow_unused=True))
        self.cost.steps += 1
        self.cost.hvps += Z[0].shape[0] if Z is not None else 0
        self.last_step_loss = self._loss
        grads = tuple(g.detach() for g in grads)
        if Z is not None:
            grads, hz = self.optimizer.transform_jvp(grads, hz)
        else:
            with torch.no_grad():
                grads = self.optimizer.transform(grads)
        coef = self.spec.coefficients(lam, t) if coef is None else coef
        with torch.no_grad():
            new_p, new_opt = self.optimizer.update(grads, state.opt, state.params, coef, t)
        return State(tuple(new_p), new_opt, buffers, t), grads, hz

    def step_update(self, state: State, lam: HparamsLike
                    ) -> tuple[State, Callable[[Tensors], tuple[list[torch.Tensor], Hparams]]]:
        """s_t from s_{t−1} = ``state``, and the map ᾱ ↦ (ᾱ ∂U/∂g, ᾱ ∂U/∂λ) for Φ(s, λ) = U(s, g, λ): the
        training gradient g = ∇_w L_train(w_{t−1}, λ) is taken without a graph and the optimizer's update
        U alone is kept differentiable (clipping, maximize, momentum included; no second-order term).
        ᾱ is aligned with s_t's tensors. Counted as one step: the step and its update VJP share it."""
        self.cost.steps += 1
        t = state.t + 1
        s = state.detach()
        _, grads, buffers = self._train_grad(s, lam, t, create_graph=False)
        self.last_step_loss = self._loss
        g = [x.detach().requires_grad_() for x in grads]
        lam_d = detached(lam, requires_grad=True)
        with torch.enable_grad():
            new_p, new_opt = self.optimizer.apply(g, s.opt, s.params, self.spec.coefficients(lam_d, t), t)
        nxt = State(tuple(new_p), new_opt, buffers, t)

        def update_vjp(cotangent: Tensors) -> tuple[list[torch.Tensor], Hparams]:
            with torch.enable_grad():
                out = grad_or_zero(nxt.tensors(), g + list(lam_d.values()), cotangent)
            return out[:len(g)], dict(zip(lam_d, out[len(g):]))
        return nxt.detach(), update_vjp

    def lam_grad(self, state: State, lam: HparamsLike, params: Sequence[torch.Tensor], t: int) -> Hparams:
        """∂L_train(w, λ)/∂λ at the weights ``params`` (state's buffers) on the batch of step t; first
        order. Counted as one gradient (``cost.grads``)."""
        self.cost.grads += 1
        lam_d = detached(lam, requires_grad=True)
        with torch.enable_grad():
            loss = self.train_loss_at(state._replace(params=tuple(p.detach() for p in params)), lam_d, t)[0]
            return dict(zip(lam_d, grad_or_zero(check_scalar(loss, "train_loss"), list(lam_d.values()))))

    def mixed_vjp(self, state: State, lam: HparamsLike, x: Sequence[torch.Tensor], t: int) -> Hparams:
        """x ∂²L_train/∂w∂λ at state's weights on the batch of step t: one VJP of the gradient map
        w ↦ ∇_w L_train(w, λ) with respect to λ (implicit differentiation); counted as one HVP."""
        self.cost.hvps += 1
        lam_d = detached(lam, requires_grad=True)
        _, g, _ = self._train_grad(state.detach(), lam_d, t, create_graph=True)
        with torch.enable_grad():
            return dict(zip(lam_d, grad_or_zero(g, list(lam_d.values()), x)))

    def jvp(self, state: State, lam: HparamsLike, tangent_state: Tensors | None, tangent_lam: HparamsLike | None,
            *, batched: bool = False) -> tuple[State, list[torch.Tensor]]:
        """(s_t, A_t z + B_t ζ): the next state and its tangent for z = ``tangent_state`` (aligned with
        ``State.tensors()``, ``None`` = 0) and ζ = ``tangent_lam`` (a dict over λ's keys, missing = 0).
        With ``batched`` every tangent carries a leading axis of N columns (vmapped double backward).
        Counted as one step and N JVPs.
        """
        s = state.detach(requires_grad=True)
        lam_d = detached(lam, requires_grad=True)
        flat_s = s.tensors()
        tz = list(tangent_state) if tangent_state is not None else [None] * len(flat_s)
        tl = dict(tangent_lam or {})
        inputs, tangents = [], []
        for x, v in zip(flat_s, tz):
            if v is not None:
                inputs.append(x)
                tangents.append(v)
        for k, v in tl.items():
            inputs.append(lam_d[k])
            tangents.append(v)
        ncol = tangents[0].shape[0] if (batched and tangents) else None
        self.cost.steps += 1                # the step s_t it returns (its primal), and the N tangent columns
        self.cost.jvps += ncol or 1
        with torch.enable_grad():
            nxt = self._phi(s, lam_d, True)
            outs = nxt.tensors()
            live = [i for i, o in enumerate(outs) if o.requires_grad]
            out_tan: list[torch.Tensor | None] = [None] * len(outs)
            if live and inputs:
                u = [torch.zeros_like(outs[i], requires_grad=True) for i in live]
                g = torch.autograd.grad([outs[i] for i in live], inputs, u, create_graph=True, allow_unused=True)
                pairs = [(gi, vi) for gi, vi in zip(g, tangents) if gi is not None and gi.requires_grad]
                if pairs:
                    jv = torch.autograd.grad([p[0] for p in pairs], u, [p[1] for p in pairs],
                                             is_grads_batched=batched, allow_unused=True)
                    for i, j in zip(live, jv):
                        out_tan[i] = j
        shape = (lambda o: (ncol, *o.shape)) if batched else (lambda o: o.shape)
        full = [j if j is not None else torch.zeros(shape(o), dtype=o.dtype, device=o.device)
                for j, o in zip(out_tan, outs)]
        self.last_step_loss = self._loss
        return nxt.detach(), [j.detach() for j in full]

    def hvp(self, state: State, lam: HparamsLike, v: Tensors, t: int | None = None) -> list[torch.Tensor]:
        """∂²L_train/∂w² v at state's weights, on the batch of step t (default: the next step)."""
        self.cost.hvps += 1
        t = state.t + 1 if t is None else t
        params, g, _ = self._train_grad(state.detach(), lam, t, create_graph=True)
        with torch.enable_grad():
            return grad_or_zero(g, params, v)

    def val_grad(self, state: State, lam: HparamsLike, t: int | None = None, *,
                 wrt_lam: bool = True) -> tuple[torch.Tensor, list[torch.Tensor], Hparams]:
        """(L_val, ∂L_val/∂w, ∂L_val/∂λ) at state's weights: the adjoint α and the direct term."""
        self.cost.val_grads += 1
        params = tuple(p.detach().requires_grad_() for p in state.params)
        lam_d = detached(lam, requires_grad=wrt_lam)
        with torch.enable_grad():
            loss = self.val_loss_at(state._replace(params=params), lam_d, t)
            check_val_loss(loss)
            inputs = list(params) + (list(lam_d.values()) if wrt_lam else [])
            g = grad_or_zero(loss, inputs)
        n = len(params)
        return loss.detach(), list(g[:n]), dict(zip(lam_d, g[n:])) if wrt_lam else {}
