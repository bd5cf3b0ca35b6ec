"""Layer 6, the ``hypergradient`` command: ``demo`` (the main job), ``list``, ``verify``, ``reproduce``.
Imports any layer (nothing imports it)."""

from __future__ import annotations

import argparse
import sys
from typing import Any, Sequence


def _demo(args: argparse.Namespace) -> int:
    from . import demo
    torch_threads(args.threads)
    demo.run(outer_steps=args.outer_steps, T=args.T, hyper_lr=args.hyper_lr, seed=args.seed, json_path=args.json)
    return 0


def _list(args: argparse.Namespace) -> int:
    import json
    from ..estimators import REGISTRY
    from ..optim import IGNORED_OPTIONS, OPTIMIZERS
    est: list[dict[str, Any]] = [
        {"name": n, "kind": "estimator", "exact": c.exact, "online": c.online,
         "offline": True, "optimizer_hparams": c.optimizer_hparams, "memory": c.memory,
         "summary": (c.__doc__ or "").strip().splitlines()[0]} for n, c in sorted(REGISTRY.items())]
    opt: list[dict[str, Any]] = [
        {"name": n, "kind": "optimizer", "reproduces": f"torch.optim.{c.torch_class}",
         "hyperparameters": list(c.hparam_names), "defaults": dict(c.defaults),
         "torch_spellings": {k: list(v) for k, v in c.tuples.items()},
         "options": c.options(), "ignored_options": list(IGNORED_OPTIONS)} for n, c in sorted(OPTIMIZERS.items())]
    if args.json:
        print(json.dumps({"estimators": est, "optimizers": opt}, indent=2))
        return 0
    print(f"{'estimator':<15}{'exact':<7}{'online':<8}{'lr/mom':<8}{'memory':<40}summary")
    for e in est:
        print(f"{e['name']:<15}{'yes' if e['exact'] else 'no':<7}{'yes' if e['online'] else 'no':<8}"
              f"{'yes' if e['optimizer_hparams'] else 'no':<8}{e['memory'][:38]:<40}{e['summary']}")
    print(f"\n{'optimizer':<11}{'reproduces':<22}{'learnable hyperparameters (default)':<80}options")
    for o in opt:
        hps = ", ".join(f"{k}={v:g}" for k, v in o["defaults"].items())
        print(f"{o['name']:<11}{o['reproduces']:<22}{hps:<80}{', '.join(o['options'])}")
    print(f"\nevery optimizer: param groups (torch.optim's list of dicts, per-group values), maximize, clip= "
          f"(hg.optim.clip_by_norm / clip_by_value inside the step); accepted and ignored: {', '.join(IGNORED_OPTIONS)}")
    print("hyperparameter kinds: scalar, per group, per-tensor, element-wise, per-step schedule (shared blocks); "
          "loss hyperparameters, hyperparameter modules, model parts (Hypers(model=...))")
    return 0


def _verify(args: argparse.Namespace) -> int:
    from ..testing import verify
    torch_threads(args.threads)
    return verify.main(args.json)


# experiment -> (module under hypergradient.reproduce, what it reproduces)
REPRODUCTIONS = {
    "sinusoid": ("sinusoid", "HyperDistill App. G (Tables 3-4, Fig. 3)"),
    "schedules": ("schedules", "the non-greedy paper (Table 1, Figs. 2-3) on MNIST-1D and digits"),
    "evograd-toy": ("evograd_toy", "EvoGrad's 1-D toy (Sec. 4.1, Fig. 2)"),
    "rotation": ("rotation", "EvoGrad's learned rotation (Sec. 4.2, Table 3) on digits"),
    "label-noise": ("label_noise", "EvoGrad's Meta-Weight-Net under 40% label noise (Sec. 4.4, Figs. 5, 7)"),
}


def _reproduce(args: argparse.Namespace) -> int:
    import importlib
    module = importlib.import_module(f"..reproduce.{REPRODUCTIONS[args.experiment][0]}", __package__)
    module.main(quick=args.quick, seeds=args.seeds, out=args.out, workers=args.workers)
    return 0


def torch_threads(n: int) -> None:
    import torch
    if n:
        torch.set_num_threads(n)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="hypergradient", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    d = sub.add_parser("demo", help="learn per-layer learning rates and weight decay on digits by exact RMD")
    d.add_argument("--outer-steps", type=int, default=40)
    d.add_argument("-T", type=int, default=80, help="inner steps unrolled")
    d.add_argument("--hyper-lr", type=float, default=0.1)
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    d.add_argument("--json", help="also write the results to this file")
    d.set_defaults(func=_demo)
    l = sub.add_parser("list", help="every registered estimator and optimizer, with what it supports")
    l.add_argument("--json", action="store_true", help="print JSON instead of a table")
    l.set_defaults(func=_list)
    v = sub.add_parser("verify", help="run every estimator on float64 reference problems; non-zero exit if off")
    v.add_argument("--json", help="also write the table to this file")
    v.add_argument("--threads", type=int, default=0)
    v.set_defaults(func=_verify)
    r = sub.add_parser("reproduce", help="reproduce a paper's experiment (results.json, table.md, plots)")
    r.add_argument("experiment", choices=list(REPRODUCTIONS),
                   help="; ".join(f"{k}: {v[1]}" for k, v in REPRODUCTIONS.items()))
    r.add_argument("--quick", action="store_true", help="a smoke-test size (minutes; the numbers mean nothing)")
    r.add_argument("--seeds", type=int, default=None, help="evaluation seeds (default 5; 1 with --quick)")
    r.add_argument("--out", default=None, help="output directory (default results/EXPERIMENT, or "
                   "runs/EXPERIMENT-quick with --quick); finished seeds found there are not run again")
    r.add_argument("--workers", type=int, default=None, help="worker processes (default 2, 1 with --quick)")
    r.set_defaults(func=_reproduce)
    args = p.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
