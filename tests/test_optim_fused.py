"""The adaptive optimizers' fused ops are bitwise their plain forms (optim/base.py: ``sub_div`` and
``add_div``, one ``torch.addcdiv`` each, and the cheaper :func:`safe_sqrt`).

For each optimizer with a fused op, an unfused reference below writes the step out per tensor in plain
``+ - * /``, in the association the fused kernel computes (addcdiv: y + (v·a)/b, a rounding after each
operation; Adagrad and Adamax are not fused and keep higher's c·(x/d), their references check that and
the cheaper safe square root), and 20 steps of ``update`` must equal it bitwise in float64, for every option combination
of ``tests/test_optim.py``, with the coefficients as numbers, as shared 0-dim tensors, as per-element
tensors and mixed, on a list of tensors and on one flat tensor, under autograd. The gradients of a
scalar of the 20-step result w.r.t. the coefficient tensors and the initial weights agree to 1e-13.

The one non-plain op in the references is coupled weight decay with a number μ, ``add(g, w, alpha=μ)``
(:meth:`Rule.decay`, unchanged, torch.optim's own op): on AVX2 / AVX-512 CPUs torch computes
``add(alpha=)``, ``addcmul`` and ``lerp`` as one fused multiply-add (one rounding), bitwise equal to no
plain form, so the adaptive rules use none of them for their own terms.
"""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch

import hypergradient as hg
from hypergradient.core.tree import is_number
from hypergradient.optim.base import add_div, is_zero, safe_sqrt, sub_div

from test_optim import COMBOS

STEPS = 20
SHAPES = [(6, 5), (17,), (3, 4), (1,)]   # vector bodies and scalar tails of the CPU kernels
REL = 1e-13


# ---- the unfused references (plain ops, per tensor) --------------------------------------------------------
def _sqrt0(x: torch.Tensor) -> torch.Tensor:
    """The safe square root as it was written before (ones_like / zeros_like buffers)."""
    if not x.requires_grad:
        return x.sqrt()
    pos = x > 0
    return torch.where(pos, torch.where(pos, x, torch.ones_like(x)).sqrt(), torch.zeros_like(x))


def _csqrt(x: Any) -> Any:
    return math.sqrt(x) if is_number(x) else torch.sqrt(x)


def _decay(opt: Any, p: Any, g: Any, lr: Any, wd: Any) -> tuple[Any, Any]:
    if is_zero(wd):
        return p, g
    if getattr(opt, "decoupled_weight_decay", False):
        return p * (1 - lr * wd), g
    return p, (torch.add(g, p, alpha=wd) if is_number(wd) else g + wd * p)   # Rule.decay, unchanged


def _moments(g: Any, m0: Any, s0: Any, b1: Any, b2: Any) -> tuple[Any, Any]:
    return b1 * m0 + (1 - b1) * g, b2 * s0 + (1 - b2) * (g * g)


def ref_adam(opt: Any, t: int, p: Any, g: Any, s: tuple, c: dict) -> tuple[Any, tuple]:
    lr, b1, b2, eps = c["lr"], c["beta1"], c["beta2"], c["eps"]
    p, g = _decay(opt, p, g, lr, c["weight_decay"])
    m, v = _moments(g, s[0], s[1], b1, b2)
    smax = torch.maximum(s[2], v) if opt.amsgrad else v
    d = _sqrt0(smax) / _csqrt(1 - b2 ** t) + eps
    return p - ((lr / (1 - b1 ** t)) * m) / d, (m, v, smax if opt.amsgrad else None)


def ref_adamax(opt: Any, t: int, p: Any, g: Any, s: tuple, c: dict) -> tuple[Any, tuple]:
    b1, b2 = c["beta1"], c["beta2"]
    p, g = _decay(opt, p, g, c["lr"], c["weight_decay"])
    m = b1 * s[0] + (1 - b1) * g
    u = torch.maximum(b2 * s[1], g.abs() + c["eps"])
    return p - (c["lr"] / (1 - b1 ** t)) * (m / u), (m, u)          # not fused: higher's association


def ref_adagrad(opt: Any, t: int, p: Any, g: Any, s: tuple, c: dict) -> tuple[Any, tuple]:
    p, g = _decay(opt, p, g, c["lr"], c["weight_decay"])
    clr = c["lr"] / (1 + (t - 1) * c["lr_decay"])
    acc = s[0] + g * g
    return p - clr * (g / (_sqrt0(acc) + c["eps"])), (acc,)         # not fused: higher's association


def ref_rmsprop(opt: Any, t: int, p: Any, g: Any, s: tuple, c: dict) -> tuple[Any, tuple]:
    lr, a, mom = c["lr"], c["alpha"], c["momentum"]
    sq0, ga0, b0 = s
    p, g = _decay(opt, p, g, lr, c["weight_decay"])
    sq = a * sq0 + (1 - a) * (g * g)
    ga = a * ga0 + (1 - a) * g if opt.centered else None
    d = _sqrt0(sq - ga * ga if ga is not None else sq) + c["eps"]
    if is_zero(mom):
        return p - (lr * g) / d, (sq, ga, b0)
    b = mom * b0 + g / d
    return p - lr * b, (sq, ga, b)


def ref_nadam(opt: Any, t: int, p: Any, g: Any, s: tuple, c: dict) -> tuple[Any, tuple]:
    lr, b1, b2, psi = c["lr"], c["beta1"], c["beta2"], c["momentum_decay"]
    p, g = _decay(opt, p, g, lr, c["weight_decay"])
    mu = b1 * (1.0 - 0.5 * 0.96 ** (t * psi))
    mu_next = b1 * (1.0 - 0.5 * 0.96 ** ((t + 1) * psi))
    prod = s[2] * mu
    m, v = _moments(g, s[0], s[1], b1, b2)
    d = _sqrt0(v / (1 - b2 ** t)) + c["eps"]
    p = p - ((lr * (1.0 - mu) / (1.0 - prod)) * g) / d
    p = p - ((lr * mu_next / (1.0 - prod * mu_next)) * m) / d
    return p, (m, v, prod)


def ref_radam(opt: Any, t: int, p: Any, g: Any, s: tuple, c: dict) -> tuple[Any, tuple]:
    lr, b1, b2 = c["lr"], c["beta1"], c["beta2"]
    p, g = _decay(opt, p, g, lr, c["weight_decay"])
    m, v = _moments(g, s[0], s[1], b1, b2)
    bc1, bc2 = 1 - b1 ** t, 1 - b2 ** t
    rho_inf = 2 / (1 - b2) - 1
    rho_t = rho_inf - 2 * t * (b2 ** t) / bc2

    def rect(rho: Any) -> Any:
        return _csqrt((rho - 4) * (rho - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho))
    if is_number(rho_t):
        if rho_t > 5.0:
            return p - ((lr * math.sqrt(bc2) * rect(rho_t) / bc1) * m) / (_sqrt0(v) + c["eps"]), (m, v)
        return p - (lr / bc1) * m, (m, v)
    on = rho_t > 5.0     # a tensor β2: plain ops in the library too (no fused form)
    adaptive = _csqrt(bc2) / (_sqrt0(v) + c["eps"]) * rect(torch.where(on, rho_t, torch.full_like(rho_t, 6.0)))
    return p - m / bc1 * lr * torch.where(on, adaptive, torch.ones_like(adaptive)), (m, v)


REFERENCES = {"adam": ref_adam, "adamw": ref_adam, "adamax": ref_adamax, "adagrad": ref_adagrad,
              "rmsprop": ref_rmsprop, "nadam": ref_nadam, "radam": ref_radam}
FUSED = [c for c in COMBOS if c[0] in REFERENCES and "maximize" not in c[2]]   # update() never sees maximize


def _id(c: Any) -> str:
    name, hp, opts, _ = c
    return name + "-" + "-".join(f"{k}={v}" for k, v in {**hp, **opts}.items())


# ---- the comparison -----------------------------------------------------------------------------------------
def _coefficients(hp: dict, mode: str, shapes: list, gen: torch.Generator) -> tuple[dict, list]:
    """(name -> per-tensor values, the leaves requiring grad): numbers, one shared 0-dim leaf per
    hyperparameter (``scalar``), one per-element leaf per tensor (``element``, values spread by up
    to 1% below the combination's), or ``mixed`` (lr a shared 0-dim leaf, per-element β2 / α where
    present, numbers for the rest)."""
    coef, leaves = {}, []
    for k, v in hp.items():
        kind = mode if mode != "mixed" else ("scalar" if k == "lr" else "element" if k in ("beta2", "alpha") else "number")
        if kind == "number":
            coef[k] = (v,) * len(shapes)
            continue
        if kind == "scalar":
            leaf = torch.tensor(float(v), dtype=torch.float64, requires_grad=True)
            coef[k], new = (leaf,) * len(shapes), [leaf]
        else:
            new = [(v * (1 - 0.01 * torch.rand(s, generator=gen, dtype=torch.float64))).requires_grad_() for s in shapes]
            coef[k] = tuple(new)
        leaves.extend(new)
    return coef, leaves


def _grad(x: torch.Tensor) -> torch.Tensor:
    """The loss gradient the steps use: a smooth function of the weights, exactly 0 on every 4th
    element (then Adam's s stays 0 there and the safe square root meets 0)."""
    mask = (torch.arange(x.numel()) % 4 != 0).to(x.dtype).reshape(x.shape)
    return (torch.sin(3 * x) + 0.1 * x) * mask


def _run(step: Any, opt: Any, params: list, coef: dict) -> tuple[list, list]:
    p, state = list(params), opt.init([q.detach() for q in params])
    for t in range(1, STEPS + 1):
        grads = [_grad(q) for q in p]
        p, state = step(grads, state, p, coef, t)
        p = list(p)
    return p, [x for f in state for x in f]


def _reference_update(name: str, opt: Any) -> Any:
    ref = REFERENCES[name]

    def update(grads: list, state: Any, params: list, coef: dict, t: int) -> tuple[list, Any]:
        fields = tuple(state)
        out_p, out_s = [], []
        for i, (p, g) in enumerate(zip(params, grads)):
            q, s = ref(opt, t, p, g, tuple(f[i] if len(f) else None for f in fields), {k: v[i] for k, v in coef.items()})
            out_p.append(q)
            out_s.append(s)
        new = [() if out_s[0][j] is None else tuple(s[j] for s in out_s) for j in range(len(fields))]
        return out_p, type(state)(*new)
    return update


def _close(a: torch.Tensor, b: torch.Tensor, scale: float) -> bool:
    """Bitwise, or to 1e-13 of ``scale``, the largest entry of the whole reference gradient. Not
    bitwise in general: the backward of addcdiv computes grad·v/b and −grad·v·a/b² where the plain graph
    computes c·((−grad)/b) and the division's and product's backward in another order (the forward
    values are bitwise). Not relative to each entry: single entries can be cancellation residues (e.g.
    ∂/∂β2 of Adam through the bias correction, 0.003 among entries of order 1-100, which a second plain
    association of the same step, HEAD's c·(m/d), moves by 3e-11 relative; measured worst of the fused
    ops here: 6e-14 of the largest entry)."""
    return torch.equal(a, b) or bool((a - b).abs().max() <= REL * scale)


@pytest.mark.parametrize("layout", ["list", "flat"])
@pytest.mark.parametrize("mode", ["number", "scalar", "element", "mixed"])
@pytest.mark.parametrize("combo", FUSED, ids=_id)
def test_fused_step_is_bitwise_the_plain_loop(combo, mode, layout):
    name, hp, opts, _ = combo
    opt = hg.optim.get(name, **opts)
    gen = torch.Generator().manual_seed(0)
    shapes = SHAPES if layout == "list" else [(sum(math.prod(s) for s in SHAPES),)]
    init = [torch.randn(s, generator=gen, dtype=torch.float64) for s in shapes]
    coef, leaves = _coefficients(hp, mode, shapes, gen)
    weights = [torch.randn(s, generator=gen, dtype=torch.float64) for s in shapes]
    results = []
    with torch.enable_grad():
        for step in (opt.update, _reference_update(name, opt)):
            params = [x.clone().requires_grad_() for x in init]
            p, state = _run(step, opt, params, coef)
            loss = sum((q * w).sum() for q, w in zip(p, weights))
            results.append((p, state, torch.autograd.grad(loss, params + leaves)))
    (p1, s1, g1), (p2, s2, g2) = results
    assert len(s1) == len(s2)
    for a, b in zip(p1 + s1, p2 + s2):
        assert torch.equal(a, b)
    scale = max(float(x.abs().max()) for x in g2)
    for a, b in zip(g1, g2):
        assert _close(a, b, scale)


# ---- the fused kernels and safe_sqrt themselves -------------------------------------------------------------
@pytest.mark.parametrize("n", [1, 7, 8, 19, 1000, 70001])     # scalar loop, vector body + tail, parallel
def test_addcdiv_forms_are_bitwise_plain(n):
    gen = torch.Generator().manual_seed(n)

    def r(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=gen, dtype=torch.float64) * torch.exp(3 * torch.randn(*shape, generator=gen, dtype=torch.float64))
    y, x, d = r(n), r(n), r(n).abs() + 0.1
    for c in (0.0123456789, -3.7, 2, torch.tensor(0.0123456789, dtype=torch.float64), r(n)):
        assert torch.equal(sub_div(y, c, x, d), y - (c * x) / d)
    assert torch.equal(add_div(y, x, d), y + x / d)


def test_safe_sqrt_values_and_derivatives():
    """safe_sqrt (one torch.sqrt in the graph, :class:`_SafeSqrt`) is bitwise the former masked form on
    x ≥ 0: values, first and second derivatives; derivative 0 (not inf / NaN) at 0 under double
    backward. Below 0 and for NaN it is torch.sqrt's NaN (the masked form returned 0 there, hiding a
    NaN that reached Adam's second moment), with and without autograd."""
    x0 = torch.tensor([0.0, 0.0, 1e-300, 2.0, 0.25, 3.7e5, -1.0, float("nan")], dtype=torch.float64)
    x, x_ref = x0.clone().requires_grad_(), x0.clone().requires_grad_()
    y, y_ref = safe_sqrt(x), _sqrt0(x_ref)
    torch.testing.assert_close(y, x0.sqrt(), rtol=0, atol=0, equal_nan=True)   # sqrt's values, NaN below 0
    assert torch.equal(y[:6], y_ref[:6])
    ok = slice(0, 6)
    (d,), (d_ref,) = (torch.autograd.grad(v[ok].sum(), u, create_graph=True) for v, u in ((y, x), (y_ref, x_ref)))
    assert torch.equal(d, d_ref)
    assert d[0] == 0 and d[1] == 0                                # derivative 0 at 0, not inf
    (dd,), (dd_ref,) = torch.autograd.grad(d.sum(), x), torch.autograd.grad(d_ref.sum(), x_ref)
    assert torch.equal(dd, dd_ref)
    assert dd[0] == 0 and dd[1] == 0                              # double backward stays finite at 0
    torch.testing.assert_close(safe_sqrt(x0), x0.sqrt(), rtol=0, atol=0, equal_nan=True)   # no autograd: sqrt


def test_safe_sqrt_under_torch_func_transforms():
    """Forward mode (nested too), vmap and torch.func.grad see sqrt's derivatives (0 at 0), and
    gradcheck / gradgradcheck pass at positive points."""
    from torch.func import grad, jacfwd, jvp, vmap
    x = torch.tensor([0.0, 1e-3, 2.0, 4.0], dtype=torch.float64)
    _, t = jvp(safe_sqrt, (x,), (torch.ones_like(x),))
    torch.testing.assert_close(t, torch.tensor([0.0, 0.5 / 1e-3 ** 0.5, 0.5 / 2 ** 0.5, 0.25], dtype=torch.float64))
    g = vmap(grad(lambda v: safe_sqrt(v).sum()))(torch.stack([x, x + 1]))
    assert g[0, 0] == 0 and torch.allclose(g[1], 0.5 / (x + 1).sqrt())
    xp = torch.tensor([0.5, 2.0, 3.0], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(safe_sqrt, (xp,)) and torch.autograd.gradgradcheck(safe_sqrt, (xp,))
    second = jacfwd(jacfwd(lambda v: safe_sqrt(v).sum()))(torch.tensor([0.5, 4.0], dtype=torch.float64))
    torch.testing.assert_close(second.diagonal(), -0.25 * torch.tensor([0.5, 4.0], dtype=torch.float64) ** -1.5)
