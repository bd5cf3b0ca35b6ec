"""The PNG figures: ``fig3_schedules_<dataset>.png`` (the learned learning-rate schedules of seed 0:
greedy, non-greedy unshared, non-greedy shared, and the hand-tuned cosine) and ``fig2_spread.png``
(hypervariance and sign fluctuation per source, greedy vs unshared vs shared)."""

from __future__ import annotations

import os
from typing import Any

__all__ = ["plots"]

FIG3 = {"greedy HD": "greedy (HD, online)", "non-greedy, unshared (RMD)": "non-greedy, unshared",
        "ours": "non-greedy + sharing (ours)", "hand-tuned (cosine)": "hand-tuned cosine"}


def plots(records: dict[str, dict[str, list[dict[str, Any]]]], spreads: list[dict[str, Any]], out: str) -> list[str]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    files = []
    for ds, by_method in records.items():
        fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
        for name, ax in zip(("lr", "momentum", "weight_decay"), axes):
            for m, label in FIG3.items():
                recs = by_method.get(m) or []
                if recs and name in recs[0]["schedule"]:
                    ax.plot(range(1, len(recs[0]["schedule"][name]) + 1), recs[0]["schedule"][name], label=label, lw=1.2)
            ax.set_title(f"{ds}: learned {name} (seed 0)")
            ax.set_xlabel("inner step")
        axes[0].legend(fontsize=7)
        fig.tight_layout()
        path = os.path.join(out, f"fig3_schedules_{ds}.png")
        fig.savefig(path, dpi=110)
        plt.close(fig)
        files.append(path)
    if spreads:
        sources = list(dict.fromkeys(s["source"] for s in spreads))
        kinds = ("greedy", "non-greedy", "shared")
        fig, axes = plt.subplots(2, len(sources), figsize=(3.2 * len(sources), 5.5), squeeze=False)
        for j, src in enumerate(sources):
            by = {s["kind"]: s for s in spreads if s["source"] == src}
            for i, (key, title) in enumerate((("hypervariance_median", "std/|mean| (median)"),
                                              ("sign_fluctuation_mean", "sign fluctuation"))):
                ax = axes[i][j]
                vals = [by[k][key] if k in by else 0.0 for k in kinds]
                ax.bar(range(3), vals, color=["tab:blue", "tab:purple", "tab:red"])
                ax.set_xticks(range(3), ["greedy", "unshared", "shared"], fontsize=8)
                ax.set_title(f"{src}: {title}", fontsize=9)
                if i == 0:
                    ax.set_yscale("log")
        fig.tight_layout()
        path = os.path.join(out, "fig2_spread.png")
        fig.savefig(path, dpi=110)
        plt.close(fig)
        files.append(path)
    return files
