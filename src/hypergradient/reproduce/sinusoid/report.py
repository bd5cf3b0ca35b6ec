"""The reports: the tuning choice on the meta-validation set, :func:`summarize` (Table 4, the Fig. 3
cosines, Table 3's costs, the curves and the goals, i.e. results.json less the run's metadata) and
:func:`markdown` (table.md)."""

from __future__ import annotations

from typing import Any, Callable, Iterable, Sequence, cast

import math
import statistics

from .config import BASELINES, INFEASIBLE, METHODS, PAPER_TABLE4, SinusoidConfig

__all__ = ["choose", "summarize", "markdown"]


# ---- the tuning choice ------------------------------------------------------------------------------
def choose(cfg: SinusoidConfig, grid: dict[str, list[dict[str, Any]]], records: dict[str, dict[str, Any]],
           path_of: Callable[[str, str, int, dict[str, Any]], str]
           ) -> tuple[dict[str, list[dict[str, Any]]], dict[str, dict[str, Any]]]:
    """Lowest mean final meta-validation MSE over the tuning seeds, per tuned method."""
    tuning, chosen = {}, {}
    for m, opts in grid.items():
        rows: list[dict[str, Any]] = []
        for o in opts:
            vals = [records[path_of("tune", m, s, o)]["meta_val_final"] for s in cfg.tune_seeds]
            vals = [float(v) for v in vals]
            rows.append({"options": o, "meta_val_mse": vals, "mean": statistics.fmean(vals)})
        best = min(rows, key=lambda r: r["mean"])
        tuning[m] = rows
        chosen[m] = best["options"]
    return tuning, chosen


# ---- summaries --------------------------------------------------------------------------------------
def _ci(values: Iterable[Any]) -> tuple[float, float]:
    from ...drivers.meta import confidence_interval
    vals = [float(v) for v in values]
    if not all(math.isfinite(v) for v in vals):
        return float("inf"), float("nan")
    return confidence_interval(vals)


def summarize(cfg: SinusoidConfig, main: dict, tuning: dict, chosen: dict, costs: dict) -> dict:
    table4: dict[str, Any] = {}
    cos_own: dict[str, Any] = {}
    cos_shared: dict[str, Any] = {}
    cost_rows: dict[str, Any] = {}
    curves: dict[str, Any] = {}
    for m, recs in main.items():
        mses = [float(r["meta_test"]["mean"]) for r in recs]
        mean, half = _ci(mses)
        table4[m] = {"mean": mean, "ci95": half, "per_seed": mses, "paper": PAPER_TABLE4[m],
                     "options": chosen.get(m, {}), "diverged": sum(r["diverged"] is not None for r in recs)}
        # own-trajectory cosines: mean ± CI over seeds at each checkpoint
        points: dict[str, Any] = {}
        for r in recs:
            for c in r["cosines"]:
                for key in ("applied", "last", "last_so"):
                    points.setdefault(c["iteration"], {}).setdefault(key, []).append(c[m][key])
        if points:
            cos_own[m] = {str(it): {k: dict(zip(("mean", "ci95"), _ci(v))) for k, v in d.items()}
                          for it, d in sorted(points.items())}
        vc = [r["meta_val_mse"] for r in recs if r["diverged"] is None]
        curves[m] = {"meta_val_mse": vc, "meta_train_loss": [r["meta_train_loss"] for r in recs],
                     "lr_curvature_median": [[x["median"] for x in r["stability"]] for r in recs],
                     "lr_curvature_max": [[x["max"] for x in r["stability"]] for r in recs]}
        if m in BASELINES:
            continue
        cost_rows[m] = {
            "in_run_seconds_per_inner": statistics.fmean(r["seconds_per_inner"] for r in recs
                                                         if r["seconds_per_inner"] is not None),
            "in_run_cost_per_inner": {k: statistics.fmean(r["cost_per_inner"][k] for r in recs)
                                      for k in recs[0]["cost_per_inner"]},
            "outer_steps_per_run": statistics.fmean(r["outer_steps"] for r in recs),
            **costs[m]}
    # shared-state cosines: every estimator at the HyperDistill runs' checkpoints
    for r in main.get("HyperDistill", []):
        for c in r["cosines"]:
            for m in METHODS:
                if m in c:
                    for key in ("applied", "last", "last_so"):
                        cos_shared.setdefault(m, {}).setdefault(str(c["iteration"]), {}).setdefault(key, []).append(
                            c[m][key])
    cos_shared = {m: {it: {k: dict(zip(("mean", "ci95"), _ci(v))) for k, v in d.items()} for it, d in pts.items()}
                  for m, pts in cos_shared.items()}
    ranking = sorted(table4, key=lambda m: table4[m]["mean"])
    paper_rank = sorted((m for m in PAPER_TABLE4 if PAPER_TABLE4[m]), key=lambda m: cast(tuple, PAPER_TABLE4[m])[0])
    ours_rank = [m for m in ranking if m in paper_rank]
    last = str(cfg.cosine_points[-1])
    hd_cos = cos_own.get("HyperDistill", {}).get(last, {}).get("applied", {}).get("mean")
    goals = {
        "hyperdistill_best": ranking[0] == "HyperDistill" if "HyperDistill" in ranking else None,
        "ordering_of_paper_methods": ours_rank, "paper_ordering": paper_rank,
        "ordering_matches": ours_rank == paper_rank,
        "hyperdistill_cosine_above_fo_and_1step_shared": _shared_above(cos_shared, ("FO", "1-step")),
        "hyperdistill_applied_cosine_final_own": hd_cos,
    }
    return {"config": cfg.to_dict(), "fingerprint": cfg.fingerprint(), "chosen": chosen, "tuning": tuning,
            "table4": table4, "ranking": ranking, "cosine_own": cos_own, "cosine_shared": cos_shared,
            "costs": cost_rows, "curves": curves, "goals": goals,
            "per_seed": {m: [{k: r[k] for k in ("seed", "options", "meta_test", "meta_val_final", "outer_steps",
                                                "seconds_per_inner", "wall_seconds", "cpu_seconds",
                                                "diverged", "theta", "cost_per_inner") if k in r}
                             for r in recs] for m, recs in main.items()}}


def _shared_above(cos_shared: dict[str, Any], others: Sequence[str]) -> dict[str, bool] | None:
    """Per key ('applied', 'last', 'last_so'): is HyperDistill's mean cosine above each of ``others``
    at every shared checkpoint?"""
    if "HyperDistill" not in cos_shared:
        return None
    out = {}
    for key in ("applied", "last", "last_so"):
        ok = True
        for it, d in cos_shared["HyperDistill"].items():
            for o in others:
                if o in cos_shared and cos_shared[o][it][key]["mean"] >= d[key]["mean"]:
                    ok = False
        out[key] = ok
    return out


BLOWUP = 1e4   # a mean meta-test MSE this large is reported as a blow-up, not as digits


def _seed_value(v: float) -> str:
    if not math.isfinite(v):
        return "inf"
    return f"{v:.1e}" if abs(v) >= BLOWUP else f"{v:.3f}"


def _fmt(mean: float, half: float, digits: int = 3) -> str:
    if not math.isfinite(mean):
        return "diverged"
    if abs(mean) >= BLOWUP:         # finite but blown up (some test tasks' inner loops): not a digit string
        return f"blew up ({mean:.1e})"
    return f"{mean:.{digits}f} ± {half:.{digits}f}"


def markdown(result: dict) -> str:
    cfg = result["config"]
    lines = [f"# Sinusoid regression (HyperDistill App. G) — hypergradient {result.get('version', '?')}", ""]
    lines += [f"{cfg['seeds']} seed(s), M = {cfg['iterations']} meta-iterations × meta-batch {cfg['meta_batch']}, "
              f"T = {cfg['T']}, meta-test on {cfg['test_tasks']} tasks ({cfg['eval_query']} query points each)"
              + (" — QUICK smoke-test size, numbers are not meaningful" if cfg["quick"] else ""), ""]
    lines += ["## Table 4: meta-test MSE (mean ± 95% CI over seeds)", "",
              "| method | options | ours | paper | ours per seed |", "|---|---|---|---|---|"]
    for m, r in sorted(result["table4"].items(), key=lambda kv: kv[1]["mean"]):
        paper = "—" if r["paper"] is None else _fmt(*r["paper"])
        opts = ", ".join(f"{k}={v}" for k, v in r["options"].items()) or "—"
        div = f" ({r['diverged']} diverged)" if r["diverged"] else ""
        seeds = ", ".join(_seed_value(float(v)) for v in r["per_seed"])
        lines.append(f"| {m} | {opts} | {_fmt(r['mean'], r['ci95'])}{div} | {paper} | {seeds} |")
    for m, (name, why) in INFEASIBLE.items():
        lines.append(f"| {m} (`{name}`) | — | {why} | — | — |")
    g = result["goals"]
    lines += ["", f"Ordering (ours, paper methods only): {' < '.join(g['ordering_of_paper_methods'])}  ",
              f"Ordering (paper): {' < '.join(g['paper_ordering'])}", ""]
    lines += ["## Tuning on the meta-validation set (final meta-val MSE, tuning seeds "
              f"{', '.join(map(str, cfg['tune_seeds']))})", "", "| method | options | meta-val MSE | chosen |",
              "|---|---|---|---|"]
    for m, rows in result["tuning"].items():
        for row in rows:
            opts = ", ".join(f"{k}={v}" for k, v in row["options"].items())
            vals = ", ".join(f"{v:.3f}" for v in row["meta_val_mse"])
            lines.append(f"| {m} | {opts} | {row['mean']:.3f} ({vals}) | "
                         f"{'✓' if row['options'] == result['chosen'][m] else ''} |")
    pts = [str(p) for p in cfg["cosine_points"]]
    lines += ["", "## Fig. 3: cosine similarity to exact RMD", "",
              "`applied` = what the method applies over one inner optimization (Σ_t g_t for online methods, the "
              "offline hypergradient for DrMAD/RMD) vs RMD's ∇_λ L_val(w_T); `last` = g_T vs RMD; `last_so` = "
              "second-order parts. Mean ± 95% CI over seeds of the mean over "
              f"{cfg['cosine_tasks']} probe tasks; λ fixed over the inner optimization.", ""]
    for title, table in (("Each method on its own meta-training trajectory", result["cosine_own"]),
                         ("Every method at the same states (checkpoints of the HyperDistill runs)",
                          result["cosine_shared"])):
        if not table:
            continue
        lines += [f"### {title}", "", "| method | measure | " + " | ".join(f"it {p}" for p in pts) + " |",
                  "|---|---|" + "---|" * len(pts)]
        for m in METHODS:
            if m not in table:
                continue
            for key in ("applied", "last", "last_so"):
                cells = [_fmt(table[m][p][key]["mean"], table[m][p][key]["ci95"]) if p in table[m] else "—"
                         for p in pts]
                lines.append(f"| {m} | {key} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += ["## Table 3: cost of one inner optimization (one task, T steps, with its outer steps)", "",
              "Seconds: median of interleaved repeats in one process (`bench s`) and the mean over the "
              "meta-training runs (`in-run s`; workers share the machine, so this is noisier). Peak memory: "
              "peak heap bytes in use above the start of one inner optimization (glibc mallinfo2 sampled after every ATen op); "
              "`saved` = peak bytes autograd held for backward. Counts per inner optimization from the "
              "meta-training runs (HyperDistill's include its LinearEstimation every "
              f"{cfg['hd_period']} inner optimizations).", "",
              "| method | bench s | in-run s | peak KiB | saved KiB | steps | VJPs | JVPs | HVPs | val grads | "
              "outer steps / run |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for m, c in result["costs"].items():
        k = c["in_run_cost_per_inner"]
        peak = "n/a" if c["peak_bytes"] is None else f"{c['peak_bytes'] / 1024:.0f}"
        lines.append(f"| {m} | {c['seconds_median']:.3f} | {c['in_run_seconds_per_inner']:.3f} | {peak} | "
                     f"{c['saved_tensor_peak_bytes'] / 1024:.0f} | {k['steps']:.1f} | {k['vjps']:.1f} | "
                     f"{k['jvps']:.1f} | {k['hvps']:.1f} | {k['val_grads']:.1f} | {c['outer_steps_per_run']:.0f} |")
    lines += ["", "RMD keeps autograd's graph of the T steps and runs one backward pass through it (the work of T "
                  "VJPs, not counted as VJPs); N.IFT's products are Hessian-vector products ((N + 1) per active step)."]
    le = result["costs"].get("HyperDistill", {}).get("linear_estimation")
    if le:
        lines += ["", f"HyperDistill's LinearEstimation: {le['seconds']:.3f} s, {le['cost']['vjps']} VJPs, "
                      f"{le['cost']['steps']} steps, once every {le['every']} inner optimizations."]
    lines += ["", f"Total wall time {result.get('wall_seconds', float('nan')) / 60:.1f} min "
                  f"({result.get('machine', {}).get('workers', '?')} worker process(es), "
                  f"{cfg['threads']} torch thread(s) each).", ""]
    return "\n".join(lines)
