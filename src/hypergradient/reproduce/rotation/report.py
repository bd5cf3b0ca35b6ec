"""The rotation table (test accuracy on rotated images and the learned angle, mean ± 95% CI over seeds,
the paper's numbers beside), the goals, ``table.md`` and the angle-trajectory plot."""

from __future__ import annotations

import os
from typing import Any

from ..common import ci95, paired
from .config import METHODS, PAPER, RotationConfig

__all__ = ["summarize", "markdown", "plots"]


def summarize(cfg: RotationConfig, records: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    rows: dict[str, Any] = {}
    for m, recs in records.items():
        acc = [100 * r["test_acc"] for r in recs]
        ang = [r["angle_deg"] for r in recs]
        up = [100 * r["test_acc_upright"] for r in recs]
        rows[m] = {"test_acc": acc, "mean": ci95(acc)[0], "ci95": ci95(acc)[1], "angle": ang,
                   "angle_mean": ci95(ang)[0], "angle_ci95": ci95(ang)[1], "upright_mean": ci95(up)[0],
                   "seconds_mean": sum(r["seconds"] for r in recs) / len(recs),
                   "step_equivalents": recs[0]["cost"]}
    e, b = rows["EvoGrad"], rows["baseline"]
    d = paired(e["test_acc"], b["test_acc"])
    apart = e["mean"] - e["ci95"] > b["mean"] + b["ci95"]
    goals = [{"name": "EvoGrad's test accuracy >= baseline + 5 points, 95% CIs not overlapping",
              "measured": f"{e['mean']:.2f} ± {e['ci95']:.2f} vs {b['mean']:.2f} ± {b['ci95']:.2f} "
                          f"(+{d['mean']:.2f} ± {d['ci95']:.2f} paired; CIs {'apart' if apart else 'overlap'})",
              "target": ">= +5, apart", "met": bool(d["mean"] >= 5 and apart)},
             {"name": "EvoGrad's learned angle within [23°, 34°] (mean over seeds)",
              "measured": f"{e['angle_mean']:.2f}° ± {e['angle_ci95']:.2f}°", "target": "[23, 34]",
              "met": bool(23 <= e["angle_mean"] <= 34)}]
    for m in METHODS:
        if m not in ("baseline", "EvoGrad"):
            p = paired(e["test_acc"], rows[m]["test_acc"])
            rows[m]["evograd_minus_this"] = p
    return {"config": cfg.to_dict(), "fingerprint": cfg.fingerprint(), "rows": rows, "paper": PAPER,
            "goals": goals, "quick": cfg.quick}


def markdown(result: dict[str, Any]) -> str:
    c, P = result["config"], result["paper"]
    n = len(next(iter(result["rows"].values()))["test_acc"])
    lines = [f"# EvoGrad rotation (§4.2) on {c['data']}: training images upright, validation and test rotated "
             f"{c['angle_deg']:g}°; T = {c['T']} steps; {n} seeds (mean ± 95% CI, Student t)", "",
             "| method | test acc. (rotated) % | learned angle ° | test acc. upright % | s / run | paper acc. | paper angle |",
             "|---|---|---|---|---|---|---|"]
    for m, r in result["rows"].items():
        pa = f"{P[m][0]} ± {P[m][1]}" if m in P else "—"
        pang = f"{P['angle'][0]} ± {P['angle'][1]}" if m == "EvoGrad" else "—"
        ang = f"{r['angle_mean']:.2f} ± {r['angle_ci95']:.2f}" if m != "baseline" else "0 (fixed)"
        lines.append(f"| {m} | {r['mean']:.2f} ± {r['ci95']:.2f} | {ang} | {r['upright_mean']:.2f} | "
                     f"{r['seconds_mean']:.1f} | {pa} | {pang} |")
    lines += ["", f"(The paper's rotation-matched accuracy: {P['matched']}%; ours: the baseline's upright column.)",
              "", "## Goals", ""]
    lines += [f"- [{'x' if g['met'] else ' '}] {g['name']}: {g['measured']} (target {g['target']})" for g in result["goals"]]
    return "\n".join(lines) + "\n"


def plots(records: dict[str, list[dict[str, Any]]], out: str) -> list[str]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(5.5, 3.4))
    for i, (m, recs) in enumerate((m, r) for m, r in records.items() if m != "baseline"):
        for j, r in enumerate(recs):
            ax.plot(r["angle_trajectory"], color=f"C{i}", lw=0.8, alpha=0.8, label=m if j == 0 else None)
    ax.axhline(30, color="k", ls="--", lw=0.8, label="true 30°")
    ax.set_xlabel("recorded step")
    ax.set_ylabel("learned angle (°)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    path = os.path.join(out, "angles.png")
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return [path]
