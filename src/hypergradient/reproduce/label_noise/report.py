"""The label-noise table (test accuracy mean ± 95% CI over seeds, the learned weights), the Fig. 7
analogue (seconds and memory per step across widths), the goals, ``table.md`` and the plots."""

from __future__ import annotations

import os
from typing import Any

from ..common import ci95, paired
from .config import PAPER, LabelNoiseConfig
from .methods import COST_METHODS, LOSS_GRID

__all__ = ["summarize", "markdown", "plots"]


def summarize(cfg: LabelNoiseConfig, records: dict[str, list[dict[str, Any]]], costs: dict[str, Any]) -> dict[str, Any]:
    rows: dict[str, Any] = {}
    for m, recs in records.items():
        acc = [100 * r["test_acc"] for r in recs]
        row = {"test_acc": acc, "mean": ci95(acc)[0], "ci95": ci95(acc)[1],
               "seconds_mean": sum(r["seconds"] for r in recs) / len(recs)}
        if "weight_curve" in recs[0]:
            n = len(recs)
            row["weight_curve_mean"] = [sum(r["weight_curve"][i] for r in recs) / n for i in range(len(LOSS_GRID))]
            row["weight_clean_mean"] = sum(r["weight_clean"] for r in recs) / n
            row["weight_noisy_mean"] = sum(r["weight_noisy"] for r in recs) / n
        rows[m] = row
    e, t, b = rows["EvoGrad"], rows["T1-T2 (one_step)"], rows["baseline (unweighted)"]
    eb = paired(e["test_acc"], b["test_acc"])
    goals = [{"name": "EvoGrad within the 95% CI of T1-T2's test accuracy",
              "measured": f"{e['mean']:.2f} vs {t['mean']:.2f} ± {t['ci95']:.2f}", "target": "inside",
              "met": bool(abs(e["mean"] - t["mean"]) <= t["ci95"])},
             {"name": "EvoGrad above the unweighted baseline (paired 95% CI of the difference excludes 0)",
              "measured": f"{eb['mean']:+.2f} ± {eb['ci95']:.2f} points ({eb['verdict']})", "target": "> 0, significant",
              "met": bool(eb["significant"] and eb["mean"] > 0)}]
    if costs:
        big = max(costs, key=int)
        c = costs[big]
        ev, t12 = c["EvoGrad"], c["T1-T2 (one_step)"]
        tr = ev["seconds_median"] / t12["seconds_median"]
        mr = ev["heap_peak_bytes"] / t12["heap_peak_bytes"] if t12["heap_peak_bytes"] else float("nan")
        goals += [{"name": f"width {big} ({c['params']:,} weights): EvoGrad's seconds per step / T1-T2's",
                   "measured": f"{tr:.2f}x", "target": "<= 0.7x", "met": bool(tr <= 0.7)},
                  {"name": f"width {big}: EvoGrad's peak heap above the step's start / T1-T2's",
                   "measured": f"{mr:.2f}x (saved tensors {ev['saved_peak_bytes'] / max(t12['saved_peak_bytes'], 1):.2f}x)",
                   "target": "<= 0.5x", "met": bool(mr <= 0.5)}]
    return {"config": cfg.to_dict(), "fingerprint": cfg.fingerprint(), "rows": rows, "cost": costs, "paper": PAPER,
            "loss_grid": list(LOSS_GRID), "goals": goals, "quick": cfg.quick}


def markdown(result: dict[str, Any]) -> str:
    c = result["config"]
    n = len(next(iter(result["rows"].values()))["test_acc"])
    lines = [f"# EvoGrad, Meta-Weight-Net under {100 * c['noise']:.0f}% uniform label noise (§4.4) on {c['data']}: "
             f"MLP width {c['width']}, T = {c['T']}; {n} seeds (test accuracy %, mean ± 95% CI, Student t)", "",
             "| method | test acc. % | s / run | mean w, clean labels | mean w, noisy labels | learned w(ℓ) at ℓ = "
             + ", ".join(f"{x:g}" for x in result["loss_grid"]) + " |", "|---|---|---|---|---|---|"]
    for m, r in result["rows"].items():
        curve = ", ".join(f"{x:.3f}" for x in r["weight_curve_mean"]) if "weight_curve_mean" in r else "—"
        wc = f"{r['weight_clean_mean']:.3f}" if "weight_clean_mean" in r else "1"
        wn = f"{r['weight_noisy_mean']:.3f}" if "weight_noisy_mean" in r else "1"
        lines.append(f"| {m} | {r['mean']:.2f} ± {r['ci95']:.2f} | {r['seconds_mean']:.1f} | {wc} | {wn} | {curve} |")
    P = result["paper"]
    lines += ["", f"Paper ({P['dataset']}): T1-T2 {P['T1-T2 (one_step)']}, EvoGrad {P['EvoGrad']}, "
              f"baseline {P['baseline (unweighted)']}; memory {P['memory']}, time {P['time']}."]
    if result["cost"]:
        lines += ["", "## Fig. 7 analogue: one online step (hypergradient + model step), side by side in one process", "",
                  "| width | weights | " + " | ".join(f"{m} s | {m} heap MiB | {m} saved MiB" for m in COST_METHODS)
                  + " | time ratio | heap ratio |", "|---|---|" + "---|---|---|" * len(COST_METHODS) + "---|---|"]
        for w, r in result["cost"].items():
            cells = []
            for m in COST_METHODS:
                cells += [f"{r[m]['seconds_median'] * 1e3:.1f} ms", f"{r[m]['heap_peak_bytes'] / 2**20:.1f}",
                          f"{r[m]['saved_peak_bytes'] / 2**20:.1f}"]
            a, b = r[COST_METHODS[0]], r[COST_METHODS[1]]
            hr = a["heap_peak_bytes"] / b["heap_peak_bytes"] if b["heap_peak_bytes"] else float("nan")
            lines.append(f"| {w} | {r['params']:,} | " + " | ".join(cells) +
                         f" | {a['seconds_median'] / b['seconds_median']:.2f}x | {hr:.2f}x |")
    lines += ["", "## Goals", ""] + [f"- [{'x' if g['met'] else ' '}] {g['name']}: {g['measured']} (target {g['target']})"
                                     for g in result["goals"]]
    return "\n".join(lines) + "\n"


def plots(result: dict[str, Any], out: str) -> list[str]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    files = []
    fig, ax = plt.subplots(figsize=(5, 3.4))
    for m, r in result["rows"].items():
        if "weight_curve_mean" in r:
            ax.plot(result["loss_grid"], r["weight_curve_mean"], marker="o", label=m)
    ax.set_xlabel("training loss ℓ of an example")
    ax.set_ylabel("learned weight w(ℓ)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    files.append(os.path.join(out, "weights.png"))
    fig.savefig(files[-1], dpi=110)
    plt.close(fig)
    if result["cost"]:
        widths = [int(w) for w in result["cost"]]
        fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
        for m in COST_METHODS:
            axes[0].plot(widths, [result["cost"][str(w)][m]["heap_peak_bytes"] / 2**20 for w in widths], marker="o", label=m)
            axes[1].plot(widths, [result["cost"][str(w)][m]["seconds_median"] * 1e3 for w in widths], marker="o", label=m)
        axes[0].set_ylabel("peak heap above the step's start (MiB)")
        axes[1].set_ylabel("ms per step")
        for ax in axes:
            ax.set_xlabel("MLP width")
            ax.set_xscale("log", base=2)
            ax.legend(fontsize=7)
        fig.tight_layout()
        files.append(os.path.join(out, "fig7_cost.png"))
        fig.savefig(files[-1], dpi=110)
        plt.close(fig)
    return files
