"""The toy's summary (per population: the correlation of the mean estimate with the closed form, the
mean spread), ``table.md`` and the figures (Fig. 2 analogue; the trajectories)."""

from __future__ import annotations

import os
from typing import Any

import torch

from .config import ToyConfig

__all__ = ["summarize", "markdown", "plots", "CORRELATION_GOALS"]

CORRELATION_GOALS = {2: 0.8, 10: 0.95, 100: 0.98}      # issue 18's goals, per population


def summarize(cfg: ToyConfig, est: dict[int, dict[str, Any]], traj: dict[str, Any]) -> dict[str, Any]:
    rows, goals = {}, []
    for K, rec in est.items():
        E = torch.tensor(rec["estimates"], dtype=torch.float64)
        truth = torch.tensor(rec["truth"], dtype=torch.float64)
        mean, std = E.mean(1), E.std(1)
        corr = float(torch.corrcoef(torch.stack([mean, truth]))[0, 1])
        scale = float((mean * truth).sum() / (truth * truth).sum())     # least-squares scale of the closed form
        rows[str(K)] = {"correlation": corr, "mean_std": float(std.mean()), "scale_to_closed_form": scale,
                        "sign_agreement": float(((mean > 0) == (truth > 0)).double().mean())}
        target = CORRELATION_GOALS.get(K)
        if target is not None:
            goals.append({"name": f"population {K}: correlation of the mean estimate with (λ−1)/(λ+1)³",
                          "measured": round(corr, 4), "target": f">= {target}", "met": bool(corr >= target)})
    return {"config": cfg.to_dict(), "fingerprint": cfg.fingerprint(), "rows": rows, "goals": goals,
            "trajectories": traj, "quick": cfg.quick}


def markdown(result: dict[str, Any]) -> str:
    c = result["config"]
    lines = [f"# EvoGrad 1-D toy (§4.1): {c['n_lams']} values of λ in [{c['lam_lo']}, {c['lam_hi']}], {c['trials']} "
             f"estimates each at x*(λ), σ = {c['sigma']}, τ = {c['temperature']}, Gaussian noise", "",
             "| population | corr(mean estimate, closed form) | mean std of one estimate | scale vs closed form | "
             "sign agreement |", "|---|---|---|---|---|"]
    for K, r in result["rows"].items():
        lines.append(f"| {K} | {r['correlation']:.4f} | {r['mean_std']:.4f} | {r['scale_to_closed_form']:.3f} | "
                     f"{100 * r['sign_agreement']:.0f}% |")
    lines += ["", "Trajectories (Algorithm 2, lr 0.1): final λ", ""]
    for name, t in result["trajectories"].items():
        lines.append(f"- {name}: λ_end = {t['lam_end_mean']:.4f}" + (f" ± {t['lam_end_std']:.4f} (std over runs)"
                                                                     if t.get("lam_end_std") is not None else ""))
    lines += ["", "## Goals", ""] + [f"- [{'x' if g['met'] else ' '}] {g['name']}: {g['measured']} (target {g['target']})"
                                     for g in result["goals"]]
    return "\n".join(lines) + "\n"


def plots(cfg: ToyConfig, est: dict[int, dict[str, Any]], traj: dict[str, Any], out: str) -> list[str]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, len(est), figsize=(4.2 * len(est), 3.4), squeeze=False)
    for ax, (K, rec) in zip(axes[0], est.items()):
        E = torch.tensor(rec["estimates"], dtype=torch.float64)
        lam, truth = rec["lams"], rec["truth"]
        m, s = E.mean(1), E.std(1)
        scale = float((m * torch.tensor(truth)).sum() / (torch.tensor(truth) ** 2).sum())
        ax.fill_between(lam, (m - s).tolist(), (m + s).tolist(), alpha=0.25, label="EvoGrad ± std")
        ax.plot(lam, m.tolist(), label="EvoGrad mean")
        ax.plot(lam, [scale * t for t in truth], "k--", label=f"closed form × {scale:.2f}")
        ax.axhline(0, color="grey", lw=0.5)
        ax.set_title(f"population {K}")
        ax.set_xlabel("λ")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    files = [os.path.join(out, "fig2_estimates.png")]
    fig.savefig(files[0], dpi=110)
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(5, 3.4))
    for name, t in traj.items():
        for i, run in enumerate(t["runs"]):
            ax.plot(run["lam"], color="k" if name.startswith("closed") else None, lw=1.5 if i == 0 else 0.5,
                    alpha=1 if name.startswith("closed") else 0.6, label=name if i == 0 else None)
    ax.set_xlabel("step")
    ax.set_ylabel("λ")
    ax.legend(fontsize=6)
    fig.tight_layout()
    files.append(os.path.join(out, "trajectories.png"))
    fig.savefig(files[-1], dpi=110)
    plt.close(fig)
    return files
