"""The ``hypergradient`` command: ``demo`` (the main job), ``list``, ``verify``, ``reproduce``."""

from __future__ import annotations

import argparse
import sys


def _demo(args):
    from .experiments import demo
    torch_threads(args.threads)
    demo.run(outer_steps=args.outer_steps, T=args.T, hyper_lr=args.hyper_lr, seed=args.seed, json_path=args.json)
    return 0


def torch_threads(n):
    import torch
    if n:
        torch.set_num_threads(n)


def main(argv=None) -> int:
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
    args = p.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
