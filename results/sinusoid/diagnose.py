"""Why HyperDistill does worse than the baselines here: evidence for results/sinusoid/README.md.

Run from the repository root:  .venv/bin/python results/sinusoid/diagnose.py  (≈ 1 min, 1 thread)

1. From the saved runs (seeds/*.json): how often each method's body λ pushed the inner loop past
   the divergence limit of heavy-ball SGD, lr·λ_max(H_head) > 2(1 + μ) = 3.8, on the meta-val tasks,
   and the meta-val MSE blow-ups that follow; HyperDistill's fitted θ.
2. At the initial state of every evaluation seed (the same (φ, λ) for all methods), on the 5 probe
   tasks: the size of each estimator's second-order part against its first-order part
   (‖g_SO‖ / ‖g_FO‖ at the last step; HyperDistill for every γ of the grid), the projection coefficient of the estimator's g_SO on RMD's
   (⟨g_SO, r_SO⟩ / ‖r_SO‖²: 1 = right size, > 1 = too large) and its cosine.
Writes results/sinusoid/diagnose.json and prints a summary.
"""

from __future__ import annotations

import glob
import json
import os
import statistics

import torch

from hypergradient.estimators import get
from hypergradient.reproduce import sinusoid as S

HERE = os.path.dirname(os.path.abspath(__file__))


def flat(d):
    return torch.cat([v.reshape(-1).double() for v in d.values()])


def saved_runs():
    res = json.load(open(os.path.join(HERE, "results.json")))
    out = {}
    for path in sorted(glob.glob(os.path.join(HERE, "seeds", "*_seed[0-9].json"))):
        r = json.load(open(path))
        if r.get("kind") != "main":
            continue
        lim = r["stability"][0]["limit"]
        over = [i for i, s in enumerate(r["stability"]) if s["max"] > lim]
        blown = [i for i, v in enumerate(r["meta_val_mse"]) if float(v) > 100]
        row = out.setdefault(r["method"], {"iterations_over_limit": [], "val_blowups": [], "max_lr_curvature": [],
                                           "test": [], "theta_range": []})
        row["iterations_over_limit"].append(len(over))
        row["val_blowups"].append(len(blown))
        row["max_lr_curvature"].append(max(s["max"] for s in r["stability"]))
        row["test"].append(r["meta_test"]["mean"])
        if r["theta"]:
            row["theta_range"].append([min(r["theta"]), max(r["theta"])])
    return res, out


def second_order_sizes(res, seeds=range(5)):
    cfg = S.SinusoidConfig(**{k: tuple(tuple(x) if isinstance(x, list) else x for x in v) if isinstance(v, list)
                              else v for k, v in res["config"].items()})
    chosen = res["chosen"]
    probe = S.task_set(cfg, "probe")
    variants = {"1-step": ("1-step", None), "N.IFT": ("N.IFT", chosen.get("N.IFT")),
                "DrMAD": ("DrMAD", None)}
    for g in cfg.gammas:                     # every γ of the grid, not only the chosen one
        variants[f"HyperDistill γ={g}"] = ("HyperDistill", {"gamma": g})
    rows = {m: {"so_over_fo": [], "so_projection_on_rmd": [], "so_cosine": [], "rmd_so_over_fo": []}
            for m in variants}
    for seed in seeds:
        learner = S.make_learner(cfg, seed)
        lam = {k: v.detach() for k, v in learner.init_hparams().items()}
        phi = learner.init_weights()
        rmd = get("rmd")
        for task in probe["tasks"]:
            p = learner.problem(task)
            ref = rmd(p, lam, T=cfg.T, state=p.init_state(phi))
            r_so, r_fo = flat(ref.indirect), flat(ref.direct)
            for m, (method, opts) in variants.items():
                est = S.make_estimator(method, cfg, seed + 7, opts)
                q = learner.problem(task)
                _, last, last_so = S.applied_hypergradient(est, q, lam, q.init_state(phi), cfg.T)
                g_so = flat(last_so)
                g_fo = flat(last) - g_so
                rows[m]["so_over_fo"].append(float(g_so.norm() / g_fo.norm()))
                rows[m]["so_projection_on_rmd"].append(float(g_so @ r_so / (r_so @ r_so)))
                rows[m]["so_cosine"].append(float(g_so @ r_so / (g_so.norm() * r_so.norm())))
                rows[m]["rmd_so_over_fo"].append(float(r_so.norm() / r_fo.norm()))
    return {m: {k: {"median": statistics.median(v), "mean": statistics.fmean(v), "min": min(v), "max": max(v)}
                for k, v in d.items()} for m, d in rows.items()}


def main():
    torch.set_num_threads(1)
    res, runs = saved_runs()
    sizes = second_order_sizes(res)
    out = {"runs": runs, "initial_state_second_order": sizes}
    with open(os.path.join(HERE, "diagnose.json"), "w") as fh:
        json.dump(out, fh, indent=1)
    print(f"{'method':<14}{'iters over limit (per seed)':<30}{'val blow-ups':<20}{'max lr·λmax':<28}")
    for m, r in runs.items():
        print(f"{m:<14}{str(r['iterations_over_limit']):<30}{str(r['val_blowups']):<20}"
              f"{', '.join(f'{x:.2f}' for x in r['max_lr_curvature']):<28}")
    if runs.get("HyperDistill", {}).get("theta_range"):
        print("HyperDistill θ range per seed:", [[round(a, 2), round(b, 2)] for a, b in runs["HyperDistill"]["theta_range"]])
    print("\nat the initial state (5 seeds × 5 probe tasks), last-step hypergradient g_T:")
    print(f"{'method':<22}{'‖g_SO‖/‖g_FO‖':>16}{'RMD ‖r_SO‖/‖r_FO‖':>20}{'proj. of g_SO on r_SO':>24}{'cos(g_SO, r_SO)':>18}")
    for m, d in sizes.items():
        print(f"{m:<22}{d['so_over_fo']['median']:>16.3f}{d['rmd_so_over_fo']['median']:>20.3f}"
              f"{d['so_projection_on_rmd']['median']:>24.3f}{d['so_cosine']['median']:>18.3f}   (medians)")


if __name__ == "__main__":
    main()
