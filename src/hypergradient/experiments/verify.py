"""``hypergradient verify``: every registered estimator on fixed float64 reference problems.

Per method: its cost on the MLP reference problem, its relative error against central finite
differences (exact methods) or its cosine similarity to exact RMD (approximate methods), and the
result of its defining reduction (ALGORITHMS.md §1–7). Exits non-zero if an exact method is off or a
reduction fails.
"""

from __future__ import annotations

import json
import time

import torch

from .. import estimate
from ..estimators import REGISTRY
from . import reference as ref

TOL = 1e-6  # relative error allowed for exact methods and reductions (float64)


def _rel(a, b):
    return ((a - b).norm() / b.norm().clamp_min(1e-300)).item()


def _cos(a, b):
    return torch.nn.functional.cosine_similarity(a, b, dim=0).item()


class _Ctx:
    """Reference problems and their exact answers, built once."""

    def __init__(self, T=10):
        self.T = T
        self.mlp, self.mlp_nolr = ref.mlp(True, T), ref.mlp(False, T)
        self.lam, self.lam_nolr = self.mlp.init_hparams(), self.mlp_nolr.init_hparams()
        self.fd = ref.finite_differences(self.mlp, self.lam)
        self.rmd = estimate("rmd", self.mlp, self.lam)
        self.rmd_nolr = estimate("rmd", self.mlp_nolr, self.lam_nolr)
        self.ridge = ref.ridge()
        self.ridge_lam = self.ridge.init_hparams()
        self.ridge_cf = ref.ridge_closed_form().reshape(1)

    def on_ridge(self, name, **opt):
        return _rel(estimate(name, self.ridge, self.ridge_lam, **opt).flat(), self.ridge_cf)


def _reduction(name: str, c: _Ctx):
    """(description, measured value, passed) of the method's defining reduction."""
    if name == "rmd":
        errs = [_rel(estimate("rmd", c.mlp, c.lam, storage=s).flat(), c.rmd.flat())
                for s in ("recompute", "checkpoint")]
        return "graph == recompute == checkpoint", max(errs), max(errs) < 1e-10
    if name == "truncated_rmd":
        d = _rel(estimate("truncated_rmd", c.mlp, c.lam, K=1).flat(), estimate("one_step", c.mlp, c.lam).flat())
        return "K=1 == one_step", d, d < 1e-10
    if name == "fmd":
        d = _rel(estimate("fmd", c.mlp, c.lam).flat(), c.rmd.flat())
        return "== rmd", d, d < 1e-10
    if name == "drmad":
        p = ref.linear()
        lam = p.init_hparams()
        d = _rel(estimate("drmad", p, lam).flat(), estimate("rmd", p, lam).flat())
        return "== rmd on a linear trajectory", d, d < 1e-10
    if name in ("ift_cg", "ift_neumann", "ift_exact"):
        opt = {"N": 2000} if name == "ift_neumann" else {}
        d = c.on_ridge(name, **opt)
        return "== ridge closed form at convergence", d, d < TOL
    if name == "one_step":
        d = _rel(estimate("one_step", c.mlp, c.lam).flat(), estimate("truncated_rmd", c.mlp, c.lam, K=1).flat())
        return "== truncated_rmd(K=1)", d, d < 1e-10
    if name == "first_order":
        a = estimate("first_order", c.mlp, c.lam).flat()
        b = torch.cat([v.reshape(-1) for v in c.rmd.direct.values()])
        d = _rel(a, b)
        return "== direct term of rmd", d, d < 1e-12
    if name == "hyperdistill":
        d = _rel(estimate("hyperdistill", c.mlp, c.lam, gamma=0.0, theta=1.0).flat(),
                 estimate("one_step", c.mlp, c.lam).flat())
        return "gamma=0, theta=1 == one_step", d, d < 1e-10
    if name == "evograd":
        d = _evograd_closed_form(c.mlp_nolr, c.lam_nolr)
        return "== closed form (ALGORITHMS §7)", d, d < 1e-10
    return "no reduction defined", float("nan"), False


def _evograd_closed_form(problem, lam, K=3, sigma=1e-2, tau=0.05, seed=1) -> float:
    """Relative gap between EvoGrad's indirect term and −(1/τ) Σ_k w_k ⟨∇_θ L_val(θ*), θ_k − θ*⟩ ∇_λ ℓ_k."""
    from ..estimators.evograd import EvoGrad, perturbations
    state = problem.init_state()
    _, indirect, info = EvoGrad(K=K, sigma=sigma, tau=tau, seed=seed).hypergradient(problem, lam, state, 1)
    theta = [p.detach() for p in state.params]
    eps = perturbations(theta, K, sigma, "sign", torch.Generator().manual_seed(seed))
    cands = [[p + e for p, e in zip(theta, ek)] for ek in eps]
    w = info["weights"]
    star = [sum(w[k] * c[i] for k, c in enumerate(cands)) for i in range(len(theta))]
    _, alpha, _ = problem.val_grad(state._replace(params=tuple(star)), lam, 1)
    closed = {k: torch.zeros_like(v) for k, v in lam.items()}
    for k, cand in enumerate(cands):
        lam_g = {n: v.detach().requires_grad_() for n, v in lam.items()}
        with torch.enable_grad():
            loss = problem.train_loss_at(state._replace(params=tuple(cand)), lam_g, 1)[0]
            gl = torch.autograd.grad(loss, list(lam_g.values()), allow_unused=True, materialize_grads=True)
        inner = sum((a * (ci - si)).sum() for a, ci, si in zip(alpha, cand, star))
        for n, g in zip(lam_g, gl):
            closed[n] = closed[n] - (w[k] * inner / tau) * g
    flat = lambda d: torch.cat([v.reshape(-1) for v in d.values()])
    return _rel(flat(indirect), flat(closed))


def rows(T: int = 10) -> list[dict]:
    c = _Ctx(T)
    out = []
    for name in sorted(REGISTRY):
        cls = REGISTRY[name]
        t0 = time.perf_counter()
        if cls.optimizer_hparams:
            problem, lam, exact_ref = c.mlp, c.lam, c.rmd
        else:
            problem, lam, exact_ref = c.mlp_nolr, c.lam_nolr, c.rmd_nolr
        h = estimate(name, problem, lam)
        seconds = time.perf_counter() - t0
        row = {"method": name, "exact": cls.exact, "steps": h.cost.steps, "vjps": h.cost.vjps,
               "jvps": h.cost.jvps, "hvps": h.cost.hvps, "seconds": seconds,
               "cos_to_rmd": _cos(h.flat(), exact_ref.flat())}
        if cls.exact and cls.optimizer_hparams:
            row["fd_rel_err"] = _rel(h.flat(), c.fd)
        elif cls.exact:
            row["fd_rel_err"] = c.on_ridge(name)
        desc, val, ok = _reduction(name, c)
        row.update(reduction=desc, reduction_value=val, reduction_ok=ok)
        row["ok"] = ok and (row.get("fd_rel_err", 0.0) < TOL)
        out.append(row)
    return out


def main(json_path: str | None = None) -> int:
    t0 = time.perf_counter()
    table = rows()
    head = f"{'method':<15}{'exact':>6}{'steps':>6}{'VJPs':>6}{'JVPs':>6}{'HVPs':>6}{'FD rel err':>12}" \
           f"{'cos(RMD)':>10}  {'reduction':<38}{'value':>10}  ok"
    print(head)
    print("-" * len(head))
    for r in table:
        fd = f"{r['fd_rel_err']:.1e}" if "fd_rel_err" in r else "-"
        print(f"{r['method']:<15}{'yes' if r['exact'] else 'no':>6}{r['steps']:>6}{r['vjps']:>6}{r['jvps']:>6}"
              f"{r['hvps']:>6}{fd:>12}{r['cos_to_rmd']:>10.4f}  {r['reduction']:<38}"
              f"{r['reduction_value']:>10.1e}  {'yes' if r['ok'] else 'NO'}")
    print(f"\nfloat64; MLP 5-8-3 (tanh), SGD momentum 0.5, T=10, lambda = per-tensor lr + per-tensor L2 coefficients "
          f"(IFT/EvoGrad: L2 only; exact IFT checked on ridge). {time.perf_counter() - t0:.1f}s")
    if json_path:
        with open(json_path, "w") as fh:
            json.dump(table, fh, indent=2)
    return 0 if all(r["ok"] for r in table) else 1
