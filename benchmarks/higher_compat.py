"""The higher-compatible layer against higher itself and against our native exact RMD.

The ``unroll`` protocol (benchmarks/unroll.py): digits, SGD with momentum 0.9 and weight decay 5e-4,
the learning rates learned per tensor ("tensor") or per element ("element"), MLPs mlp128, mlp512 and
deep20, T ∈ {10, 50, 100}. The same user script, written for higher (one param group per tensor,
``override={"lr": lrs}``, ``diffopt.step(loss)``, the meta-gradient of the validation loss with respect
to the rates), runs once with ``import higher`` and once with ``import hypergradient.higher as higher``;
``ours-graph`` is the native ``hg.estimate("rmd", storage="graph")`` on the same task. Peak RSS in a
fresh process with ``MALLOC_MMAP_THRESHOLD_=16384``, beside the bytes autograd saves.

Run: ``python benchmarks/higher_compat.py [--quick] [--json FILE]`` (higher from the bench extra; the
``higher`` column is skipped when it cannot be imported).
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common as C  # noqa: E402
import unroll as U  # noqa: E402

from hypergradient.diagnostics import saved_bytes  # noqa: E402

IMPLS = ("compat", "higher", "ours-graph")


def make(task: U.Task, impl: str):
    if impl == "ours-graph":
        return U.make_ours(task, "graph")
    if impl == "higher":
        return U.make_higher(task)
    import hypergradient.higher as compat
    return U.make_higher(task, compat)


def build_cell(spec):
    task = U.Task(spec["model"], spec["gran"])
    run = make(task, spec["impl"])
    return (lambda: run(spec["T"])), (lambda: run(2))


def measure(task, runs, T, repeats, mem, script, threads):
    outs = {i: runs[i](T) for i in runs}
    agree = {i: U.relerr(outs[i], outs["ours-graph"]) for i in outs}
    times = C.time_interleaved({i: (lambda r=runs[i]: r(T)) for i in runs}, repeats, warmup=0)
    saved = {i: saved_bytes(lambda r=runs[i]: r(T)) for i in runs}
    rss = {}
    for i in mem:
        m = C.peak_rss(script, {"model": task.name, "gran": task.gran, "T": T, "impl": i}, threads)
        rss[i] = None if m is None else m["peak"]
    return {"model": task.name, "gran": task.gran, "T": T, "time": {i: times[i]["median"] for i in runs},
            "time_samples": {i: times[i]["samples"] for i in runs}, "saved_peak": {i: saved[i]["peak"] for i in runs},
            "rss_peak": rss, "relerr_vs_rmd": agree}


def goals_of(cells):
    def worst(vals):
        vals = [v for v in vals if v is not None]
        return max(vals) if vals else None
    have_higher = any("higher" in c["time"] for c in cells)
    goals = []
    if have_higher:
        goals.append(C.goal("compat time ÷ higher, worst cell", worst(
            C.paired_ratio(c["time_samples"]["compat"], [c["time_samples"]["higher"]]) for c in cells), 1.0))
    goals.append(C.goal("compat time ÷ native rmd (graph), worst cell", worst(
        C.paired_ratio(c["time_samples"]["compat"], [c["time_samples"]["ours-graph"]]) for c in cells), 1.1))
    mem = [c for c in cells if c["gran"] == "element" and c["T"] >= 50 and c["rss_peak"].get("higher")]
    if not mem:   # quick mode: the longest element-wise cell measured
        mem = [c for c in cells if c["gran"] == "element" and c["rss_peak"].get("higher")][-1:]
    if mem:
        goals.append(C.goal("compat peak RSS ÷ higher, element-wise, T ∈ {50, 100}",
                            worst(U.ratio(c["rss_peak"]["compat"], c["rss_peak"]["higher"]) for c in mem), 0.8,
                            "" if mem[0]["T"] >= 50 else f"quick: measured at T={mem[0]['T']}"))
    goals.append(C.goal("compat meta-gradient relative error against native rmd, worst cell",
                        worst(c["relerr_vs_rmd"]["compat"] for c in cells), 1e-5, "float32"))
    return goals


def main(argv=None):
    p = C.parser(__doc__.splitlines()[0])
    p.add_argument("--models", help=f"comma-separated subset of {','.join(U.MODELS)} (full mode)")
    args = p.parse_args(argv)
    if args.cell:
        return C.cell_main(build_cell, args)
    C.setup(args.threads)
    if args.quick:
        grid, repeats = [("mlp128", "tensor", [10]), ("deep20", "element", [10, 20])], 3
    else:
        models = args.models.split(",") if args.models else list(U.MODELS)
        grid = [(m, g, [10, 50, 100]) for m in models for g in ("tensor", "element")]
        repeats = 5
    impls = [i for i in IMPLS if i != "higher" or U.available("higher")]
    script = os.path.abspath(__file__)
    cells = []
    for model, gran, Ts in grid:
        task = U.Task(model, gran)
        runs = {i: make(task, i) for i in impls}
        for T in Ts:
            mem = [] if args.no_memory or (args.quick and T != Ts[-1]) else impls
            c = measure(task, runs, T, repeats, mem, script, args.threads)
            cells.append(c)
            print(f"{model:7s} {gran:7s} T={T:<4d} " + " ".join(f"{i}={c['time'][i] * 1e3:.1f}ms" for i in impls)
                  + " rss " + " ".join(f"{i}={C.mib(v):.0f}MiB" for i, v in c["rss_peak"].items() if v))
            sys.stdout.flush()
    rows = [{"model": c["model"], "lr": c["gran"], "T": c["T"], "impl": i, "time ms": c["time"][i] * 1e3,
             "÷ higher": C.paired_ratio(c["time_samples"][i], [c["time_samples"]["higher"]]) if "higher" in c["time"] else None,
             "÷ rmd": C.paired_ratio(c["time_samples"][i], [c["time_samples"]["ours-graph"]]),
             "peak RSS MiB": C.mib(c["rss_peak"].get(i)),
             "RSS ÷ higher": U.ratio(c["rss_peak"].get(i), c["rss_peak"].get("higher")),
             "saved MiB": C.mib(c["saved_peak"][i]), "rel. err vs rmd": c["relerr_vs_rmd"][i]}
            for c in cells for i in c["time"]]
    goals = goals_of(cells)
    print()
    print(C.table(rows, list(rows[0]), "higher_compat: the higher-style script through each implementation"))
    print(C.goals_table(goals))
    C.write_json(args.json, {"benchmark": "higher_compat", "quick": args.quick, "machine": C.machine(args.threads),
                             "settings": {"lr0": U.LR0, "momentum": U.MOM, "weight_decay": U.WD, "batch": U.BATCH,
                                          "repeats": repeats, "dtype": "float32",
                                          "malloc_mmap_threshold": C.MMAP_THRESHOLD, "impls": impls},
                             "goals": goals, "cells": cells})


if __name__ == "__main__":
    main()
