"""The figures: curves.png (meta-validation MSE, meta-training loss and inner-loop stability along
meta-training) and cosine.png (Fig. 3: cosine similarity to exact RMD)."""

from __future__ import annotations

from typing import Any

import math
import os

import torch

__all__ = ["plots"]


def _save(plt: Any, fig: Any, out: str, name: str) -> str:
    fig.tight_layout()
    path = os.path.join(out, name)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plots(result: dict, out: str) -> list[str]:
    """curves.png (meta-validation MSE along meta-training) and cosine.png (Fig. 3 style)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    paths = []
    fig, axes = plt.subplots(1, 3, figsize=(18, 4.5))
    panels: Any = (("meta_val_mse", "meta-validation MSE", "Meta-validation MSE (fixed val tasks)"),
              ("meta_train_loss", "query loss after the inner optimization", "Meta-training loss (meta-batch mean)"),
              ("lr_curvature_max", "lr · λ_max(H_head), max over val tasks", "Inner-loop stability"))
    for m, c in result["curves"].items():
        for ax, (key, _, _) in zip(axes, panels):
            runs = [r for r in c[key] if r]
            if not runs:
                continue
            n = max(len(r) for r in runs)                 # a run that diverged stops early: pad it with inf
            runs = [[float("inf") if v is None else float(v) for v in r] + [float("inf")] * (n - len(r)) for r in runs]
            t = torch.tensor(runs, dtype=torch.float64).nan_to_num(nan=float("inf"), posinf=float("inf"))
            med = t.median(0).values                  # robust to the seeds whose inner loop blew up
            x = list(range(1, len(med) + 1)) if key == "meta_train_loss" else list(range(len(med)))
            line, = ax.plot(x, med.clamp(max=1e6).tolist(), label=m)
            if len(runs) > 1:
                ax.fill_between(x, t.min(0).values.clamp(max=1e6).tolist(), t.max(0).values.clamp(max=1e6).tolist(),
                                alpha=0.12, color=line.get_color())
    limit = 2 * (1 + result["config"]["inner_momentum"])
    axes[2].axhline(limit, color="k", ls="--", lw=1, label=f"divergence limit 2(1+μ) = {limit:g}")
    for ax, (key, ylabel, title) in zip(axes, panels):
        ax.set(xlabel="meta-iteration (× meta-batch inner optimizations)", ylabel=ylabel, title=title, yscale="log")
    axes[0].set_ylim(0.1, 20)
    axes[1].set_ylim(0.01, 100)
    axes[0].legend(fontsize=8)
    axes[2].legend(fontsize=8)
    fig.suptitle("median over seeds (line) and min–max over seeds (band); values beyond the axes are inner-loop "
                 "blow-ups", fontsize=9)
    paths.append(_save(plt, fig, out, "curves.png"))
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    panels = [("cosine_own", "applied", "own trajectory: applied Σ_t g_t"),
              ("cosine_shared", "applied", "same states (HyperDistill runs): applied"),
              ("cosine_shared", "last_so", "same states: second-order part of g_T")]
    for ax, (table, key, title) in zip(axes, panels):
        for m, pts in result[table].items():
            its = sorted(pts, key=int)
            ax.errorbar([int(i) for i in its], [pts[i][key]["mean"] for i in its],
                        yerr=[0 if not math.isfinite(pts[i][key]["ci95"]) else pts[i][key]["ci95"] for i in its],
                        marker="o", capsize=3, label=m)
        ax.set(xlabel="meta-iteration", ylabel="cosine to exact RMD", title=title, ylim=(-1.05, 1.05))
        ax.axhline(0, color="gray", lw=0.5)
    axes[0].legend()
    paths.append(_save(plt, fig, out, "cosine.png"))
    return paths
