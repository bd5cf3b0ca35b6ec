"""Summaries: Table 1 analogue (test accuracy, mean ± 95% CI over paired seeds, with Student's t), the
paired differences ours − each baseline, the Fig. 2 spreads, the cost table, the goals; ``table.md``."""

from __future__ import annotations

import math
import statistics
from typing import Any

from ..common import ci95, paired
from .config import METHODS, PAPER_TABLE1, SchedulesConfig

__all__ = ["ci95", "summarize", "markdown"]

OURS = "ours"
VERSUS = ("random search", "greedy HD", "hand-tuned (cosine)", "TPE", "non-greedy, unshared (RMD)",
          "ours (exact FMD)")


def _row(recs: list[dict[str, Any]]) -> dict[str, Any]:
    acc = [100 * r["test_acc"] for r in recs]
    m, h = ci95(acc)
    row = {"test_acc": acc, "mean": m, "ci95": h, "val_acc": [100 * r["val_acc"] for r in recs],
           "val_loss": [r["val_loss"] for r in recs], "seeds": [r["seed"] for r in recs],
           "step_equivalents": [r["step_equivalents"] for r in recs], "seconds": [r["seconds"] for r in recs],
           "diverged": [bool(r.get("diverged")) for r in recs]}
    if "at_equal_seconds" in recs[0]:
        eq = [100 * r["at_equal_seconds"]["test_acc"] for r in recs]
        row["at_equal_seconds"] = {"test_acc": eq, "mean": ci95(eq)[0], "ci95": ci95(eq)[1],
                                   "trials": [r["at_equal_seconds"]["trials"] for r in recs]}
        row["trials"] = [r["trials"] for r in recs]
        row["diverged_trials"] = [r["diverged_trials"] for r in recs]
    return row


def summarize(cfg: SchedulesConfig, records: dict[str, dict[str, list[dict[str, Any]]]],
              spreads: list[dict[str, Any]], costs: dict[str, Any]) -> dict[str, Any]:
    """``records[dataset][method]`` = the per-seed records (same seeds in the same order)."""
    table: dict[str, Any] = {}
    pairs: dict[str, Any] = {}
    goals: list[dict[str, Any]] = []
    for ds, by_method in records.items():
        table[ds] = {m: _row(by_method[m]) for m in METHODS if by_method.get(m)}
        ours = table[ds][OURS]["test_acc"]
        pairs[ds] = {m: paired(ours, table[ds][m]["test_acc"]) for m in VERSUS if m in table[ds]}
        for m, what in (("random search", "ours > random search"), ("greedy HD", "ours > greedy HD")):
            p = pairs[ds][m]
            lo_o, hi_m = table[ds][OURS]["mean"] - table[ds][OURS]["ci95"], table[ds][m]["mean"] + table[ds][m]["ci95"]
            goals.append({"name": f"{ds}: {what} (paired 95% CI of the difference excludes 0; CIs apart)",
                          "measured": f"{p['mean']:+.2f} ± {p['ci95']:.2f} points; {p['verdict']}; "
                                      f"CIs {'apart' if lo_o > hi_m else 'overlap'}",
                          "target": "> 0, significant", "met": bool(p["significant"] and p["mean"] > 0)})
        h = table[ds]["hand-tuned (cosine)"]
        o = table[ds][OURS]
        goals.append({"name": f"{ds}: ours within or above the hand-tuned grid's CI",
                      "measured": f"ours {o['mean']:.2f}, hand-tuned {h['mean']:.2f} ± {h['ci95']:.2f}",
                      "target": f">= {h['mean'] - h['ci95']:.2f}", "met": bool(o["mean"] >= h["mean"] - h["ci95"])})
        t, r = table[ds]["TPE"], table[ds]["random search"]
        goals.append({"name": f"{ds}: TPE beside random search (reported)",
                      "measured": f"TPE {t['mean']:.2f} ± {t['ci95']:.2f}, random {r['mean']:.2f} ± {r['ci95']:.2f}",
                      "target": "reported", "met": True})
    sp: dict[str, Any] = {}
    for s in spreads:
        sp.setdefault(s["source"], {})[s["kind"]] = {k: s[k] for k in ("hypervariance_median", "hypervariance_mean",
                                                                       "sign_fluctuation_mean", "rmd_rel_diff")}
    if "train" in sp and {"non-greedy", "shared"} <= set(sp["train"]):
        u, s_ = sp["train"]["non-greedy"]["hypervariance_median"], sp["train"]["shared"]["hypervariance_median"]
        goals.append({"name": "sharing cuts hypervariance: unshared / shared median std/|mean| under train-batch noise",
                      "measured": f"{u / s_:.2f}x ({u:.3g} vs {s_:.3g})", "target": ">= 3x", "met": bool(u >= 3 * s_)})
    if sp:
        worst = max(v["shared"]["sign_fluctuation_mean"] for v in sp.values() if "shared" in v)
        goals.append({"name": "sign fluctuation with sharing (mean over learning rates, worst source)",
                      "measured": f"{100 * worst:.2f}%", "target": "<= 5% (paper: about 1.5%)", "met": bool(worst <= 0.05)})
    fmd = costs.get("ours (FMD, Hessian products clipped)", {}).get("by_T", {})
    if len(fmd) >= 2:
        Ts = sorted(fmd, key=int)
        a, b = fmd[Ts[0]]["peak_heap_bytes"], fmd[Ts[-1]]["peak_heap_bytes"]
        if a and b:
            goals.append({"name": f"FMD's memory flat in T (peak heap at T={Ts[-1]} / T={Ts[0]})",
                          "measured": f"{b / a:.2f}x", "target": "<= 1.2x", "met": bool(b / a <= 1.2)})
    return {"config": cfg.to_dict(), "fingerprint": cfg.fingerprint(), "table1": table, "paired": pairs,
            "paper_table1": PAPER_TABLE1, "spread": sp, "cost": costs, "goals": goals, "quick": cfg.quick}


def _fmt(m: float, h: float) -> str:
    return f"{m:.1f} ± {h:.1f}" if math.isfinite(h) else f"{m:.1f}"


def markdown(result: dict[str, Any]) -> str:
    cfg = result["config"]
    lines = [f"# Non-greedy schedules: Table 1 analogue (test accuracy %, mean ± 95% CI, Student t, "
             f"{len(next(iter(next(iter(result['table1'].values())).values()))['seeds'])} paired seeds)", "",
             f"T = {cfg['T']} inner steps, batch {cfg['batch']}, MLP in-{cfg['width']}-{cfg['width']}-10, "
             f"{cfg['outer_steps']} outer steps; budget of random search / TPE = ours' step-equivalents.", ""]
    ds = list(result["table1"])
    lines.append("| method | " + " | ".join(ds) + " | paper MNIST | paper SVHN |")
    lines.append("|---|" + "---|" * (len(ds) + 2))
    for m in METHODS:
        cells = [_fmt(result["table1"][d][m]["mean"], result["table1"][d][m]["ci95"]) if m in result["table1"][d]
                 else "" for d in ds]
        paper = [f"{PAPER_TABLE1[p][m][0]} ± {PAPER_TABLE1[p][m][1]}" if m in PAPER_TABLE1[p] else "—"
                 for p in ("MNIST", "SVHN")]
        lines.append(f"| {m} | " + " | ".join(cells) + " | " + " | ".join(paper) + " |")
    lines += ["", "Random search and TPE at ours' wall-clock instead (test accuracy %; trials):", ""]
    for d in ds:
        for m in ("random search", "TPE"):
            r = result["table1"][d].get(m)
            if r:
                e = r["at_equal_seconds"]
                lines.append(f"- {d}, {m}: {_fmt(e['mean'], e['ci95'])} ({statistics.mean(e['trials']):.0f} trials; "
                             f"at equal step-equivalents {statistics.mean(r['trials']):.0f} trials, "
                             f"{statistics.mean(r['diverged_trials']):.0f} of all trials diverged)")
    lines += ["", "## Paired differences, ours − method (points; 95% CI)", "", "| vs | " + " | ".join(ds) + " |",
              "|---|" + "---|" * len(ds)]
    for m in VERSUS:
        cells = []
        for d in ds:
            p = result["paired"][d].get(m)
            cells.append(f"{p['mean']:+.2f} ± {p['ci95']:.2f} ({p['verdict']})" if p else "")
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    if result["spread"]:
        lines += ["", f"## Fig. 2 analogue ({cfg['spread_dataset']}, float64, T = {cfg['spread_T']}, "
                  f"{cfg['spread_values']} shared learning rates, P = {cfg['spread_samples']} + 1 runs per source)", "",
                  "| source | greedy std/\\|mean\\| (median) | unshared | shared | sign fluct. greedy | unshared | shared |",
                  "|---|---|---|---|---|---|---|"]
        for src, v in result["spread"].items():
            hv = [f"{v[k]['hypervariance_median']:.3g}" if k in v else "" for k in ("greedy", "non-greedy", "shared")]
            sf = [f"{100 * v[k]['sign_fluctuation_mean']:.1f}%" if k in v else "" for k in ("greedy", "non-greedy", "shared")]
            lines.append(f"| {src} | " + " | ".join(hv + sf) + " |")
    if result["cost"]:
        Ts = list(next(iter(result["cost"].values()))["by_T"])
        lines += ["", "## Cost per outer step (seed 0; peak in-use heap)", "",
                  "| method | per | " + " | ".join(f"step-eq. T={t} | s T={t} | peak MiB T={t}" for t in Ts) + " |",
                  "|---|---|" + "---|---|---|" * len(Ts)]
        for row, r in result["cost"].items():
            cells = []
            for t in Ts:
                c = r["by_T"][t]
                mib = f"{c['peak_heap_bytes'] / 2**20:.2f}" if c["peak_heap_bytes"] else "n/a"
                cells += [str(c["step_equivalents"]), f"{c['seconds']:.2f}", mib]
            lines.append(f"| {row} | {r['per']} | " + " | ".join(cells) + " |")
    lines += ["", "## Goals", ""]
    lines += [f"- [{'x' if g['met'] else ' '}] {g['name']}: {g['measured']} (target {g['target']})" for g in result["goals"]]
    return "\n".join(lines) + "\n"
