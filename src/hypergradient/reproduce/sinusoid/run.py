"""Reproduce HyperDistill's sinusoid regression (Lee et al., ICLR 2022, Appendix G: Table 4, Fig. 3,
Table 3) with ``hypergradient reproduce sinusoid [--quick] [--seeds N] [--out DIR]``.

Setting (paper): 10-shot sinusoids, A ~ U(0.1, 5), phase ~ U(0, π), x ~ U(−5, 5); ANIL on a
1-100-100-100-1 ReLU MLP (the three hidden layers are λ, the last layer is w); inner SGD, momentum
0.9, lr 0.01, T = 30; hyper optimizer Adam, lr 1e-3; meta-batch 10; Reptile (η = 1) for the
initialization φ of w; M = 30 inner optimizations per meta-training run (= 30 meta-iterations of
10 tasks each); meta-test on 1000 tasks with the same inner setup; 5 runs, mean ± 95% CI.

Every value the paper leaves open is a field of :class:`SinusoidConfig` (written into
``results.json``) and is the same for every method. The methods (:data:`METHODS`):

* online, λ updated after every inner step with the meta-batch mean: FO (``first_order``),
  1-step (``one_step``), N.IFT(N, K) (``ift_neumann``: online over the last K steps only; the steps
  before give no hypergradient and take no outer step), HyperDistill (``hyperdistill``);
* offline, one outer step per meta-iteration from the mean of the B offline hypergradients: DrMAD
  (``drmad``) and exact RMD (``rmd``);
* the baseline "Reptile only": λ stays at its random initialization (outer learning rate 0), only
  the head's initialization φ is meta-learned; it shows how much of each score λ's learning adds.

γ of HyperDistill and (N, K) of N.IFT are chosen on a meta-validation task set (lowest meta-val
MSE after meta-training with the tuning seeds, which are not evaluation seeds), as in the paper.

The meta-training loop is :func:`hypergradient.drivers.meta.meta_train`'s (same task stream from
``torch.Generator(seed)``, same lockstep mean hypergradient, same Reptile update), written out here
because it also has to (1) run the offline estimators, (2) skip the outer step where N.IFT gives no
hypergradient (``lockstep`` would hand Adam a zero gradient, and Adam still moves λ on a zero
gradient), and (3) time each inner optimization and measure cosines at checkpoints. Meta-test and
meta-validation adapt the head on fixed body features for all tasks at once
(:func:`adapt_and_score`); ``tests/test_sinusoid.py`` checks it against
:func:`~hypergradient.drivers.meta.meta_test`.

Cosine similarity to exact RMD (Fig. 3): at checkpoints of meta-training, on P probe tasks, from the
current (φ, λ) and with λ held fixed over one inner optimization of T steps, the exact hypergradient
``∇_λ L_val(w_T)`` (RMD) is compared with

* ``applied``: what the method would apply over that inner optimization: Σ_t g_t for the online
  methods (only the K active steps for N.IFT), the single offline hypergradient for DrMAD / RMD;
* ``last``: the method's hypergradient at the last step, g_T (the paper's per-hypergradient view);
* ``last_so``: the second-order (indirect) part of g_T against RMD's (Fig. 3c).

Cosines are taken per probe task and averaged. Each run measures its own method on its own
trajectory; the HyperDistill runs also measure every method at their checkpoints (``shared``: all
estimators on the same (φ, λ, tasks)).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass

import torch

from ...estimators.base import check

__all__ = ["SinusoidConfig", "METHODS", "PAPER_TABLE4", "run", "train_one", "adapt_and_score", "task_set",
           "make_estimator", "applied_hypergradient", "summarize", "main"]

# method label -> (registry name, options fixed for all runs); tuned options are added per run
METHODS = {
    "FO": ("first_order", {}),
    "1-step": ("one_step", {}),
    "DrMAD": ("drmad", {}),
    "N.IFT": ("ift_neumann", {}),
    "HyperDistill": ("hyperdistill", {}),
    "RMD": ("rmd", {"storage": "graph"}),
    "Reptile only": ("first_order", {}),
}
# baselines: λ never moves (Adam with lr 0), only Reptile learns φ; no cosines, no cost row
BASELINES = ("Reptile only",)
ESTIMATORS = tuple(m for m in METHODS if m not in BASELINES)
PAPER_TABLE4 = {"FO": (0.567, 0.193), "1-step": (0.670, 0.283), "DrMAD": (1.086, 0.176),
                "N.IFT": (0.502, 0.146), "HyperDistill": (0.327, 0.052), "RMD": None, "Reptile only": None}
TASK_SEEDS = {"val": 10_000, "test": 20_000, "probe": 30_000}   # fixed task sets, shared by all runs


@dataclass
class SinusoidConfig:
    """Everything a run depends on: the values Appendix G gives, then our choices where it is silent."""

    # -- from the paper (Appendix G)
    shots: int = 10                      # 10-shot support set (inner training data)
    sizes: tuple = (1, 100, 100, 100, 1)
    T: int = 30                          # inner steps
    inner_lr: float = 0.01
    inner_momentum: float = 0.9
    hyper_lr: float = 1e-3               # Adam
    meta_batch: int = 10
    iterations: int = 30                 # M: inner optimizations per meta-training run (per task slot)
    reptile_lr: float = 1.0
    test_tasks: int = 1000
    gammas: tuple = (0.9, 0.99, 0.999, 0.9999)
    hd_period: int = 50                  # LinearEstimation every 50 inner optimizations (counted over tasks)
    # -- our choices (the paper is silent)
    query: int = 10                      # query points per task for the hypergradient (meta-train, meta-val)
    eval_query: int = 100                # query points per meta-val / meta-test task (a finer estimate of its MSE)
    val_tasks: int = 500                 # meta-validation tasks (γ and (N, K) selection, curves)
    nift_grid: tuple = ((2, 8), (5, 3), (10, 2))   # (N, K): the paper's T=100 grid scaled to T=30
    tune_seeds: tuple = (100, 101)       # meta-training seeds for tuning, disjoint from evaluation seeds
    seeds: int = 5                       # evaluation seeds 0 .. seeds-1
    cosine_points: tuple = (0, 10, 20, 30)  # meta-iterations at which cosines to RMD are measured
    cosine_tasks: int = 5                # probe tasks per cosine measurement
    cost_repeats: int = 5                # inner optimizations per method in the interleaved cost benchmark
    dtype: str = "float32"
    threads: int = 1                     # torch intra-op threads per worker process
    quick: bool = False

    @classmethod
    def full(cls, **kw) -> "SinusoidConfig":
        return cls(**kw)

    @classmethod
    def make_quick(cls, **kw) -> "SinusoidConfig":
        """A smoke-test size: 3 meta-iterations of 2 tasks, few evaluation tasks, 1 seed."""
        base = dict(meta_batch=2, iterations=3, test_tasks=50, val_tasks=20, tune_seeds=(100,), seeds=1,
                    cosine_points=(0, 3), cosine_tasks=2, cost_repeats=1, hd_period=50, quick=True)
        base.update(kw)
        return cls(**base)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        return {k: ([list(x) if isinstance(x, tuple) else x for x in v] if isinstance(v, tuple) else v)
                for k, v in d.items()}

    def fingerprint(self) -> str:
        """Hash of everything that changes a run's numbers (not the number of seeds)."""
        d = {k: v for k, v in self.to_dict().items() if k not in ("seeds", "threads", "cost_repeats")}
        return hashlib.sha1(json.dumps(d, sort_keys=True).encode()).hexdigest()[:12]

    @property
    def torch_dtype(self) -> torch.dtype:
        return getattr(torch, self.dtype)


# ---- tasks and fast evaluation ------------------------------------------------------------------------
def _sampler(cfg: SinusoidConfig, query: int):
    from ...learners.tasks import SinusoidTasks
    return SinusoidTasks(shots=cfg.shots, query=query, dtype=cfg.torch_dtype)


def task_set(cfg: SinusoidConfig, which: str, n: int | None = None) -> dict:
    """A fixed task set ('val', 'test' or 'probe') drawn exactly as ``meta_test`` draws its tasks:
    ``SinusoidTasks.sample`` with ``torch.Generator(TASK_SEEDS[which])``. Returns stacked tensors
    and the list of tasks."""
    query = cfg.query if which == "probe" else cfg.eval_query
    n = n if n is not None else {"val": cfg.val_tasks, "test": cfg.test_tasks, "probe": cfg.cosine_tasks}[which]
    sampler = _sampler(cfg, query)
    gen = torch.Generator().manual_seed(TASK_SEEDS[which])
    tasks = [sampler.sample(gen) for _ in range(n)]
    return {"x": torch.stack([t.support[0] for t in tasks]), "y": torch.stack([t.support[1] for t in tasks]),
            "xq": torch.stack([t.query[0] for t in tasks]), "yq": torch.stack([t.query[1] for t in tasks]),
            "tasks": tasks, "seed": TASK_SEEDS[which], "query": query}


def _body_features(learner, lam, x):
    """The ANIL body at λ on x (any leading batch dims)."""
    body = {k[len("model.body."):]: v.detach() for k, v in lam.items() if k.startswith("model.body.")}
    return torch.func.functional_call(learner.model.body, body, (x,))


def adapt_and_score(learner, lam, phi, tasks: dict, cfg: SinusoidConfig) -> torch.Tensor:
    """Per-task query MSE after T steps of SGD with momentum on the head from φ, λ fixed: all tasks
    at once. The same arithmetic as ``InnerProblem.run`` + ``val_loss_at`` with ANIL's MSE (PyTorch's
    SGD convention v ← μ v + g, w ← w − lr v, v_0 = 0), since the body features do not change."""
    with torch.no_grad():
        f, fq = _body_features(learner, lam, tasks["x"]), _body_features(learner, lam, tasks["xq"])
        y, yq = tasks["y"], tasks["yq"]
        n = len(f)
        W = phi["head.weight"].detach().expand(n, *phi["head.weight"].shape).clone()   # (n, 1, h)
        b = phi["head.bias"].detach().expand(n, *phi["head.bias"].shape).clone()        # (n, 1)
        vW, vb = torch.zeros_like(W), torch.zeros_like(b)
        m = y.shape[1] * y.shape[2]                                                     # MSE averages over shots × out
        for _ in range(cfg.T):
            r = f @ W.transpose(1, 2) + b[:, None, :] - y                               # (n, shots, 1)
            gW = (2.0 / m) * r.transpose(1, 2) @ f
            gb = (2.0 / m) * r.sum(1)
            vW, vb = cfg.inner_momentum * vW + gW, cfg.inner_momentum * vb + gb
            W, b = W - cfg.inner_lr * vW, b - cfg.inner_lr * vb
        pred = fq @ W.transpose(1, 2) + b[:, None, :]
        mse = ((pred - yq) ** 2).mean(dim=(1, 2)).double()
        return torch.where(torch.isfinite(mse), mse, torch.full_like(mse, float("inf")))


def inner_stability(learner, lam, tasks: dict, cfg: SinusoidConfig) -> dict:
    """lr · λ_max of the head's training Hessian H = (2/m) [f 1]ᵀ[f 1] on each task's support set at
    the body λ: heavy-ball SGD (momentum μ) on this quadratic diverges when it exceeds 2(1 + μ).
    Median and max over the tasks, and that threshold."""
    with torch.no_grad():
        f = _body_features(learner, lam, tasks["x"]).double()
        fb = torch.cat([f, torch.ones(*f.shape[:-1], 1, dtype=f.dtype)], -1)
        m = tasks["y"].shape[1] * tasks["y"].shape[2]
        top = cfg.inner_lr * 2.0 / m * torch.linalg.matrix_norm(fb, ord=2) ** 2
    return {"median": float(top.median()), "max": float(top.max()), "limit": 2 * (1 + cfg.inner_momentum)}


# ---- estimators -------------------------------------------------------------------------------------
def make_estimator(method: str, cfg: SinusoidConfig, seed: int, options: dict | None = None):
    from ...estimators import get
    name, fixed = METHODS[method]
    opts = dict(fixed)
    if method == "HyperDistill":
        opts.update(period=cfg.hd_period, seed=seed)
    opts.update(options or {})
    return get(name, **opts)


def applied_hypergradient(est, problem, lam, state, T: int):
    """(Σ_t g_t over active steps | the offline value, g_T, g_T's indirect part) with λ fixed."""
    if not est.online:
        hg = est(problem, lam, T=T, state=state)
        return hg.value, hg.value, hg.indirect
    carry = est.online_init(problem, lam, state)
    total, last = None, None
    for _ in range(T):
        state, hg, carry = est.online_step(problem, lam, state, carry)
        if not hg.info.get("active", True):
            continue
        last = hg
        total = {k: v.detach().clone() for k, v in hg.value.items()} if total is None else \
            {k: total[k] + hg.value[k] for k in total}
    return total, last.value, last.indirect


def _measure_cosines(methods_opts: dict, learner, lam, phi, probe: dict, cfg: SinusoidConfig, seed: int) -> dict:
    """{method: {"applied", "last", "last_so": mean cosine over probe tasks, "per_task": ...}}."""
    from ...diagnostics import cosine
    from ...estimators import get
    lam = {k: v.detach() for k, v in lam.items()}
    problems = [learner.problem(t) for t in probe["tasks"]]
    rmd = get("rmd", storage="graph")
    exact = [rmd(p, lam, T=cfg.T, state=p.init_state(phi)) for p in problems]
    out = {}
    for method, opts in methods_opts.items():
        est = make_estimator(method, cfg, seed + 7, opts)
        rows = []
        for p, ref in zip(problems, exact):
            applied, last, last_so = applied_hypergradient(est, p, lam, p.init_state(phi), cfg.T)
            rows.append((cosine(applied, ref.value), cosine(last, ref.value), cosine(last_so, ref.indirect)))
        cols = list(zip(*rows))
        out[method] = {"applied": statistics.fmean(cols[0]), "last": statistics.fmean(cols[1]),
                       "last_so": statistics.fmean(cols[2]), "per_task": [list(r) for r in rows]}
    return out


# ---- memory -----------------------------------------------------------------------------------------
class _MallocMeter:
    """Peak of glibc's in-use heap bytes (``mallinfo2``: uordblks + hblkhd) above its value at entry,
    sampled after every ATen op through a ``TorchDispatchMode`` (backward ops included). CPU tensors
    are malloc'd directly (no caching allocator), so this is the CPU analogue of
    ``torch.cuda.max_memory_allocated`` plus autograd's own nodes; temporaries freed inside one op
    are missed. ``peak`` is None where mallinfo2 is unavailable (not glibc ≥ 2.33)."""

    def __init__(self):
        import ctypes
        from torch.utils._python_dispatch import TorchDispatchMode

        class _Info(ctypes.Structure):
            _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                       "fsmblks", "uordblks", "fordblks", "keepcost")]
        try:
            libc = ctypes.CDLL("libc.so.6")
            libc.mallinfo2.restype = _Info
            self._info = libc.mallinfo2
        except (OSError, AttributeError):
            self._info = None
        meter = self

        class _Mode(TorchDispatchMode):
            def __torch_dispatch__(self, func, types, args=(), kwargs=None):
                out = func(*args, **(kwargs or {}))
                meter._sample()
                return out
        self._mode = _Mode()
        self.peak = None

    def _used(self) -> int:
        m = self._info()
        return m.uordblks + m.hblkhd

    def _sample(self):
        self.peak = max(self.peak, self._used() - self._base)

    def __enter__(self):
        if self._info is not None:
            self._base, self.peak = self._used(), 0
            self._mode.__enter__()
        return self

    def __exit__(self, *exc):
        if self._info is not None:
            self._mode.__exit__(*exc)


def peak_bytes(fn) -> int | None:
    """Peak heap bytes in use while ``fn()`` runs, above the start (:class:`_MallocMeter`)."""
    import gc
    gc.collect()
    with _MallocMeter() as meter:
        fn()
    return meter.peak


# ---- one meta-training run --------------------------------------------------------------------------
def _learner(cfg: SinusoidConfig, seed: int):
    from ...learners import ANIL, anil_mlp
    torch.manual_seed(seed)
    model = anil_mlp(tuple(cfg.sizes)).to(cfg.torch_dtype)
    return ANIL(model, horizon=cfg.T, lr=cfg.inner_lr, momentum=cfg.inner_momentum)


def _inner_optimization(est, problems, lam, outer, starts, T):
    """One meta-iteration's inner optimizations in lockstep (online) or one offline outer step.
    Returns (final states, outer steps taken)."""
    if not est.online:
        hgs = [est(p, lam, T=T, state=s) for p, s in zip(problems, starts)]
        for k, v in lam.items():
            v.grad = sum(h.value[k] for h in hgs).detach() / len(hgs)
        outer.step()
        for v in lam.values():
            v.grad = None
        return [h.info["state"] for h in hgs], 1
    states = list(starts)
    carries = [est.online_init(p, lam, s) for p, s in zip(problems, states)]
    steps = 0
    for _ in range(T):
        total, active = None, 0
        for i, p in enumerate(problems):
            states[i], hg, carries[i] = est.online_step(p, lam, states[i], carries[i])
            if not hg.info.get("active", True):
                continue
            active += 1
            total = {k: v.detach().clone() for k, v in hg.value.items()} if total is None else \
                {k: total[k] + hg.value[k].detach() for k in total}
        if active:
            mean = {k: v / active for k, v in total.items()}
            check(mean, est.name)           # a non-finite hypergradient ends the run (recorded as diverged)
            for k, v in lam.items():
                v.grad = mean[k]
            outer.step()
            for v in lam.values():
                v.grad = None
            steps += 1
    return states, steps


def train_one(method: str, cfg: SinusoidConfig, seed: int, options: dict | None = None, *,
              shared_cosines: dict | None = None, evaluate_test: bool = True, tick=None) -> dict:
    """Meta-train one method with one seed, then meta-test. ``options`` are the method's tuned
    estimator options (γ; N, K); ``shared_cosines`` {method: options} are measured at the cosine
    checkpoints in addition to the method itself. ``tick()`` is called after every meta-iteration."""
    from ...core.state import Cost
    from ...drivers.meta import confidence_interval
    torch.set_num_threads(cfg.threads)
    t_start, cpu_start = time.perf_counter(), time.process_time()
    options = dict(options or {})
    learner = _learner(cfg, seed)
    lam = learner.init_hparams()
    phi = {k: v.detach().clone() for k, v in learner.init_weights().items()}
    outer = torch.optim.Adam(list(lam.values()), lr=0.0 if method in BASELINES else cfg.hyper_lr)
    est = make_estimator(method, cfg, seed, options)
    sampler = _sampler(cfg, cfg.query)
    gen = torch.Generator().manual_seed(seed)
    val, probe = task_set(cfg, "val"), task_set(cfg, "probe")
    cos_methods = {} if method in BASELINES else {method: options, **(shared_cosines or {})}
    rec = {"method": method, "seed": seed, "options": options, "fingerprint": cfg.fingerprint(),
           "meta_val_mse": [], "meta_train_loss": [], "cosines": [], "seconds_inner": [], "outer_steps": 0,
           "diverged": None, "theta": [], "stability": [], "test_diverged_tasks": None}
    cost = Cost()

    def checkpoint(it):
        if it in cfg.cosine_points and cos_methods:
            opts = dict(cos_methods)
            if method == "HyperDistill" and est.theta is not None:   # the θ the run is using now
                opts[method] = dict(options, theta=est.theta)
            c = _measure_cosines(opts, learner, lam, phi, probe, cfg, seed)
            rec["cosines"].append({"iteration": it, **c})

    from ...core.state import DivergenceError
    try:
        rec["meta_val_mse"].append(float(adapt_and_score(learner, lam, phi, val, cfg).mean()))
        rec["stability"].append(inner_stability(learner, lam, val, cfg))
        for it in range(cfg.iterations):
            checkpoint(it)
            problems = [learner.problem(sampler.sample(gen)) for _ in range(cfg.meta_batch)]
            t0 = time.perf_counter()
            starts = [p.init_state(phi) for p in problems]
            finals, steps = _inner_optimization(est, problems, lam, outer, starts, cfg.T)
            rec["seconds_inner"].append((time.perf_counter() - t0) / len(problems))
            rec["outer_steps"] += steps
            for p in problems:
                cost = cost + p.cost
            names = problems[0].names
            mean_w = [sum(s.params[i] for s in finals) / len(finals) for i in range(len(names))]
            phi = {n: phi[n] - cfg.reptile_lr * (phi[n] - w) for n, w in zip(names, mean_w)}
            lam_d = {k: v.detach() for k, v in lam.items()}
            with torch.no_grad():
                rec["meta_train_loss"].append(statistics.fmean(
                    float(p.val_loss_at(s, lam_d)) for p, s in zip(problems, finals)))
            rec["meta_val_mse"].append(float(adapt_and_score(learner, lam, phi, val, cfg).mean()))
            rec["stability"].append(inner_stability(learner, lam, val, cfg))
            if getattr(est, "theta", None) is not None:
                rec["theta"].append(float(est.theta))
            if tick is not None:
                tick()
        checkpoint(cfg.iterations)
    except (DivergenceError, FloatingPointError) as e:
        rec["diverged"] = f"meta-iteration {len(rec['meta_train_loss'])}: {e}"
        if tick is not None:
            for _ in range(cfg.iterations - len(rec["meta_train_loss"])):
                tick()
    n_inner = max(1, len(rec["meta_train_loss"]) * cfg.meta_batch)
    rec["cost_per_inner"] = {k: v / n_inner for k, v in dataclasses.asdict(cost).items()}
    rec["seconds_per_inner"] = statistics.fmean(rec["seconds_inner"]) if rec["seconds_inner"] else None
    if rec["diverged"] is None:
        rec["meta_val_final"] = rec["meta_val_mse"][-1]
        if evaluate_test:
            test = task_set(cfg, "test")
            mse = adapt_and_score(learner, lam, phi, test, cfg)
            m, h = confidence_interval(mse) if bool(torch.isfinite(mse).all()) else (float("inf"), float("nan"))
            rec["meta_test"] = {"mean": m, "ci95": h, "std": float(mse.std()), "median": float(mse.median()),
                                "tasks": len(mse), "tasks_above_100": int((mse > 100).sum())}
    else:
        rec["meta_val_final"] = float("inf")
        rec["meta_test"] = {"mean": float("inf"), "ci95": float("nan"), "std": float("nan"), "tasks": 0}
    rec["wall_seconds"] = time.perf_counter() - t_start
    rec["cpu_seconds"] = time.process_time() - cpu_start    # this process's CPU time (contention-free cost)
    return rec


# ---- the cost benchmark (Table 3) -------------------------------------------------------------------
def cost_benchmark(cfg: SinusoidConfig, chosen: dict, seed: int = 0) -> dict:
    """Seconds (median of ``cost_repeats``, methods interleaved round-robin), peak tensor memory and
    primitive counts of one inner optimization of one task, including its outer steps."""
    from ...diagnostics import SavedTensorMeter
    torch.set_num_threads(cfg.threads)
    learner = _learner(cfg, seed)
    phi = learner.init_weights()
    sampler = _sampler(cfg, cfg.query)
    gen = torch.Generator().manual_seed(seed + 555)
    task = sampler.sample(gen)
    setups = {}
    for method in ESTIMATORS:
        lam = learner.init_hparams()
        est = make_estimator(method, cfg, seed, chosen.get(method))
        setups[method] = (est, lam, torch.optim.Adam(list(lam.values()), lr=cfg.hyper_lr))

    def one(method):
        est, lam, outer = setups[method]
        p = learner.problem(task)
        _inner_optimization(est, [p], lam, outer, [p.init_state(phi)], cfg.T)
        return p.cost

    for m in ESTIMATORS:                      # warm-up (and HyperDistill's first θ fit)
        one(m)
    samples = {m: [] for m in ESTIMATORS}
    for _ in range(cfg.cost_repeats):
        for m in ESTIMATORS:
            t0 = time.perf_counter()
            c = one(m)
            samples[m].append(time.perf_counter() - t0)
    out = {}
    for m in ESTIMATORS:
        with SavedTensorMeter() as meter:
            c = one(m)
        out[m] = {"seconds_median": statistics.median(samples[m]), "seconds_samples": samples[m],
                  "peak_bytes": peak_bytes(lambda: one(m)), "saved_tensor_peak_bytes": meter.peak,
                  "cost": dataclasses.asdict(c)}
    # HyperDistill's LinearEstimation (run every hd_period inner optimizations), timed on its own
    from ...estimators.hyperdistill import linear_estimation
    est, lam, _ = setups["HyperDistill"]
    p = learner.problem(task)
    t0 = time.perf_counter()
    _, info = linear_estimation(p, {k: v.detach() for k, v in lam.items()}, p.init_state(phi), cfg.T, est.gamma,
                                generator=torch.Generator().manual_seed(0))
    out["HyperDistill"]["linear_estimation"] = {"seconds": time.perf_counter() - t0,
                                                "cost": dataclasses.asdict(info["cost"]),
                                                "every": cfg.hd_period}
    return out


# ---- jobs, resume and the orchestration -------------------------------------------------------------
def _job_name(kind: str, method: str, seed: int, options: dict) -> str:
    method = method.replace(" ", "_")
    if kind == "tune":
        tag = "_".join(f"{k}{v}" for k, v in sorted(options.items()))
        return f"tune_{method}_{tag}_seed{seed}"
    return f"{method}_seed{seed}"


def _job(payload):
    """Run one job (in a worker process or in this one), write its JSON, return (path, record)."""
    kind, method, seed, options, shared, cfg, path, queue, tick = payload
    if queue is not None:
        tick = lambda: queue.put(1)  # noqa: E731
    rec = train_one(method, cfg, seed, options, shared_cosines=shared, evaluate_test=(kind == "main"), tick=tick)
    rec["kind"] = kind
    _write_json(path, rec)
    return path, rec


def _write_json(path, obj):
    tmp = path + ".tmp"
    with open(tmp, "w") as fh:
        json.dump(_clean(obj), fh, indent=1)
    os.replace(tmp, path)


def _clean(x):
    """JSON-safe: tensors to lists, non-finite floats to strings ('inf', 'nan')."""
    if isinstance(x, dict):
        return {str(k): _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    if isinstance(x, torch.Tensor):
        return _clean(x.tolist())
    if isinstance(x, float) and not math.isfinite(x):
        return str(x)
    return x


def _load(path, cfg):
    try:
        with open(path) as fh:
            rec = json.load(fh)
    except (OSError, ValueError):
        return None
    if rec.get("fingerprint") != cfg.fingerprint():
        raise RuntimeError(f"{path} was written with a different configuration (fingerprint "
                           f"{rec.get('fingerprint')} != {cfg.fingerprint()}); use another --out directory "
                           "or delete the old seed files")
    return rec


def _options_grid(cfg: SinusoidConfig) -> dict:
    return {"HyperDistill": [{"gamma": g} for g in cfg.gammas],
            "N.IFT": [{"N": n, "K": k} for n, k in cfg.nift_grid]}


class _Runner:
    """Runs jobs in this process (workers = 1) or in a pool of spawned worker processes, with one
    tqdm bar over all meta-iterations (episodes). A job counts as done once its JSON is on disk."""

    def __init__(self, cfg, out, workers, total, quiet):
        from tqdm.auto import tqdm
        self.cfg, self.out, self.workers = cfg, out, workers
        self.bar = tqdm(total=total, desc="meta-iterations", unit="it", disable=quiet, dynamic_ncols=True)
        self.pool = self.queue = self.manager = None
        if workers > 1:
            import multiprocessing as mp
            from concurrent.futures import ProcessPoolExecutor
            ctx = mp.get_context("spawn")
            self.manager = ctx.Manager()
            self.queue = self.manager.Queue()
            self.pool = ProcessPoolExecutor(workers, mp_context=ctx)

    def payload(self, kind, method, seed, options, shared):
        path = os.path.join(self.out, "seeds", _job_name(kind, method, seed, options) + ".json")
        return (kind, method, seed, options, shared, self.cfg, path, self.queue, None)

    def start(self, payloads) -> list:
        """Handles for the payloads: futures (pool) or the payloads themselves (run at ``wait``)."""
        if self.pool is None:
            return list(payloads)
        return [self.pool.submit(_job, pl) for pl in payloads]

    def wait(self, handles) -> list:
        """The records of the handles, in order."""
        if self.pool is None:
            out = []
            for pl in handles:
                self.bar.set_postfix_str(os.path.basename(pl[6])[:-5])
                out.append(_job(pl[:8] + (lambda: self.bar.update(1),))[1])
            return out
        pending = set(handles)
        while pending:
            self._ticks()
            done = {f for f in pending if f.done()}
            for f in done:
                self.bar.set_postfix_str(f"done {os.path.basename(f.result()[0])[:-5]}")  # re-raises errors
            pending -= done
            time.sleep(0.2)
        self._ticks()
        return [f.result()[1] for f in handles]

    def _ticks(self):
        while not self.queue.empty():
            self.bar.update(self.queue.get())

    def close(self):
        self.bar.close()
        if self.pool is not None:
            self.pool.shutdown(cancel_futures=True)
            self.manager.shutdown()


def run(cfg: SinusoidConfig, out: str, *, workers: int = 1, quiet: bool = False) -> dict:
    """The whole reproduction: tuning, the evaluation runs, the cost benchmark, tables, plots, JSON.
    Finished runs are read back from ``out/seeds/`` instead of being run again."""
    import hypergradient
    t0 = time.perf_counter()
    os.makedirs(os.path.join(out, "seeds"), exist_ok=True)
    torch.set_num_threads(cfg.threads)
    grid = _options_grid(cfg)
    eval_seeds = list(range(cfg.seeds))

    def path_of(kind, method, seed, options):
        return os.path.join(out, "seeds", _job_name(kind, method, seed, options) + ".json")

    records: dict = {}

    def todo(jobs):
        left = []
        for job in jobs:
            rec = _load(path_of(*job), cfg)
            if rec is None:
                left.append(job)
            else:
                records[path_of(*job)] = rec
        return left

    tune = todo([("tune", m, s, o) for m, opts in grid.items() for o in opts for s in cfg.tune_seeds])
    fixed = todo([("main", m, s, {}) for s in eval_seeds for m in METHODS if m not in grid])
    tuned = [("main", m, s, {}) for m in grid for s in eval_seeds]
    tuned_left = [j for j in tuned if _load(path_of(*j), cfg) is None]
    runner = _Runner(cfg, out, workers, cfg.iterations * (len(tune) + len(fixed) + len(tuned_left)), quiet)
    try:
        h_tune = runner.start([runner.payload(*j, None) for j in tune])
        h_fixed = runner.start([runner.payload(*j, None) for j in fixed]) if runner.pool is not None else None
        for j, rec in zip(tune, runner.wait(h_tune)):
            records[path_of(*j)] = rec
        tuning, chosen = _choose(cfg, grid, records, path_of)
        shared = {m: chosen.get(m, {}) for m in ESTIMATORS if m != "HyperDistill"}
        left = []
        for j in todo(tuned):
            left.append(j)
        for j in tuned:
            rec = records.get(path_of(*j))
            if rec is not None and rec.get("options") != chosen[j[1]]:
                raise RuntimeError(f"{path_of(*j)} was run with {rec.get('options')}, but the tuning now "
                                   f"chooses {chosen[j[1]]}; delete it to rerun")
        h_tuned = runner.start([runner.payload(k, m, s, chosen[m], shared if m == "HyperDistill" else None)
                                for k, m, s, _ in left])
        if h_fixed is None:
            h_fixed = runner.start([runner.payload(*j, None) for j in fixed])
        for j, rec in zip(fixed + left, runner.wait(h_fixed + h_tuned)):
            records[path_of(*j)] = rec
    finally:
        runner.close()
    main = {m: [records[path_of("main", m, s, {})] for s in eval_seeds] for m in METHODS}
    if not quiet:
        print("cost benchmark (Table 3) ...", file=sys.stderr)
    costs = cost_benchmark(cfg, chosen)
    result = summarize(cfg, main, tuning, chosen, costs)
    result.update(version=hypergradient.__version__, torch=torch.__version__, python=platform.python_version(),
                  machine={"cpus": os.cpu_count(), "workers": workers, "threads_per_worker": cfg.threads,
                           "platform": platform.platform(),
                           "loadavg_at_end": list(os.getloadavg()) if hasattr(os, "getloadavg") else None},
                  wall_seconds=time.perf_counter() - t0)
    _write_json(os.path.join(out, "results.json"), result)
    md = markdown(result)
    with open(os.path.join(out, "table.md"), "w") as fh:
        fh.write(md)
    plots(result, out)
    if not quiet:
        print(md)
    return result


def _choose(cfg, grid, records, path_of):
    """Lowest mean final meta-validation MSE over the tuning seeds, per tuned method."""
    tuning, chosen = {}, {}
    for m, opts in grid.items():
        rows = []
        for o in opts:
            vals = [records[path_of("tune", m, s, o)]["meta_val_final"] for s in cfg.tune_seeds]
            vals = [float(v) for v in vals]
            rows.append({"options": o, "meta_val_mse": vals, "mean": statistics.fmean(vals)})
        best = min(rows, key=lambda r: r["mean"])
        tuning[m] = rows
        chosen[m] = best["options"]
    return tuning, chosen


# ---- summaries --------------------------------------------------------------------------------------
def _ci(values):
    from ...drivers.meta import confidence_interval
    vals = [float(v) for v in values]
    if not all(math.isfinite(v) for v in vals):
        return float("inf"), float("nan")
    return confidence_interval(vals)


def summarize(cfg: SinusoidConfig, main: dict, tuning: dict, chosen: dict, costs: dict) -> dict:
    table4, cos_own, cos_shared, cost_rows, curves = {}, {}, {}, {}, {}
    for m, recs in main.items():
        mses = [float(r["meta_test"]["mean"]) for r in recs]
        mean, half = _ci(mses)
        table4[m] = {"mean": mean, "ci95": half, "per_seed": mses, "paper": PAPER_TABLE4[m],
                     "options": chosen.get(m, {}), "diverged": sum(r["diverged"] is not None for r in recs)}
        # own-trajectory cosines: mean ± CI over seeds at each checkpoint
        points = {}
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
    paper_rank = sorted((m for m in PAPER_TABLE4 if PAPER_TABLE4[m]), key=lambda m: PAPER_TABLE4[m][0])
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


def _shared_above(cos_shared, others):
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


def _fmt(mean, half, digits=3):
    if not math.isfinite(mean):
        return "diverged"
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
        seeds = ", ".join("inf" if not math.isfinite(float(v)) else f"{float(v):.3f}" for v in r["per_seed"])
        lines.append(f"| {m} | {opts} | {_fmt(r['mean'], r['ci95'])}{div} | {paper} | {seeds} |")
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


def plots(result: dict, out: str) -> list[str]:
    """curves.png (meta-validation MSE along meta-training) and cosine.png (Fig. 3 style)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    paths = []
    fig, axes = plt.subplots(1, 3, figsize=(18, 4.5))
    panels = (("meta_val_mse", "meta-validation MSE", "Meta-validation MSE (fixed val tasks)"),
              ("meta_train_loss", "query loss after the inner optimization", "Meta-training loss (meta-batch mean)"),
              ("lr_curvature_max", "lr · λ_max(H_head), max over val tasks", "Inner-loop stability"))
    for m, c in result["curves"].items():
        for ax, (key, _, _) in zip(axes, panels):
            runs = [r for r in c[key] if r]
            if not runs:
                continue
            t = torch.tensor(runs, dtype=torch.float64).nan_to_num(nan=float("inf"), posinf=float("inf"))
            med = t.median(0).values                  # robust to the seeds whose inner loop blew up
            x = list(range(1, len(med) + 1)) if key == "meta_train_loss" else list(range(len(med)))
            line, = ax.plot(x, med.clamp(max=1e6).tolist(), label=m)
            if len(runs) > 1:
                ax.fill_between(x, t.min(0).values.clamp(max=1e6).tolist(), t.max(0).values.clamp(max=1e6).tolist(),
                                alpha=0.12, color=line.get_color())
    limit = 2 * (1 + result["config"]["inner_momentum"])
    axes[2].axhline(limit, color="k", ls="--", lw=1, label=f"divergence limit 2(1+μ) = {limit:g}")
    for ax, (key, ylabel, title) in zip(axes, panels):
        ax.set(xlabel="meta-iteration (× meta-batch inner optimizations)", ylabel=ylabel, title=title, yscale="log")
    axes[0].set_ylim(0.1, 20)
    axes[1].set_ylim(0.01, 100)
    axes[0].legend(fontsize=8)
    axes[2].legend(fontsize=8)
    fig.suptitle("median over seeds (line) and min–max over seeds (band); values beyond the axes are inner-loop "
                 "blow-ups", fontsize=9)
    fig.tight_layout()
    p = os.path.join(out, "curves.png")
    fig.savefig(p, dpi=120)
    plt.close(fig)
    paths.append(p)
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    panels = [("cosine_own", "applied", "own trajectory: applied Σ_t g_t"),
              ("cosine_shared", "applied", "same states (HyperDistill runs): applied"),
              ("cosine_shared", "last_so", "same states: second-order part of g_T")]
    for ax, (table, key, title) in zip(axes, panels):
        for m, pts in result[table].items():
            its = sorted(pts, key=int)
            ax.errorbar([int(i) for i in its], [pts[i][key]["mean"] for i in its],
                        yerr=[0 if not math.isfinite(pts[i][key]["ci95"]) else pts[i][key]["ci95"] for i in its],
                        marker="o", capsize=3, label=m)
        ax.set(xlabel="meta-iteration", ylabel="cosine to exact RMD", title=title, ylim=(-1.05, 1.05))
        ax.axhline(0, color="gray", lw=0.5)
    axes[0].legend()
    fig.tight_layout()
    p = os.path.join(out, "cosine.png")
    fig.savefig(p, dpi=120)
    plt.close(fig)
    paths.append(p)
    return paths


def main(quick: bool = False, seeds: int | None = None, out: str | None = None, workers: int | None = None,
         quiet: bool = False) -> dict:
    """Entry point of ``hypergradient reproduce sinusoid``."""
    kw = {} if seeds is None else {"seeds": seeds}
    cfg = SinusoidConfig.make_quick(**kw) if quick else SinusoidConfig.full(**kw)
    out = out or ("runs/sinusoid-quick" if quick else "results/sinusoid")
    workers = workers if workers is not None else (1 if quick else min(2, os.cpu_count() or 1))
    return run(cfg, out, workers=workers, quiet=quiet)
