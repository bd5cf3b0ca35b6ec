"""Fig. 2 analogue (non-greedy paper, Sec. 5.1): hypervariance (std / |mean|) and sign fluctuation of the
learning rates' hypergradients when one source of randomness is perturbed at a time, for

* greedy: step t's one-step hypergradient ∂L_val(Φ(s_{t−1}, α))/∂α_t along the trajectory (``one_step``
  online, α held fixed): one learning rate per step, each seen over one step;
* non-greedy, unshared: dL_val(w_T)/dα_t for one learning rate per step (exact ``rmd``);
* non-greedy, shared: dL_val(w_T)/dα_k for K values each shared over T/K contiguous steps (exact ``fmd``;
  ``rmd`` on the same problem is the ground truth, their largest difference is recorded).

Sources (:data:`hypergradient.diagnostics.SOURCES`): the training batches' sampling seed, the
validation batch (drawn from the validation set), the initial weights (w_0 ⊙ (1 + U(−1%, 1%))) and the
initial learning rates (±1%, :func:`~hypergradient.diagnostics.jitter`); sample 0 of every source is
the unperturbed run, samples 1..P perturb it. Float64 throughout (float32 spreads are machine-dependent).
"""

from __future__ import annotations

import time
from typing import Any

import torch

from ...diagnostics import jitter, spread
from ...diagnostics.spread import SOURCES
from ...estimators import estimate, get
from ...core.types import Hparams
from .config import SchedulesConfig
from .problem import Splits, build

__all__ = ["KINDS", "hypergradient_sample", "spread_job"]

KINDS = ("greedy", "non-greedy", "shared")
DT = torch.float64


def _perturbed(cfg: SchedulesConfig, data: Splits, kind: str, source: str, i: int, seed: int) -> tuple[Any, ...]:
    """(problem, λ, s_0) for sample i of ``source`` (i = 0: unperturbed)."""
    T = cfg.spread_T
    val = None
    if source == "val" and i:
        g = torch.Generator().manual_seed(10_000 + i)
        idx = torch.randperm(len(data.val[1]), generator=g)[:cfg.spread_val_batch]
        val = (data.val[0][idx], data.val[1][idx])
    elif source != "val" or not i:
        idx = torch.arange(min(cfg.spread_val_batch, len(data.val[1])))
        val = (data.val[0][idx], data.val[1][idx])
    problem = build(cfg, data, seed, cfg.spread_values if kind == "shared" else T, T=T, batch=cfg.spread_batch,
                    dtype=DT, lr_only=True, batch_seed=seed + (1000 * i if source == "train" else 0), val=val)
    lam = problem.init_hparams()
    with torch.no_grad():
        lam["optim.lr"].fill_(cfg.spread_alpha0)
    if source == "hparams":
        lam = jitter(lam, i)
    s0 = problem.init_state()
    if source == "init" and i:
        g = torch.Generator().manual_seed(20_000 + i)
        s0 = s0._replace(params=tuple(w * (1 + 0.01 * (2 * torch.rand(w.shape, generator=g, dtype=DT) - 1))
                                      for w in s0.params))
    return problem, lam, s0


def _greedy(problem: Any, lam: Hparams, s0: Any, T: int) -> torch.Tensor:
    est = get("one_step")
    st = est.new_state()
    carry, state, out = est.online_init(problem, lam, s0, st), s0, []
    for t in range(T):
        hg, carry = est.online_step(problem, lam, state, carry)
        out.append(hg.value["optim.lr"][t])
        state = hg.next_state(est.name)
    return torch.stack(out).detach()


def hypergradient_sample(cfg: SchedulesConfig, data: Splits, kind: str, source: str, i: int,
                         seed: int = 0) -> dict[str, Any]:
    """The learning rates' hypergradient of one perturbed run (and, for the shared kind at i = 0, its
    difference to exact RMD)."""
    problem, lam, s0 = _perturbed(cfg, data, kind, source, i, seed)
    T = cfg.spread_T
    out: dict[str, Any] = {}
    if kind == "greedy":
        g = _greedy(problem, lam, s0, T)
    elif kind == "non-greedy":
        g = estimate("rmd", problem, lam, T=T, state=s0).value["optim.lr"].detach()
    else:
        g = estimate("fmd", problem, lam, T=T, state=s0).value["optim.lr"].detach()
        if i == 0:
            r = estimate("rmd", problem, lam, T=T, state=s0).value["optim.lr"].detach()
            out["rmd_rel_diff"] = float((g - r).abs().max() / r.abs().max())
    out["g"] = g
    return out


def spread_job(cfg: SchedulesConfig, data: Splits, kind: str, source: str, seed: int = 0) -> dict[str, Any]:
    """Samples 0..P of one (kind, source) and their :func:`~hypergradient.diagnostics.spread`: per
    hyperparameter hypervariance and sign fluctuation, and their medians / means over the hyperparameters."""
    if source not in SOURCES or kind not in KINDS:
        raise ValueError(f"kind in {KINDS}, source in {SOURCES}")
    t0 = time.perf_counter()
    samples = [hypergradient_sample(cfg, data, kind, source, i, seed) for i in range(cfg.spread_samples + 1)]
    G = torch.stack([s["g"] for s in samples])
    sp = spread(G)
    hv, sf = sp["hypervariance"], sp["sign_fluctuation"]
    finite = hv[torch.isfinite(hv)]
    return {"kind": kind, "source": source, "samples": G.tolist(), "hypervariance": hv.tolist(),
            "sign_fluctuation": sf.tolist(), "hypervariance_median": float(finite.median()) if finite.numel() else
            float("inf"), "hypervariance_mean": float(finite.mean()) if finite.numel() else float("inf"),
            "sign_fluctuation_mean": float(sf.double().mean()), "rmd_rel_diff": samples[0].get("rmd_rel_diff"),
            "seconds": time.perf_counter() - t0}
