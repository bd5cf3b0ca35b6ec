"""Layer 6, the ``hypergradient`` command: ``demo`` (the main job), ``list``, ``verify``, ``compare``,
``reproduce``. Imports any layer (nothing imports it)."""

from __future__ import annotations

import argparse
import itertools
import os
import shutil
import sys
import textwrap
from typing import Any, Sequence

from ..core.version import VERSION


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
         "summary": _summary(c.__doc__)} for n, c in sorted(REGISTRY.items())]
    opt: list[dict[str, Any]] = [
        {"name": n, "kind": "optimizer", "reproduces": f"torch.optim.{c.torch_class}",
         "hyperparameters": list(c.hparam_names), "defaults": dict(c.defaults),
         "torch_spellings": {k: list(v) for k, v in c.tuples.items()},
         "options": c.options(), "ignored_options": list(IGNORED_OPTIONS)} for n, c in sorted(OPTIMIZERS.items())]
    if args.json:
        print(json.dumps({"estimators": est, "optimizers": opt}, indent=2))
        return 0
    yn = {True: "yes", False: "no"}
    for line in table(["estimator", "exact", "online", "lr/mom", "memory", "summary"], [15, 6, 7, 7, 26, 0],
                      [[e["name"], yn[e["exact"]], yn[e["online"]], yn[e["optimizer_hparams"]], e["memory"],
                        e["summary"]] for e in est]):
        print(line)
    print()
    for line in table(["optimizer", "reproduces", "learnable hyperparameters (default)", "options"], [10, 21, 34, 0],
                      [[o["name"], o["reproduces"], ", ".join(f"{k}={v:g}" for k, v in o["defaults"].items()),
                        ", ".join(o["options"])] for o in opt]):
        print(line)
    width = shutil.get_terminal_size((120, 24)).columns - 1
    print("\n" + textwrap.fill(f"every optimizer: param groups (torch.optim's list of dicts, per-group values), "
                               f"maximize, clip= (hg.optim.clip_by_norm / clip_by_value inside the step); accepted "
                               f"and ignored: {', '.join(IGNORED_OPTIONS)}", width))
    print(textwrap.fill("hyperparameter kinds: scalar, per group, per-tensor, element-wise, per-step schedule (shared "
                        "blocks); loss hyperparameters, hyperparameter modules, model parts (Hypers(model=...))", width))
    return 0


def _summary(doc: str | None) -> str:
    """The first paragraph of a docstring on one line."""
    return " ".join((doc or "").strip().split("\n\n")[0].split())


def table(head: Sequence[str], widths: Sequence[int], rows: Sequence[Sequence[str]]) -> list[str]:
    """Lines of a text table whose cells wrap at word boundaries (textwrap) within their column;
    a width of 0 takes what is left of the terminal (at least 30 characters)."""
    rest = max(30, shutil.get_terminal_size((120, 24)).columns - sum(w + 1 for w in widths if w) - 1)
    widths = [w or rest for w in widths]
    out = []
    for row in [list(head), *rows]:
        cells = [textwrap.wrap(str(c), w, break_long_words=False, break_on_hyphens=False) or [""]
                 for c, w in zip(row, widths)]
        for parts in itertools.zip_longest(*cells, fillvalue=""):
            out.append(" ".join(f"{p:<{w}}" for p, w in zip(parts, widths)).rstrip())
    return out


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


def _compare(args: argparse.Namespace) -> int:
    from . import compare
    torch_threads(args.threads)
    return compare.run(args.entry, estimators=args.estimators, T=args.T, seed=args.seed, memory=args.memory,
                       json_path=args.json, plot_path=args.plot, reference=args.reference)


def _reproduce(args: argparse.Namespace) -> int:
    import importlib
    module = importlib.import_module(f"..reproduce.{REPRODUCTIONS[args.experiment][0]}", __package__)
    module.main(quick=args.quick, seeds=args.seeds, out=args.out, workers=args.workers)
    return 0


def torch_threads(n: int) -> None:
    import torch
    if n:
        torch.set_num_threads(n)


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Every option's help shows its default, unless the help already says what the default is."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        h = action.help or ""
        return h if "default" in h else super()._get_help_string(action)


def parser() -> argparse.ArgumentParser:
    """The ``hypergradient`` argument parser (every option has help text that shows its default)."""
    p = argparse.ArgumentParser(prog="hypergradient", formatter_class=HelpFormatter,
                                description="gradient-based hyperparameter optimization and meta-learning on PyTorch")
    p.add_argument("--version", action="version", version=f"%(prog)s {VERSION}", help="print the version and exit")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND",
                         help="what to run; hypergradient COMMAND --help lists its options")

    def command(name: str, help: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help, description=help, formatter_class=HelpFormatter)

    d = command("demo", "learn per-layer learning rates and weight decay on digits by exact RMD")
    d.add_argument("--outer-steps", type=int, default=40, help="outer (hyperparameter) steps")
    d.add_argument("-T", type=int, default=80, help="inner steps unrolled")
    d.add_argument("--hyper-lr", type=float, default=0.1, help="the outer optimizer's learning rate")
    d.add_argument("--seed", type=int, default=0, help="seed of the data split and the model's initialization")
    d.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    d.add_argument("--json", metavar="FILE", help="also write the results to this file")
    d.set_defaults(func=_demo)
    l = command("list", "every registered estimator and optimizer, with what it supports")
    l.add_argument("--json", action="store_true", help="print JSON instead of a table")
    l.set_defaults(func=_list)
    v = command("verify", "run every estimator on float64 reference problems; non-zero exit if off")
    v.add_argument("--json", metavar="FILE", help="also write the table to this file")
    v.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    v.set_defaults(func=_verify)
    c = command("compare", "every estimator on your problem against exact reverse mode: cosine, norm ratio, "
                "sign agreement, time, memory, cost")
    c.add_argument("entry", metavar="module:function", help="a function (no arguments) returning an InnerProblem "
                   "or (problem, hparams): package.module:function or path/to/file.py:function")
    c.add_argument("--estimators", metavar="NAMES", default=None, help="comma-separated, options in brackets, e.g. "
                   "rmd,one_step,ift[solver=dense] (default: every registered estimator)")
    c.add_argument("--reference", metavar="NAME", default="rmd", help="the exact estimator the others are measured "
                   "against, options in brackets, e.g. rmd[storage=checkpoint] or fmd")
    c.add_argument("-T", type=int, default=None, help="inner steps (default: the problem's horizon)")
    c.add_argument("--seed", type=int, default=0, help="seed of the stochastic estimators and torch's generator")
    c.add_argument("--memory", choices=["saved", "heap", "both", "none"], default="saved",
                   help="memory meter: bytes autograd saves (saved), glibc heap peak (heap, slower), both, none")
    c.add_argument("--json", metavar="FILE", help="also write the rows to this JSON file")
    c.add_argument("--plot", metavar="FILE.png", help="also save a bar plot (cosine, norm ratio) here (needs matplotlib)")
    c.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    c.set_defaults(func=_compare)
    r = command("reproduce", "reproduce a paper's experiment (results.json, table.md, plots)")
    r.add_argument("experiment", choices=list(REPRODUCTIONS),
                   help="; ".join(f"{k}: {v[1]}" for k, v in REPRODUCTIONS.items()).replace("%", "%%"))
    r.add_argument("--quick", action="store_true", help="a smoke-test size (minutes; the numbers mean nothing)")
    r.add_argument("--seeds", type=int, default=None, help="evaluation seeds (default 5; 1 with --quick)")
    r.add_argument("--out", default=None, help="output directory (default results/EXPERIMENT, or "
                   "runs/EXPERIMENT-quick with --quick); finished seeds found there are not run again")
    r.add_argument("--workers", type=int, default=None, help="worker processes (default 2, 1 with --quick)")
    r.set_defaults(func=_reproduce)
    return p


def _quiet_stdout() -> None:
    """Point stdout at the null device, so that the interpreter's final flush into a closed pipe is
    silent (Python's documented handling of SIGPIPE; works on Linux and Windows alike)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass                                # stdout without a file descriptor (captured): nothing to flush


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        code: int = args.func(args)
        sys.stdout.flush()
    except BrokenPipeError:                 # `hypergradient list --json | head -1`: the reader is gone
        _quiet_stdout()
        return 1
    return code


if __name__ == "__main__":
    sys.exit(main())
