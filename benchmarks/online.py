"""Per-step cost of the online estimators against a plain training step, on a ≥1M-parameter model.

Task: scikit-learn's digits, MLP 64-1024-1024-10 (1.13M parameters), SGD (lr 0.05, momentum 0.9) on
fixed batches of 128; hyperparameters: one L2 coefficient per parameter tensor (``loss.l2``, shape
(6,), positive through exp), which every online estimator can differentiate (EvoGrad cannot take
optimizer hyperparameters).

Per inner step, after ``online_init`` and a few warm-up steps (steady state): median wall time of
``online_step`` (the inner step plus the hypergradient), the bytes autograd saves (peak of live saved
tensors), and the peak RSS of a fresh process above its RSS before the measured steps. Baselines: a
plain ``torch.optim.SGD`` step on the module ("train") and our own step without a graph
(``problem.step``). ``online_init`` (HyperDistill's LinearEstimation) is timed separately.
Estimators: first_order, one_step, sama, hyperdistill, evograd (``population=2``: K = 2 candidates),
whichever are registered.

Goals: HyperDistill ≤ 1.15× one_step's time per step; EvoGrad(K=2) ≤ 0.7× one_step's time and
≤ 0.5× its peak memory; SAMA ≤ 1.0× one_step's time and peak memory (issue 16).

Run: ``python benchmarks/online.py [--quick] [--json FILE]``.
"""

from __future__ import annotations

import os
import sys
import time
import warnings

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common as C  # noqa: E402

import hypergradient as hg  # noqa: E402
from hypergradient.diagnostics import saved_bytes  # noqa: E402
from hypergradient.learners.data import digits_batches  # noqa: E402

LR, MOM, BATCH = 0.05, 0.9, 128
DIMS = (64, 1024, 1024, 10)
ESTIMATORS = {"first_order": {}, "one_step": {}, "sama": {}, "hyperdistill": {}, "evograd": {"population": 2}}
WARM = 3


def make_model(dtype=torch.float32):
    return C.mlp(DIMS, dtype)


def make_problem(T: int):
    model = make_model()
    n = len(list(model.parameters()))
    train, val = digits_batches(BATCH, 10)

    def train_loss(f, b, hp):
        pen = torch.stack([(p ** 2).sum() for p in f.params.values()])
        return F.cross_entropy(f(b[0]), b[1]) + (hp["l2"] * pen).sum()

    def val_loss(f, b, hp):
        return F.cross_entropy(f(b[0]), b[1])

    return hg.InnerProblem(model, train_loss, val_loss, hg.optim.sgd(lr=LR, momentum=MOM),
                           hg.Hypers(loss={"l2": hg.Hyper(torch.full((n,), 1e-4), positive="exp")}),
                           hg.Data(train, val), horizon=T)


class Online:
    """An estimator's online loop at fixed λ: ``init()`` then ``step()`` per inner step."""

    def __init__(self, name: str, opts: dict, T: int):
        self.pb = make_problem(T)
        self.lam = self.pb.init_hparams()
        self.est = hg.estimators.get(name, **opts)
        self.state = self.carry = None

    def init(self):
        self.state = self.pb.init_state()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.carry = self.est.online_init(self.pb, self.lam, self.state, self.est.new_state())

    def step(self):
        h, self.carry = self.est.online_step(self.pb, self.lam, self.state, self.carry)
        self.state = h.state
        return h


class Plain:
    """A plain training step: the module, torch.optim.SGD, backward."""

    def __init__(self, T: int):
        self.model = make_model()
        self.opt = torch.optim.SGD(self.model.parameters(), lr=LR, momentum=MOM)
        self.train, _ = digits_batches(BATCH, 10)
        self.t = 0

    def init(self):
        pass

    def step(self):
        x, y = self.train[self.t % len(self.train)]
        self.t += 1
        self.opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(self.model(x), y)
        loss.backward()
        self.opt.step()
        return loss


class OurStep:
    """Our own inner step without a graph (``InnerProblem.step``): the floor of every online estimator."""

    def __init__(self, T: int):
        self.pb = make_problem(T)
        self.lam = {k: v.detach() for k, v in self.pb.init_hparams().items()}

    def init(self):
        self.state = self.pb.init_state()

    def step(self):
        self.state = self.pb.step(self.state, self.lam)
        return self.state


def make(impl: str, T: int):
    if impl == "train":
        return Plain(T)
    if impl == "problem.step":
        return OurStep(T)
    return Online(impl, ESTIMATORS[impl], T)


def build_cell(spec):
    """Child side of the peak-RSS measurement: ``steps`` online steps after init and warm-up."""
    o = make(spec["impl"], spec["T"])

    def warm():
        o.init()
        for _ in range(WARM):
            o.step()

    def run():
        for _ in range(spec["steps"]):
            o.step()
    return run, warm


def prepare(impl, T):
    """The implementation after ``init`` (timed) and the warm-up steps."""
    o = make(impl, T)
    t0 = time.perf_counter()
    o.init()
    t_init = time.perf_counter() - t0
    for _ in range(WARM):
        o.step()
    return o, t_init


def measure(objs: dict, steps: int, repeats: int, args, script, T: int) -> dict:
    """Per-step time of every implementation, timed round-robin (``steps`` steps per sample) so
    that drifts of the machine hit all alike; then saved bytes and fresh-process peak RSS."""
    times = C.time_interleaved({i: (lambda o=o: [o.step() for _ in range(steps)]) for i, (o, _) in objs.items()},
                               repeats, warmup=0)
    res = {}
    for impl, (o, t_init) in objs.items():
        saved = saved_bytes(o.step)
        rss = None
        if not args.no_memory:
            m = C.peak_rss(script, {"impl": impl, "T": T, "steps": 2}, args.threads)
            rss = None if m is None else m["peak"]
        tm = times[impl]
        res[impl] = {"impl": impl, "time_per_step": tm["median"] / steps,
                     "samples": [x / steps for x in tm["samples"]], "init_time": t_init,
                     "saved_peak": saved["peak"], "rss_peak": rss}
    return res


def main(argv=None):
    args = C.parser(__doc__.splitlines()[0]).parse_args(argv)
    if args.cell:
        return C.cell_main(build_cell, args)
    C.setup(args.threads)
    script = os.path.abspath(__file__)
    T, steps, repeats = (20, 2, 3) if args.quick else (100, 5, 7)
    impls = ["train", "problem.step"] + [e for e in ESTIMATORS if e in hg.REGISTRY]
    skipped = [e for e in ESTIMATORS if e not in hg.REGISTRY]
    if skipped:
        print(f"not registered (skipped): {skipped}")
    nparams = sum(p.numel() for p in make_model().parameters())
    objs = {}
    for impl in impls:
        try:
            objs[impl] = prepare(impl, T)
        except Exception as e:  # noqa: BLE001
            skipped.append(impl)
            print(f"skip {impl}: {type(e).__name__}: {e}")
    res = measure(objs, steps, repeats, args, script, T)
    for impl, r in res.items():
        print(f"{impl:14s} {r['time_per_step'] * 1e3:8.2f} ms/step  saved {C.mib(r['saved_peak']):7.2f} MiB  "
              f"rss {C.fmt(C.mib(r['rss_peak']))} MiB")
    base = res["train"]
    one = res.get("one_step")
    rows = []
    for impl, r in res.items():
        rows.append({"impl": impl, "ms / step": r["time_per_step"] * 1e3,
                     "÷ train": r["time_per_step"] / base["time_per_step"],
                     "÷ one_step": None if one is None else r["time_per_step"] / one["time_per_step"],
                     "init ms": r["init_time"] * 1e3, "saved MiB": C.mib(r["saved_peak"]),
                     "peak RSS MiB": C.mib(r["rss_peak"]),
                     "RSS ÷ one_step": None if one is None or not one["rss_peak"] or r["rss_peak"] is None
                     else r["rss_peak"] / one["rss_peak"]})
    goals = []
    hd, ev = res.get("hyperdistill"), res.get("evograd")
    ratio = lambda a, b, k: None if a is None or b is None or not b[k] or a[k] is None else a[k] / b[k]  # noqa: E731
    paired = lambda a: None if a is None or one is None else C.paired_ratio(a["samples"], [one["samples"]])  # noqa: E731
    note = "median over rounds of the paired ratio (ratio of medians: {})"
    goals.append(C.goal("hyperdistill time per step ÷ one_step", paired(hd), 1.15,
                        note.format(C.fmt(ratio(hd, one, "time_per_step"))) if hd else "hyperdistill not registered"))
    goals.append(C.goal("evograd(K=2) time per step ÷ one_step", paired(ev), 0.7,
                        note.format(C.fmt(ratio(ev, one, "time_per_step"))) if ev else "evograd not registered"))
    goals.append(C.goal("evograd(K=2) peak RSS per step ÷ one_step", ratio(ev, one, "rss_peak"), 0.5,
                        "" if ev else "evograd not registered"))
    sa = res.get("sama")
    goals.append(C.goal("sama time per step ÷ one_step", paired(sa), 1.0,
                        note.format(C.fmt(ratio(sa, one, "time_per_step"))) if sa else "sama not registered"))
    goals.append(C.goal("sama peak RSS per step ÷ one_step", ratio(sa, one, "rss_peak"), 1.0,
                        "" if sa else "sama not registered"))
    text = C.table(rows, ["impl", "ms / step", "÷ train", "÷ one_step", "init ms", "saved MiB", "peak RSS MiB",
                          "RSS ÷ one_step"], f"online: one inner step, {nparams / 1e6:.2f}M parameters") \
        + "\n" + C.goals_table(goals)
    print()
    print(text)
    C.write_json(args.json, {"benchmark": "online", "quick": args.quick, "machine": C.machine(args.threads),
                             "settings": {"dims": DIMS, "nparams": nparams, "lr": LR, "momentum": MOM,
                                          "batch": BATCH, "T": T, "steps": steps, "repeats": repeats,
                                          "warmup_steps": WARM, "options": ESTIMATORS, "dtype": "float32",
                                          "malloc_mmap_threshold": C.MMAP_THRESHOLD},
                             "skipped": skipped, "goals": goals, "results": res})


if __name__ == "__main__":
    main()
