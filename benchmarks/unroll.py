"""Exact reverse-mode hypergradient through T unrolled steps: ours against the peers.

Task: scikit-learn's digits, the inner optimizer SGD (momentum 0.9, weight decay 5e-4, lr 0.05) or
Adam (β = 0.9 / 0.999, ε = 1e-8, lr 1e-3), the learning rate learned per parameter tensor ("tensor")
or per element ("element"), T inner steps on fixed batches of 128 (the same order everywhere), the
hypergradient of the validation loss with respect to the learning rates. Models: MLPs 64-128-128-10
and 64-512-512-10 and a deep narrow MLP of 20 linear layers of width 32 (40 parameter tensors:
per-tensor overhead dominates). Full grid: SGD on the MLPs at T ∈ {10, 50, 100, 200} and on deep20
at T ∈ {50, 100, 200}; Adam on all three at T = 100 (``--models``, ``--opts``, ``--horizons`` select).

Adam's square root: where a gradient entry is exactly zero at every step (digits' always-blank
pixels), ∂√s/∂s = ∞ meets a zero and reverse-over-reverse gives NaN. Ours uses a square root with
derivative 0 at 0 (same values); higher does the equivalent; TorchOpt needs its ``eps_root`` option
(here 1e-30: the values are unchanged in float32, the derivative finite), and the hand-written loops
(torchfunc, manual, manual-flat) take √(s + 1e-30) the same way.

Implementations:
  ours-graph / ours-recompute / ours-checkpoint   ``hypergradient.estimate("rmd", storage=...)``
  torchfunc      hand-written loop: torch.func.functional_call + autograd.grad(create_graph=True)
  manual         the same loop with the MLP written out (F.linear), no module at all: a floor
  manual-flat    ``manual`` on one flat buffer (weights, momentum, learning rates): what our flat
                 layout does, written out for this MLP (exact; agrees to rounding, not bitwise)
  higher         ``higher.innerloop_ctx`` (one param group per tensor to learn per-tensor lrs)
  torchopt       TorchOpt's functional API (SGD: weight decay + trace; Adam: scale_by_adam; then a
                 custom per-leaf −lr scaling, the only way it takes per-tensor or element-wise rates)
  train          plain training, torch.optim, no graph: the cost of the steps themselves
"peers" for the goals are torchfunc, higher and torchopt (the issue's list); ``manual`` and
``manual-flat`` are references. ``higher`` and ``torchopt`` are optional and skipped when they cannot be imported.

Run: ``python benchmarks/unroll.py [--quick] [--json FILE]``.
"""

from __future__ import annotations

import copy
import json
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

LR0, MOM, WD, BATCH = 0.05, 0.9, 5e-4, 128
ADAM_LR0, B1, B2, EPS, EPS_ROOT = 1e-3, 0.9, 0.999, 1e-8, 1e-30
OPTS = ("sgd", "adam")
MODELS = {
    "mlp128": (64, 128, 128, 10),
    "mlp512": (64, 512, 512, 10),
    "deep20": (64,) + (32,) * 19 + (10,),
}
OURS = ("ours-graph", "ours-recompute", "ours-checkpoint")
PEERS = ("torchfunc", "higher", "torchopt")
IMPLS = OURS + PEERS + ("manual", "manual-flat", "train")
_PEERS: dict = {}


def peer(name: str):
    """The optional peer module (imported on first use), or None when it cannot be imported."""
    if name not in _PEERS:
        _PEERS[name] = C.optional(name)
    return _PEERS[name]


def available(impl: str) -> bool:
    return peer(impl) is not None if impl in ("higher", "torchopt") else True


class Task:
    """One model, its initial weights, the data, the inner optimizer and the initial learning rates."""

    def __init__(self, model: str, gran: str, opt: str = "sgd", dtype=torch.float32):
        self.model = C.mlp(MODELS[model], dtype)
        self.names = [n for n, _ in self.model.named_parameters()]
        self.params0 = [p.detach().clone() for p in self.model.parameters()]
        self.train, self.val = digits_batches(BATCH, 10, dtype)
        self.name, self.gran, self.opt, self.dtype = model, gran, opt, dtype
        self.lr0 = LR0 if opt == "sgd" else ADAM_LR0

    def step(self, params, state, grads, lrs, t):
        """The hand-written loops' step t (0-based): (new params, new state)."""
        return (_sgd_step if self.opt == "sgd" else _adam_step)(params, state, grads, lrs, t)

    def torch_optimizer(self, groups, lr=None):
        lr = self.lr0 if lr is None else lr
        if self.opt == "sgd":
            return torch.optim.SGD(groups, lr=lr, momentum=MOM, weight_decay=WD)
        return torch.optim.Adam(groups, lr=lr, betas=(B1, B2), eps=EPS)

    def batch(self, t: int):  # t = 0 .. T-1
        return self.train[t % len(self.train)]

    def lrs(self):
        shape = (lambda p: ()) if self.gran == "tensor" else (lambda p: p.shape)
        return [torch.full(shape(p), self.lr0, dtype=self.dtype, requires_grad=True) for p in self.params0]

    @property
    def nparams(self):
        return sum(p.numel() for p in self.params0)


# ---- implementations: each returns run(T) -> list of hypergradients aligned with task.names --------
def make_ours(task: Task, storage: str):
    ce = lambda f, b, hp: F.cross_entropy(f(b[0]), b[1])  # noqa: E731
    opt = hg.optim.sgd(lr=hg.Hyper(LR0, task.gran), momentum=MOM, weight_decay=WD) if task.opt == "sgd" else \
        hg.optim.adam(lr=hg.Hyper(ADAM_LR0, task.gran), betas=(B1, B2), eps=EPS)
    pb = hg.InnerProblem(task.model, ce, ce, opt, hg.Hypers(), hg.Data(task.train, task.val))
    lam = pb.init_hparams()
    keys = [f"optim.lr[{n}]" for n in task.names]
    est = hg.estimators.get("rmd", storage=storage)

    def run(T):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            h = est(pb, lam, T=T)
        return [h.value[k] for k in keys]
    return run


def _sgd_step(params, bufs, grads, lrs, t):
    new_p, new_v = [], []
    for i, (p, g) in enumerate(zip(params, grads)):
        g = g + WD * p
        v = g if t == 0 else MOM * bufs[i] + g
        new_p.append(p - lrs[i] * v)
        new_v.append(v)
    return new_p, new_v


def _adam_step(params, state, grads, lrs, t):
    """Adam as a user writes it (Kingma & Ba, Algorithm 1), with √(s + 1e-30) (module docstring)."""
    ms, ss = state if state is not None else ([0.0] * len(params), [0.0] * len(params))
    c1, c2 = 1 - B1 ** (t + 1), (1 - B2 ** (t + 1)) ** 0.5
    new_p, new_m, new_s = [], [], []
    for p, g, m, s, lr in zip(params, grads, ms, ss, lrs):
        m = B1 * m + (1 - B1) * g
        s = B2 * s + (1 - B2) * g * g
        new_p.append(p - (lr / c1) * m / ((s + EPS_ROOT).sqrt() / c2 + EPS))
        new_m.append(m)
        new_s.append(s)
    return new_p, (new_m, new_s)


def make_torchfunc(task: Task):
    model, names = task.model, task.names

    def loss_at(params, b):
        return F.cross_entropy(torch.func.functional_call(model, dict(zip(names, params)), (b[0],)), b[1])

    def run(T):
        lrs = task.lrs()
        params = [p.clone().requires_grad_() for p in task.params0]
        bufs = None
        for t in range(T):
            grads = torch.autograd.grad(loss_at(params, task.batch(t)), params, create_graph=True)
            params, bufs = task.step(params, bufs, grads, lrs, t)
        return list(torch.autograd.grad(loss_at(params, task.val), lrs))
    return run


def mlp_forward(params, x):
    """The benchmark MLP written out: (weight, bias) pairs with ReLU between the layers."""
    n = len(params)
    for i in range(0, n, 2):
        x = F.linear(x, params[i], params[i + 1])
        if i + 2 < n:
            x = torch.relu(x)
    return x


def make_manual(task: Task):
    def run(T):
        lrs = task.lrs()
        params = [p.clone().requires_grad_() for p in task.params0]
        bufs = None
        for t in range(T):
            x, y = task.batch(t)
            grads = torch.autograd.grad(F.cross_entropy(mlp_forward(params, x), y), params, create_graph=True)
            params, bufs = task.step(params, bufs, grads, lrs, t)
        return list(torch.autograd.grad(F.cross_entropy(mlp_forward(params, task.val[0]), task.val[1]), lrs))
    return run


def make_manual_flat(task: Task):
    """``manual`` with every tensor (weights, momentum, learning rates) kept as one flat buffer: the
    layer weights are views into it, autograd returns one flat gradient, and the optimizer step is the
    same few ops whatever the number of tensors. Not a peer: the library's flat layout
    (``hypergradient.core.flat``) written out by hand, without a module (exact, but it sums some
    gradient terms in another order, so it agrees to rounding, not bitwise)."""
    shapes = [p.shape for p in task.params0]
    sizes = [p.numel() for p in task.params0]

    def forward(flat, x):
        return mlp_forward([a.view(s) for a, s in zip(flat.split(sizes), shapes)], x)

    def run(T):
        lrs = task.lrs()
        lr = torch.cat([lr.expand(s).reshape(-1) for lr, s in zip(lrs, shapes)])
        flat = torch.cat([p.reshape(-1) for p in task.params0]).requires_grad_()
        state = None
        for t in range(T):
            x, y = task.batch(t)
            g, = torch.autograd.grad(F.cross_entropy(forward(flat, x), y), flat, create_graph=True)
            (flat,), state = task.step([flat], state, [g], [lr], t)
        return list(torch.autograd.grad(F.cross_entropy(forward(flat, task.val[0]), task.val[1]), lrs))
    return run


def make_higher(task: Task, higher=None):
    """The script a higher user writes (``higher``: the module to run it with; the installed higher by
    default, ``hypergradient.higher`` in benchmarks/higher_compat.py)."""
    higher = higher or peer("higher")
    model = copy.deepcopy(task.model)

    def run(T):
        lrs = task.lrs()
        opt = task.torch_optimizer([{"params": [p]} for p in model.parameters()])
        with higher.innerloop_ctx(model, opt, copy_initial_weights=True, override={"lr": lrs}) as (fm, dopt):
            for t in range(T):
                x, y = task.batch(t)
                dopt.step(F.cross_entropy(fm(x), y))
            return list(torch.autograd.grad(F.cross_entropy(fm(task.val[0]), task.val[1]), lrs))
    return run


def make_torchopt(task: Task):
    torchopt = peer("torchopt")
    from torchopt.alias.utils import flip_sign_and_add_weight_decay

    model, names = task.model, task.names

    def scale_by_neg_lrs(lrs):
        """The custom transform TorchOpt needs for per-tensor / element-wise learning rates."""
        def init_fn(params):
            return torchopt.base.EmptyState()

        def update_fn(updates, state, *, params=None, inplace=True):
            return tuple(-lr * u for lr, u in zip(lrs, updates)), state
        return torchopt.base.GradientTransformation(init_fn, update_fn)

    def loss_at(params, b):
        return F.cross_entropy(torch.func.functional_call(model, dict(zip(names, params)), (b[0],)), b[1])

    def run(T):
        lrs = task.lrs()
        params = tuple(p.clone().requires_grad_() for p in task.params0)
        if task.opt == "sgd":
            tx = torchopt.chain(flip_sign_and_add_weight_decay(WD), torchopt.transform.trace(momentum=MOM),
                                scale_by_neg_lrs(lrs))
        else:
            tx = torchopt.chain(torchopt.transform.scale_by_adam(b1=B1, b2=B2, eps=EPS, eps_root=EPS_ROOT,
                                                                 moment_requires_grad=True), scale_by_neg_lrs(lrs))
        state = tx.init(params)
        for t in range(T):
            grads = torch.autograd.grad(loss_at(params, task.batch(t)), params, create_graph=True)
            updates, state = tx.update(grads, state, params=params, inplace=False)
            params = torchopt.apply_updates(params, updates, inplace=False)
        return list(torch.autograd.grad(loss_at(params, task.val), lrs))
    return run


def make_train(task: Task):
    model = copy.deepcopy(task.model)

    def run(T):
        with torch.no_grad():
            for p, p0 in zip(model.parameters(), task.params0):
                p.copy_(p0)
        opt = task.torch_optimizer(model.parameters())
        for t in range(T):
            x, y = task.batch(t)
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(model(x), y).backward()
            opt.step()
        with torch.no_grad():
            return [F.cross_entropy(model(task.val[0]), task.val[1])]
    return run


def make(task: Task, impl: str):
    if impl.startswith("ours-"):
        return make_ours(task, impl[5:])
    return {"torchfunc": make_torchfunc, "manual": make_manual, "manual-flat": make_manual_flat,
            "higher": make_higher, "torchopt": make_torchopt, "train": make_train}[impl](task)


def build_cell(spec):
    """Child side of the peak-RSS measurement: one implementation on one cell."""
    task = Task(spec["model"], spec["gran"], spec.get("opt", "sgd"))
    run = make(task, spec["impl"])
    return (lambda: run(spec["T"])), (lambda: run(2))


# ---- the benchmark ----------------------------------------------------------------------------------
def relerr(a, b) -> float:
    a = torch.cat([x.detach().reshape(-1).double() for x in a])
    b = torch.cat([x.detach().reshape(-1).double() for x in b])
    return float((a - b).norm() / b.norm().clamp_min(1e-30))


def measure_cell(task: Task, runs: dict, T: int, repeats: int, tries: int, mem: list, script: str,
                 threads: int) -> dict:
    impls = list(runs)
    # numerical agreement (one run each; reference: the hand-written torch.func loop)
    outs = {i: runs[i](T) for i in impls if i != "train"}
    agree = {i: relerr(outs[i], outs["torchfunc"]) for i in outs}
    times = C.time_interleaved({i: (lambda r=runs[i]: r(T)) for i in impls}, repeats, warmup=0, max_tries=tries)
    saved = {i: saved_bytes(lambda r=runs[i]: r(T)) for i in impls if i != "train"}
    rss = {}
    for i in mem:
        m = C.peak_rss(script, {"model": task.name, "gran": task.gran, "opt": task.opt, "T": T, "impl": i}, threads)
        rss[i] = None if m is None else m["peak"]
    return {"model": task.name, "opt": task.opt, "gran": task.gran, "T": T, "nparams": task.nparams,
            "ntensors": len(task.names), "time": {i: times[i]["median"] for i in impls},
            "time_min": {i: times[i]["min"] for i in impls},
            "time_samples": {i: times[i]["samples"] for i in impls},
            "other_load": {i: times[i]["load"] for i in impls},
            "saved_peak": {i: saved[i]["peak"] for i in saved},
            "saved_total": {i: saved[i]["total"] for i in saved},
            "rss_peak": rss, "relerr_vs_torchfunc": agree}


def main(argv=None):
    p = C.parser(__doc__.splitlines()[0])
    p.add_argument("--models", help=f"comma-separated subset of {','.join(MODELS)} (full mode)")
    p.add_argument("--horizons", help="comma-separated subset of T (full mode), e.g. 100,200")
    p.add_argument("--opts", help=f"comma-separated subset of {','.join(OPTS)} (full mode)")
    p.add_argument("--render", metavar="FILE[,FILE]", help="recompute the tables and goals from the cells of "
                   "earlier runs' JSON (no measuring; a later file's cell replaces an earlier one's); with "
                   "--json, write the result")
    args = p.parse_args(argv)
    if args.cell:
        return C.cell_main(build_cell, args)
    if args.render:
        runs, cells = [], {}
        for path in args.render.split(","):
            with open(path) as f:
                runs.append(json.load(f))
            for c in runs[-1]["cells"]:
                c.setdefault("opt", "sgd")                     # runs before the optimizer axis were SGD
                cells[c["model"], c["opt"], c["gran"], c["T"]] = c
        args.quick = runs[-1]["quick"]
        settings = {**runs[-1]["settings"], "merged_from": args.render.split(","),
                    "models": sorted({k[0] for k in cells}), "horizons": sorted({k[3] for k in cells})}
        return report(list(cells.values()), args, settings, runs[-1]["machine"])
    C.setup(args.threads)
    if args.quick:  # a smoke test: two models, short horizons, peak RSS at the longest one only
        grid = [("mlp128", "sgd", "tensor", [10, 30]), ("deep20", "sgd", "element", [10, 20]),
                ("mlp128", "adam", "element", [10])]
        repeats, tries = 3, 1
        mem_impls = ("ours-graph", "ours-checkpoint", "torchfunc", "torchopt")
        mem_cell = lambda model, gran, T: T > 10  # noqa: E731
    else:
        models = args.models.split(",") if args.models else list(MODELS)
        opts = args.opts.split(",") if args.opts else list(OPTS)
        want = [int(x) for x in args.horizons.split(",")] if args.horizons else None

        def horizons(model, opt):
            if want:
                return want
            return [100] if opt == "adam" else [50, 100, 200] if model == "deep20" else [10, 50, 100, 200]
        grid = [(m, o, g, horizons(m, o)) for o in opts for m in models for g in ("tensor", "element")]
        repeats, tries, mem_impls = 7, 3, IMPLS
        mem_cell = lambda model, gran, T: True  # noqa: E731
    impls = [i for i in IMPLS if available(i)]
    skipped = [i for i in IMPLS if not available(i)]
    if skipped:
        print(f"skipping unavailable peers: {skipped}")
    script = os.path.abspath(__file__)
    cells = []
    for model, opt, gran, Ts in grid:
        task = Task(model, gran, opt)
        runs = {i: make(task, i) for i in impls}
        for T in Ts:
            mem = [] if args.no_memory or not mem_cell(model, gran, T) else [i for i in impls if i in mem_impls]
            cell = measure_cell(task, runs, T, repeats if T < 200 else max(3, repeats - 2), tries, mem, script,
                                args.threads)
            cells.append(cell)
            print(row_summary(cell))
            sys.stdout.flush()
    settings = {"lr0": LR0, "momentum": MOM, "weight_decay": WD, "batch": BATCH, "repeats": repeats,
                "adam": {"lr0": ADAM_LR0, "betas": [B1, B2], "eps": EPS, "eps_root (peers)": EPS_ROOT},
                "dtype": "float32", "malloc_mmap_threshold": C.MMAP_THRESHOLD,
                "peers": [p for p in PEERS if available(p)], "skipped": skipped, "models": sorted({g[0] for g in grid}),
                "opts": sorted({g[1] for g in grid}), "horizons": sorted({T for g in grid for T in g[3]})}
    report(cells, args, settings, C.machine(args.threads))


def report(cells, args, settings, machine):
    """Print the tables and goals of ``cells``; write them with the cells to ``--json``."""
    goals = compute_goals(cells, quick=args.quick)
    print()
    print(render(table_rows(cells), goals, args, cells))
    C.write_json(args.json, {"benchmark": "unroll", "quick": args.quick, "machine": machine,
                             "settings": settings, "goals": goals, "cells": cells})


def fastest_peer(cell, key="time"):
    vals = {p: cell[key].get(p) for p in PEERS if cell[key].get(p) is not None}
    if not vals:
        return None, None
    p = min(vals, key=vals.get)
    return p, vals[p]


def ratio(a, b):
    return None if a is None or b is None or b == 0 else a / b


def time_ratio(cell, impl, against=PEERS):
    """Median over rounds of impl's time ÷ the fastest of ``against`` in that round."""
    s = cell["time_samples"]
    return C.paired_ratio(s.get(impl, []), [s[p] for p in against if p in s])


def row_summary(cell) -> str:
    parts = [f"{cell['model']:7s} {cell.get('opt', 'sgd'):4s} {cell['gran']:7s} T={cell['T']:<4d}"]
    for i in cell["time"]:
        parts.append(f"{i}={cell['time'][i] * 1e3:.1f}ms")
    parts.append(f"graph/fastest peer={time_ratio(cell, 'ours-graph'):.3f}")
    worst = max(v for v in cell["relerr_vs_torchfunc"].values())
    parts.append(f"max relerr={worst:.1e}")
    return " ".join(parts)


def table_rows(cells):
    rows = []
    for c in cells:
        pm, mp = fastest_peer(c, "rss_peak") if c["rss_peak"] else (None, None)
        for i in c["time"]:
            rows.append({
                "model": c["model"], "opt": c.get("opt", "sgd"), "lr": c["gran"], "T": c["T"], "impl": i,
                "time ms": c["time"][i] * 1e3,
                "÷ fastest peer": time_ratio(c, i),
                "÷ train": time_ratio(c, i, ("train",)),
                "peak RSS MiB": C.mib(c["rss_peak"].get(i)),
                "÷ leanest peer": ratio(c["rss_peak"].get(i), mp),
                "saved MiB": C.mib(c["saved_peak"].get(i)),
                "rel. err": c["relerr_vs_torchfunc"].get(i),
            })
    return rows


def compute_goals(cells, quick: bool):
    """The issues' goals (6 and 20), each at the horizon it names (or, in quick mode, the longest one run)."""
    def at(model, want, opt="sgd"):
        ms = [c for c in cells if c["model"] == model and c.get("opt", "sgd") == opt]
        if not ms:
            return [], None, ""
        T = want if any(c["T"] == want for c in ms) else max(c["T"] for c in ms)
        return [c for c in ms if c["T"] == T], T, ("" if T == want else f"measured at T={T}; the goal is at T={want}")

    def worst(values):
        values = [v for v in values if v is not None]
        return max(values) if values else None

    goals = []
    for model in MODELS:
        cs, T, note = at(model, 100)
        if cs:
            by_min = worst(ratio(c["time_min"]["ours-graph"], fastest_peer(c, "time_min")[1]) for c in cs)
            goals.append(C.goal(f"rmd graph time ÷ fastest peer, {model}, T={T} (worse lr granularity)",
                                worst(time_ratio(c, "ours-graph") for c in cs),
                                0.6 if model == "deep20" else 0.8,
                                "; ".join(x for x in (note, f"by fastest runs: {by_min:.3g}") if x)))
    for model in MODELS:
        cs, T, note = at(model, 100)
        cs = [c for c in cs if c["rss_peak"]]
        if cs:
            goals.append(C.goal(f"rmd graph peak RSS ÷ leanest peer, {model}, T={T} (worse lr granularity)",
                                worst(ratio(c["rss_peak"].get("ours-graph"), fastest_peer(c, "rss_peak")[1])
                                      for c in cs), 1.0, note))
    model = "mlp512" if any(c["model"] == "mlp512" for c in cells) else cells[-1]["model"]
    cs, T, note = at(model, 200)
    if model != "mlp512":
        note = f"mlp512 not run; on {model} at T={T}"
    mem = [c for c in cs if c["rss_peak"]]
    if mem:
        goals.append(C.goal(f"rmd checkpoint peak RSS ÷ leanest peer, {model}, T={T}",
                            worst(ratio(c["rss_peak"].get("ours-checkpoint"), fastest_peer(c, "rss_peak")[1])
                                  for c in mem), 0.3, note))
    if cs:
        by_min = worst(ratio(c["time_min"]["ours-checkpoint"], c["time_min"]["ours-graph"]) for c in cs)
        goals.append(C.goal(f"rmd checkpoint time ÷ our graph, {model}, T={T}",
                            worst(time_ratio(c, "ours-checkpoint", ("ours-graph",)) for c in cs), 2.0,
                            "; ".join(x for x in (note, f"by fastest runs: {by_min:.3g}") if x)))
    # issue 20: the deep narrow MLP at T = 50 and 100, against the peers and against manual-flat; Adam
    for want in (50, 100):
        cs, T, note = at("deep20", want)
        if cs and T == want or (cs and quick and want == 50):
            goals.append(C.goal(f"rmd graph time ÷ fastest peer, deep20, SGD, T={T} (worse lr granularity)",
                                worst(time_ratio(c, "ours-graph") for c in cs), 0.6, note))
            goals.append(C.goal(f"rmd graph time ÷ manual-flat, deep20, SGD, T={T} (worse lr granularity)",
                                worst(time_ratio(c, "ours-graph", ("manual-flat",)) for c in cs), 1.05, note))
    for model, target in (("mlp128", 0.9), ("mlp512", 0.95)):
        cs, T, note = at(model, 100, "adam")
        if cs:
            goals.append(C.goal(f"rmd graph time ÷ fastest peer, {model}, Adam, T={T} (worse lr granularity)",
                                worst(time_ratio(c, "ours-graph") for c in cs), target, note))
    return goals


def summary_rows(cells):
    """One row per cell: our policies against the fastest peer, plain training and each other."""
    rows = []
    for c in cells:
        p, _ = fastest_peer(c)
        pm, mp = fastest_peer(c, "rss_peak") if c["rss_peak"] else (None, None)
        rows.append({"model": c["model"], "opt": c.get("opt", "sgd"), "lr": c["gran"], "T": c["T"], "fastest peer": p,
                     "graph ÷ peer": time_ratio(c, "ours-graph"),
                     "manual-flat ÷ peer": time_ratio(c, "manual-flat"),
                     "graph ÷ train": time_ratio(c, "ours-graph", ("train",)),
                     "peer ÷ train": time_ratio(c, p, ("train",)) if p else None,
                     "ckpt ÷ graph": time_ratio(c, "ours-checkpoint", ("ours-graph",)),
                     "leanest peer": pm,
                     "graph RSS ÷ peer": ratio(c["rss_peak"].get("ours-graph"), mp),
                     "ckpt RSS ÷ peer": ratio(c["rss_peak"].get("ours-checkpoint"), mp),
                     "saved graph ÷ torchfunc": ratio(c["saved_peak"].get("ours-graph"),
                                                      c["saved_peak"].get("torchfunc")),
                     "max rel. err": max(c["relerr_vs_torchfunc"].values())})
    return rows


def render(rows, goals, args, cells=None) -> str:
    cols = ["model", "opt", "lr", "T", "impl", "time ms", "÷ fastest peer", "÷ train", "peak RSS MiB",
            "÷ leanest peer", "saved MiB", "rel. err"]
    out = C.table(rows, cols, "unroll: exact RMD through T steps (time: median; ratios: median over rounds)")
    if cells:
        srows = summary_rows(cells)
        out += "\n" + C.table(srows, list(srows[0]), "unroll: summary per cell")
    return out + "\n" + C.goals_table(goals)


if __name__ == "__main__":
    main()
