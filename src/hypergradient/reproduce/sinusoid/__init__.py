"""Reproduce HyperDistill's sinusoid regression (Lee et al., ICLR 2022, Appendix G: Table 4, Fig. 3,
Table 3) with ``hypergradient reproduce sinusoid [--quick] [--seeds N] [--out DIR] [--workers N]``.

Setting (paper): 10-shot sinusoids, A ~ U(0.1, 5), phase ~ U(0, π), x ~ U(−5, 5); ANIL on a
1-100-100-100-1 ReLU MLP (the three hidden layers are λ, the last layer is w); inner SGD, momentum
0.9, lr 0.01, T = 30; hyper optimizer Adam, lr 1e-3; meta-batch 10; Reptile (η = 1) for the
initialization φ of w; M = 30 inner optimizations per meta-training run (= 30 meta-iterations of
10 tasks each); meta-test on 1000 tasks with the same inner setup; 5 runs, mean ± 95% CI.

Every value the paper leaves open is a field of :class:`SinusoidConfig` (written into
``results.json``) and is the same for every method. The methods (:data:`METHODS`):

* online, λ updated after every inner step with the meta-batch mean: FO (``first_order``),
  1-step (``one_step``), N.IFT(N, K) (``ift`` with ``solver="neumann", maxiter=N, window=K``: online
  over the last K steps only; the steps before give no hypergradient and take no outer step),
  HyperDistill (``hyperdistill``);
* offline, one outer step per meta-iteration from the mean of the B offline hypergradients: DrMAD
  (``drmad``) and exact RMD (``rmd``);
* the baseline "Reptile only": λ stays at its random initialization (outer learning rate 0), only
  the head's initialization φ is meta-learned; it shows how much of each score λ's learning adds.

γ of HyperDistill and (N, K) of N.IFT are chosen on a meta-validation task set (lowest meta-val
MSE after meta-training with the tuning seeds, which are not evaluation seeds), as in the paper.
Options keep the paper's labels ({"N": n, "K": k}) in the grid, the tables, ``results.json`` and the
job names; :func:`make_estimator` renames them to the estimator's (:data:`ESTIMATOR_OPTIONS`).

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

Modules: :mod:`.config` (the methods, the paper's numbers, :class:`SinusoidConfig`, the tuning grid),
:mod:`.tasks` (task sets and the batched evaluator), :mod:`.train` (estimators, the learner, one
meta-training run, cosines), :mod:`.cost` (Table 3's benchmark), :mod:`.runner` (jobs, resume, worker
pool, :func:`run`, :func:`main`), :mod:`.report` (tuning choice, summary, table.md), :mod:`.plots`.
"""

from .config import (BASELINES, ESTIMATOR_OPTIONS, ESTIMATORS, METHODS, PAPER_TABLE4, TASK_SEEDS, SinusoidConfig,
                     options_grid)
from .cost import cost_benchmark
from .plots import plots
from .report import choose, markdown, summarize
from .runner import main, run
from .tasks import adapt_and_score, inner_stability, task_set
from .train import applied_hypergradient, make_estimator, make_learner, train_one

__all__ = ["SinusoidConfig", "METHODS", "BASELINES", "ESTIMATORS", "ESTIMATOR_OPTIONS", "PAPER_TABLE4", "TASK_SEEDS",
           "options_grid", "task_set", "adapt_and_score", "inner_stability", "make_learner", "make_estimator",
           "applied_hypergradient", "train_one", "cost_benchmark", "choose", "summarize", "markdown", "plots",
           "run", "main"]
