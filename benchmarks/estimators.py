"""Cost of every registered hypergradient estimator on one problem, and how it scales with T and N.

Task: scikit-learn's digits, MLP 64-128-128-10, SGD (lr 0.05, momentum 0.9) on fixed batches of 128.
The hyperparameters are N L2 coefficients on N contiguous chunks of the flattened weights
(``loss.l2``, shape (N,), positive through exp), so that every estimator applies, those that cannot
differentiate optimizer hyperparameters (IFT, EvoGrad) included, and N can be varied freely.

For each estimator in ``hypergradient.REGISTRY`` (whatever is registered when this runs; an
estimator whose default construction or call fails is listed as skipped with the reason), per inner
optimization of T steps: median time, time per inner step, the bytes autograd saves (peak of live
saved tensors), the fresh-process peak RSS, and the primitive counts of ``Hypergradient.cost``.
Scaling: T ∈ {25, 50, 100, 200} at N = 8 and N ∈ {1, 8, 64, 256} at T = 50. Goal: FMD with ≤ 10
hyperparameters holds the same peak memory at T = 1000 as at T = 100 (within 10%).

Run: ``python benchmarks/estimators.py [--quick] [--json FILE]``.
"""

from __future__ import annotations

import os
import sys
import warnings

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common as C  # noqa: E402

import hypergradient as hg  # noqa: E402
from hypergradient.diagnostics import saved_bytes  # noqa: E402
from hypergradient.learners.data import digits_batches  # noqa: E402

LR, MOM, BATCH = 0.05, 0.9, 128
DIMS = (64, 128, 128, 10)
# options for estimators whose defaults do not fit a T-step offline call on this problem, and one
# variant per solver of "ift" (the former ift_cg / ift_neumann / ift_exact)
OPTIONS: dict[str, list[dict]] = {
    "rmd": [{"storage": "graph"}, {"storage": "recompute"}, {"storage": "checkpoint"}],
    "truncated_rmd": [{"K": 10}],
    "ift": [{"solver": "cg"}, {"solver": "neumann"}, {"solver": "dense"}],
}


def make_problem(N: int, T: int, dtype=torch.float32):
    model = C.mlp(DIMS, dtype)
    P = sum(p.numel() for p in model.parameters())
    chunk = torch.arange(P) * N // P           # which of the N coefficients each weight belongs to
    train, val = digits_batches(BATCH, 10, dtype)

    def train_loss(f, b, hp):
        sq = torch.cat([p.reshape(-1) for p in f.params.values()]) ** 2
        pen = torch.zeros(N, dtype=sq.dtype).index_add(0, chunk, sq)
        return F.cross_entropy(f(b[0]), b[1]) + (hp["l2"] * pen).sum()

    def val_loss(f, b, hp):
        return F.cross_entropy(f(b[0]), b[1])

    return hg.InnerProblem(model, train_loss, val_loss, hg.optim.sgd(lr=LR, momentum=MOM),
                           hg.Hypers(loss={"l2": hg.Hyper(torch.full((N,), 1e-4, dtype=dtype), positive="exp")}),
                           hg.Data(train, val), horizon=T)


def variants():
    """(label, registry name, options) for every registered estimator."""
    out = []
    for name in sorted(hg.REGISTRY):
        for opts in OPTIONS.get(name, [{}]):
            label = name + "".join(f"[{k}={v}]" for k, v in opts.items())
            out.append((label, name, opts))
    return out


def runner(name: str, opts: dict, N: int, T: int):
    pb = make_problem(N, T)
    lam = pb.init_hparams()

    def run():
        est = hg.estimators.get(name, **opts)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return est(pb, lam, T=T)
    return run


def build_cell(spec):
    run = runner(spec["name"], spec["opts"], spec["N"], spec["T"])
    warm = runner(spec["name"], spec["opts"], spec["N"], min(spec["T"], 3))
    return run, warm


def measure(label, name, opts, N, T, repeats, args, script, memory=True):
    run = runner(name, opts, N, T)
    try:
        h = run()
    except Exception as e:  # noqa: BLE001 - an estimator that needs options we do not know
        return {"label": label, "skipped": f"{type(e).__name__}: {str(e)[:400]}"}
    t = C.time_interleaved({label: run}, repeats, warmup=0)[label]
    saved = saved_bytes(run)
    rss = None
    if memory and not args.no_memory:
        m = C.peak_rss(script, {"name": name, "opts": opts, "N": N, "T": T}, args.threads)
        rss = None if m is None else m["peak"]
    cost = {k: getattr(h.cost, k) for k in ("steps", "vjps", "jvps", "hvps", "val_grads")}
    return {"label": label, "name": name, "options": opts, "N": N, "T": T, "time": t["median"],
            "time_samples": t["samples"], "time_per_step": t["median"] / T, "saved_peak": saved["peak"],
            "rss_peak": rss, "cost": cost, "hypergradient_norm": float(h.flat().norm())}


def main(argv=None):
    args = C.parser(__doc__.splitlines()[0]).parse_args(argv)
    if args.cell:
        return C.cell_main(build_cell, args)
    C.setup(args.threads)
    script = os.path.abspath(__file__)
    if args.quick:
        base_T, base_N, Ts, Ns, repeats, fmd_Ts = 20, 8, [40], [32], 1, (50, 200)
    else:
        base_T, base_N, Ts, Ns, repeats, fmd_Ts = 50, 8, [25, 50, 100, 200], [1, 8, 64, 256], 3, (100, 1000)
    vs = variants()
    print(f"registered: {sorted(hg.REGISTRY)}")
    base, skipped = [], {}
    for label, name, opts in vs:
        r = measure(label, name, opts, base_N, base_T, repeats, args, script, memory=not args.quick)
        if "skipped" in r:
            skipped[label] = r["skipped"]
            print(f"skip {label}: {r['skipped']}")
            continue
        base.append(r)
        print(f"{label:34s} T={base_T} N={base_N} {r['time'] * 1e3:8.1f} ms  {r['cost']}")
        sys.stdout.flush()
    ok = [(l, n, o) for l, n, o in vs if l not in skipped]
    scaling = []
    grid = [(base_N, T) for T in Ts if T != base_T] + [(N, base_T) for N in Ns if N != base_N]
    for label, name, opts in ok:
        for N, T in grid:
            r = measure(label, name, opts, N, T, repeats, args, script, memory=False)
            if "skipped" not in r:
                scaling.append(r)
        print(f"scaled {label}")
        sys.stdout.flush()
    # the FMD goal: flat memory in T with <= 10 hyperparameters
    goals, fmd = [], {}
    if "fmd" in hg.REGISTRY and not args.no_memory:
        for T in fmd_Ts:
            m = C.peak_rss(script, {"name": "fmd", "opts": {}, "N": 10, "T": T}, args.threads, timeout=1800)
            s = saved_bytes(runner("fmd", {}, 10, T))
            fmd[T] = {"rss_peak": None if m is None else m["peak"], "saved_peak": s["peak"]}
        a, b = fmd[fmd_Ts[1]]["rss_peak"], fmd[fmd_Ts[0]]["rss_peak"]
        note = "" if not args.quick else f"quick mode: T={fmd_Ts[1]} vs T={fmd_Ts[0]}"
        goals.append(C.goal(f"fmd (N=10) peak RSS at T={fmd_Ts[1]} ÷ at T={fmd_Ts[0]}",
                            None if a is None or not b else a / b, 1.1, note))
    else:
        goals.append(C.goal("fmd (N=10) peak RSS at T=1000 ÷ at T=100", None, 1.1,
                            "fmd not registered" if "fmd" not in hg.REGISTRY else "memory skipped"))
    text = render(base, scaling, skipped, fmd, goals, base_T, base_N)
    print()
    print(text)
    C.write_json(args.json, {"benchmark": "estimators", "quick": args.quick, "machine": C.machine(args.threads),
                             "settings": {"dims": DIMS, "lr": LR, "momentum": MOM, "batch": BATCH,
                                          "base_T": base_T, "base_N": base_N, "repeats": repeats,
                                          "dtype": "float32", "malloc_mmap_threshold": C.MMAP_THRESHOLD},
                             "registered": sorted(hg.REGISTRY), "skipped": skipped,
                             "goals": goals, "base": base, "scaling": scaling,
                             "fmd_memory": {str(k): v for k, v in fmd.items()}})


def render(base, scaling, skipped, fmd, goals, base_T, base_N) -> str:
    rows = [{"estimator": r["label"], "time ms": r["time"] * 1e3, "ms / step": r["time_per_step"] * 1e3,
             "saved MiB": C.mib(r["saved_peak"]), "peak RSS MiB": C.mib(r["rss_peak"]),
             **r["cost"]} for r in base]
    out = C.table(rows, ["estimator", "time ms", "ms / step", "saved MiB", "peak RSS MiB", "steps", "vjps",
                         "jvps", "hvps", "val_grads"],
                  f"estimators: one inner optimization, T={base_T}, N={base_N}")
    allr = base + scaling
    labels = [r["label"] for r in base]
    Ts = sorted({r["T"] for r in allr if r["N"] == base_N})
    Ns = sorted({r["N"] for r in allr if r["T"] == base_T})

    def scaling_row(label, key, values, fixed):
        """One table row: time and saved bytes of ``label`` over ``key`` ∈ values, the other axis fixed."""
        row = {"estimator": label}
        for v in values:
            m = [r for r in allr if r["label"] == label and r[key] == v and all(r[k] == x for k, x in fixed.items())]
            row[f"{key}={v} ms"] = m[0]["time"] * 1e3 if m else None
            row[f"{key}={v} saved MiB"] = C.mib(m[0]["saved_peak"]) if m else None
        return row
    trows = [scaling_row(l, "T", Ts, {"N": base_N}) for l in labels]
    nrows = [scaling_row(l, "N", Ns, {"T": base_T}) for l in labels]
    out += "\n" + C.table(trows, list(trows[0]) if trows else ["estimator"], f"scaling with T (N={base_N})")
    out += "\n" + C.table(nrows, list(nrows[0]) if nrows else ["estimator"], f"scaling with N (T={base_T})")
    if fmd:
        out += "\n" + C.table([{"T": T, "peak RSS MiB": C.mib(v["rss_peak"]), "saved MiB": C.mib(v["saved_peak"])}
                               for T, v in fmd.items()], ["T", "peak RSS MiB", "saved MiB"], "fmd memory, N=10")
    if skipped:
        out += "\nskipped: " + "; ".join(f"{k} ({v})" for k, v in skipped.items()) + "\n"
    return out + "\n" + C.goals_table(goals)


if __name__ == "__main__":
    main()
