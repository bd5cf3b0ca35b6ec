"""One conformance suite over the estimator registry (STYLE.md §8; ALGORITHMS.md §§1–5).

* exact methods match central finite differences (< 1e-6 relative, float64, tanh MLPs) and the ridge
  closed form through T gradient-descent steps;
* approximate methods equal exact ones where their defining reductions say so;
* every registered estimator keeps λ's structure and dtype, stays finite, reports its cost, and runs
  online if it claims to;
* forward mode and DrMAD hold memory flat in T;
* a registered estimator that this file does not cover fails :func:`test_registry_is_covered` —
  add it to ``COVERED`` together with the tests that check it.
"""

from __future__ import annotations

import functools

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import hypergradient as hg
from hypergradient import Hyper
from hypergradient.diagnostics import SavedTensorMeter
from hypergradient.estimators import REGISTRY, get

from conftest import AGREE_RTOL, assert_fd_close, ce, ce_l2, fd_grad, make_problem, rel_err, val_after

T = 6



# name -> the tests below that check it beyond the generic contract (extend when registering one)
COVERED: dict[str, tuple[str, ...]] = {
    "rmd": ("test_exact_matches_finite_differences", "test_exact_match_ridge_closed_form",
            "test_memory_rmd_recompute_holds_the_trajectory"),
    "truncated_rmd": ("test_exact_matches_finite_differences", "test_truncated_rmd_1_is_one_step"),
    "fmd": ("test_exact_matches_finite_differences", "test_exact_match_ridge_closed_form", "test_fmd_is_rmd",
            "test_online_fmd_is_rmd_at_every_step", "test_memory_flat_in_T"),
    "drmad": ("test_drmad_is_rmd_on_a_linear_trajectory", "test_memory_flat_in_T"),
    "one_step": ("test_truncated_rmd_1_is_one_step", "test_online_matches_offline",
                 "test_one_step_finite_difference_converges_to_one_step"),
    "es": ("test_es.py::test_antithetic_pairs_cancel_even_orders_on_a_quadratic",
           "test_es.py::test_unbiased_within_standard_errors"),
    "sama": ("test_sama_is_one_step_with_a_finite_difference",),
    "pes": ("test_pes.py::test_pes_unbiased_where_truncated_es_is_biased", "test_pes.py::test_one_truncation_is_es"),
    "online_rmd": ("test_exact_matches_finite_differences", "test_online_rmd_is_online_fmd_while_lambda_moves",
                   "test_online_rmd_reductions"),
    "first_order": ("test_first_order_is_the_direct_term", "test_online_matches_offline"),
    "ift": ("test_ift_exact_matches_finite_differences_at_convergence", "test_ift_matches_ridge_closed_form",
            "test_ift_online_last_K", "test_ift_aliases_are_ift_with_a_solver"),
    # checked in their own files (test_<name>.py::...)
    "hyperdistill": ("test_hyperdistill.py::test_gamma0_theta1_is_one_step",
                     "test_hyperdistill.py::test_gamma_identity_step_is_exact_rmd"),
    "evograd": ("test_evograd.py::test_matches_closed_form", "test_evograd.py::test_one_dimensional_toy",
                "test_evograd.py::test_small_sigma_is_one_step_direction"),
}
# the option sets the generic contract test runs an estimator with (default: one, without options)
GENERIC_OPTIONS: dict[str, list[dict]] = {"truncated_rmd": [{"K": 2}],
                                          "ift": [{"solver": "cg"}, {"solver": "neumann", "maxiter": 5},
                                                  {"solver": "dense"}]}
GENERIC_CASES = [(name, opts) for name in sorted(REGISTRY) for opts in GENERIC_OPTIONS.get(name, [{}])]


def test_registry_is_covered():
    missing = sorted(set(REGISTRY) - set(COVERED))
    assert not missing, f"registered but not covered by the conformance suite: {missing} (add to COVERED)"


# ---- problems ------------------------------------------------------------------------------------------
PROBLEMS = {
    # loss hyperparameter + scheduled lr: forward mode takes its generic batched-JVP path
    "sgd": lambda: make_problem("sgd", dict(lr=Hyper(0.3, schedule=2), momentum=Hyper(0.8),
                                            weight_decay=Hyper(0.05)),
                                train_loss=ce_l2, loss_hparams={"l2": Hyper(1e-2, positive="exp")}, T=T),
    # only lr / momentum / weight decay, each shared over blocks of steps: the SGD closed form
    "sgd_closed_form": lambda: make_problem("sgd", dict(lr=Hyper(0.3, "tensor", schedule=2, positive="softplus"),
                                                        momentum=Hyper(0.8, block=4),
                                                        weight_decay=Hyper(0.05, "tensor", schedule=3)), T=T),
    "adam": lambda: make_problem("adam", dict(lr=Hyper(0.05, positive="softplus"), beta1=Hyper(0.8)),
                                 train_loss=ce_l2, loss_hparams={"l2": Hyper(1e-2, positive="exp")}, T=T),
}


@functools.lru_cache(maxsize=None)
def reference(name: str):
    """(problem, λ, central finite differences of L_val(w_T(λ)))."""
    problem = PROBLEMS[name]()
    lam = problem.init_hparams()
    return problem, lam, fd_grad(val_after(problem), lam)


def problem_and_lam(name: str):
    problem = PROBLEMS[name]()
    return problem, problem.init_hparams()


EXACT = [("rmd", {"storage": "graph"}), ("rmd", {"storage": "recompute"}),
         ("rmd", {"storage": "checkpoint", "every": 4}), ("fmd", {}), ("fmd", {"closed_form": False}),
         ("truncated_rmd", {"K": T}), ("online_rmd", {}), ("online_rmd", {"storage": "graph"})]


@pytest.mark.parametrize("pname", list(PROBLEMS))
@pytest.mark.parametrize("name,options", EXACT, ids=[f"{n}-{'-'.join(map(str, o.values())) or 'default'}"
                                                      for n, o in EXACT])
def test_exact_matches_finite_differences(pname, name, options):
    problem, lam, fd = reference(pname)
    h = hg.estimate(name, problem, lam, **options)
    assert_fd_close(h.value, fd)
    if name == "fmd":
        assert h.info["closed_form"] == (pname == "sgd_closed_form" and options.get("closed_form") is not False)


def test_fmd_closed_form_is_chosen_only_where_it_applies():
    problem, lam = problem_and_lam("adam")
    with pytest.raises(ValueError, match="closed_form=True does not apply"):
        hg.estimate("fmd", problem, lam, closed_form=True)
    problem, lam = problem_and_lam("sgd")
    with pytest.raises(ValueError, match="loss.l2"):
        hg.estimate("fmd", problem, lam, closed_form=True)


# ---- ridge regression: closed forms --------------------------------------------------------------------
def ridge(T: int, lr: float = 0.5, l2: float = 0.1, seed: int = 0):
    """(problem, λ, data): 0.5·mean((Xw − y)²) + 0.5·l2·‖w‖² trained by full-batch gradient descent."""
    g = torch.Generator().manual_seed(seed)
    X, y = torch.randn(30, 4, generator=g), torch.randn(30, 1, generator=g)
    Xv, yv = torch.randn(20, 4, generator=g), torch.randn(20, 1, generator=g)
    torch.manual_seed(seed)
    model = nn.Linear(4, 1, bias=False).double()

    def train(f, b, hp):
        return 0.5 * ((f(b[0]) - b[1]) ** 2).mean() + 0.5 * hp["l2"] * (f.params["weight"] ** 2).sum()

    def val(f, b, hp):
        return 0.5 * ((f(b[0]) - b[1]) ** 2).mean()

    problem = hg.InnerProblem(model, train, val, hg.optim.sgd(lr=lr), hg.Hypers(loss={"l2": Hyper(l2)}),
                              hg.Data([(X, y)], (Xv, yv)), horizon=T)
    return problem, problem.init_hparams(), (X, y, Xv, yv, model.weight.detach().reshape(-1), lr, l2)


def ridge_closed_form(data, T: int | None):
    """dL_val(w_T)/dλ with M = I − η(A), A = XᵀX/n + λI, b = Xᵀy/n:
    w_T = Mᵀ w_0 + (I − M^T) A⁻¹ b, so dw_T/dλ = −ηT M^{T−1} w_0 + ηT M^{T−1} A⁻¹ b − (I − M^T) A⁻² b;
    T = None is the converged solution w* = A⁻¹ b, dw*/dλ = −A⁻¹ w*."""
    X, y, Xv, yv, w0, lr, l2 = data
    n, d = X.shape
    A = X.T @ X / n + l2 * torch.eye(d)
    b = (X.T @ y / n).reshape(-1)
    sol = torch.linalg.solve(A, b)
    if T is None:
        w, dw = sol, -torch.linalg.solve(A, sol)
    else:
        M = torch.eye(d) - lr * A
        MT, MT1 = torch.linalg.matrix_power(M, T), torch.linalg.matrix_power(M, T - 1)
        w = MT @ w0 + (torch.eye(d) - MT) @ sol
        dw = -lr * T * MT1 @ w0 + lr * T * MT1 @ sol - (torch.eye(d) - MT) @ torch.linalg.solve(A, sol)
    grad_val = (Xv.T @ (Xv @ w - yv.reshape(-1))) / Xv.shape[0]
    return grad_val @ dw


@pytest.mark.parametrize("name,options", [("rmd", {}), ("rmd", {"storage": "recompute"}), ("fmd", {})])
def test_exact_match_ridge_closed_form(name, options):
    problem, lam, data = ridge(T=20)
    h = hg.estimate(name, problem, lam, **options)
    ref = ridge_closed_form(data, 20)
    assert abs(h.value["loss.l2"] - ref) / abs(ref) < AGREE_RTOL


@pytest.mark.parametrize("name,options,rtol", [("ift", {"solver": "cg", "maxiter": 20}, 1e-10),
                                               ("ift", {"solver": "dense"}, 1e-10),
                                               ("ift", {"solver": "neumann", "maxiter": 300}, 1e-10)])
def test_ift_matches_ridge_closed_form(name, options, rtol):
    problem, lam, data = ridge(T=150)
    h = hg.estimate(name, problem, lam, **options)
    ref = ridge_closed_form(data, None)
    assert abs(h.value["loss.l2"] - ref) / abs(ref) < rtol
    assert h.direct["loss.l2"] == 0


def test_ift_neumann_truncation_is_visible():
    """Few Neumann terms must not already be exact (else the test above would be vacuous)."""
    problem, lam, data = ridge(T=150)
    h = hg.estimate("ift", problem, lam, solver="neumann", maxiter=3)
    ref = ridge_closed_form(data, None)
    assert abs(h.value["loss.l2"] - ref) / abs(ref) > 1e-3


def test_ift_exact_matches_finite_differences_at_convergence():
    problem, lam, _ = ridge(T=150)
    h = hg.estimate("ift", problem, lam, solver="dense")
    assert_fd_close(h.value, fd_grad(val_after(problem), lam))


@pytest.mark.parametrize("solver", ["cg", "neumann", "dense"])
def test_ift_rejects_optimizer_hyperparameters(solver):
    problem, lam = problem_and_lam("sgd")
    with pytest.raises(ValueError, match="cannot differentiate optimizer hyperparameters"):
        hg.estimate("ift", problem, lam, solver=solver)


@pytest.mark.parametrize("alias,solver,options", [("ift_cg", "cg", {"maxiter": 7}), ("ift_exact", "dense", {}),
                                                  ("ift_neumann", "neumann", {"maxiter": 5})])
def test_ift_aliases_are_ift_with_a_solver(alias, solver, options):
    """ift_cg / ift_exact / ift_neumann are ift with that solver (bitwise), hidden from the registry; the
    old option names N= and K= still work for one version, with a DeprecationWarning."""
    problem, lam, _ = ridge(T=20)
    a = hg.estimate(alias, problem, lam, **options)
    b = hg.estimate("ift", problem, lam, solver=solver, **options)
    assert torch.equal(a.flat(), b.flat()) and a.cost == b.cost
    assert alias not in hg.REGISTRY and alias in hg.estimators.ALIASES
    with pytest.raises(TypeError, match="fixes"):
        get(alias, solver="cg")
    if solver == "neumann":
        with pytest.warns(DeprecationWarning, match="maxiter"):
            c = hg.estimate(alias, problem, lam, N=5)
        assert torch.equal(c.flat(), a.flat())
        with pytest.warns(DeprecationWarning, match="window"):
            assert get(alias, K=2).window == 2
    with pytest.raises(ValueError, match="solver must be one of"):
        get("ift", solver="lu")


# ---- reductions ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("pname", ["sgd", "adam"])
def test_truncated_rmd_1_is_one_step(pname):
    problem, lam = problem_and_lam(pname)
    a = hg.estimate("truncated_rmd", problem, lam, K=1, storage="recompute")
    b = hg.estimate("one_step", problem, lam)
    assert rel_err(b.value, a.value) < AGREE_RTOL
    assert b.cost.vjps == 1


@pytest.mark.parametrize("pname", list(PROBLEMS))
def test_fmd_is_rmd(pname):
    problem, lam = problem_and_lam(pname)
    state = problem.init_state()
    ref = hg.estimate("rmd", problem, lam)
    assert rel_err(hg.estimate("fmd", problem, lam).value, ref.value) < AGREE_RTOL
    assert rel_err(hg.estimate("fmd", problem, lam, closed_form=False).value, ref.value) < AGREE_RTOL
    # from a later start state (absolute step indices)
    problem = make_problem("sgd", dict(lr=Hyper(0.3), momentum=Hyper(0.8)), T=T)
    lam = problem.init_hparams()
    state, _ = problem.run(problem.init_state(), lam, 3)
    ref = hg.estimate("rmd", problem, lam, state=state, storage="recompute")
    assert rel_err(hg.estimate("fmd", problem, lam, state=state).value, ref.value) < AGREE_RTOL


def linear_trajectory(T: int):
    """L_train = ⟨c, w⟩ + (s − s₀)/2 ‖w‖² at s = s₀: the gradient is the constant c, so plain SGD moves
    w on a straight line, while B_t = −η w_{t−1} (for s) depends on where on the line step t starts."""
    torch.manual_seed(0)
    model = nn.Linear(3, 2, bias=False).double()
    c = torch.randn(2, 3)
    s0 = 0.3
    g = torch.Generator().manual_seed(1)
    Xv = torch.randn(5, 3, generator=g)

    def train(f, b, hp):
        w = f.params["weight"]
        return (c * w).sum() + 0.5 * (hp["s"] - s0) * (w ** 2).sum()

    def val(f, b, hp):
        return torch.tanh(f(b)).pow(2).mean()

    problem = hg.InnerProblem(model, train, val, hg.optim.sgd(lr=Hyper(0.1)), hg.Hypers(loss={"s": Hyper(s0)}),
                              hg.Data([Xv], Xv), horizon=T)
    return problem, problem.init_hparams()


def test_drmad_is_rmd_on_a_linear_trajectory():
    problem, lam = linear_trajectory(T=12)
    ref = hg.estimate("rmd", problem, lam)
    h = hg.estimate("drmad", problem, lam)
    assert rel_err(h.value, ref.value) < AGREE_RTOL
    assert rel_err(h.indirect, ref.indirect) < AGREE_RTOL
    # not vacuous: on a curved trajectory (MLP, momentum) the interpolation is visibly approximate
    problem, lam = problem_and_lam("sgd")
    assert rel_err(hg.estimate("drmad", problem, lam).value, hg.estimate("rmd", problem, lam).value) > 1e-3


@pytest.mark.parametrize("pname", ["sgd", "adam"])
def test_first_order_is_the_direct_term(pname):
    problem, lam = problem_and_lam(pname)
    ref = hg.estimate("rmd", problem, lam)
    h = hg.estimate("first_order", problem, lam)
    for k in lam:
        torch.testing.assert_close(h.value[k], ref.direct[k], rtol=0, atol=0)
        assert not h.indirect[k].any()


# ---- online --------------------------------------------------------------------------------------------
def online(name, problem, lam, steps, outer_lr=None, **options):
    """An online run of ``steps`` inner steps; with ``outer_lr`` the outer optimizer moves λ after every
    step (SGD on the hypergradient, in place as torch.optim does)."""
    est = get(name, **options)
    lam = {k: v.detach().clone() for k, v in lam.items()} if outer_lr else lam
    state = problem.init_state()
    carry = est.online_init(problem, lam, state, est.new_state())
    out = []
    for _ in range(steps):
        h, carry = est.online_step(problem, lam, state, carry)
        state = h.state
        out.append(h)
        if outer_lr:
            with torch.no_grad():
                for k in lam:
                    lam[k] -= outer_lr * h.value[k]
    return out


@pytest.mark.parametrize("closed_form", [None, False])
def test_online_fmd_is_rmd_at_every_step(closed_form):
    """α_t Z_t is the exact hypergradient of the horizon-t problem at every t (λ held fixed)."""
    problem = make_problem("sgd", dict(lr=Hyper(0.3), momentum=Hyper(0.8), weight_decay=Hyper(0.05)), T=T)
    lam = problem.init_hparams()
    for t, h in enumerate(online("fmd", problem, lam, T, closed_form=closed_form), 1):
        assert rel_err(h.value, hg.estimate("rmd", problem, lam, T=t).value) < AGREE_RTOL
        assert h.cost.val_grads == 1


@pytest.mark.parametrize("opt,hps", [("sgd", dict(lr=Hyper(0.3), momentum=Hyper(0.8))),
                                     ("adam", dict(lr=Hyper(0.05, positive="softplus"), beta1=Hyper(0.8)))])
def test_one_step_finite_difference_converges_to_one_step(opt, hps):
    """one_step(fd=c) (DARTS' central difference of gradients at w ± ε v, ε = c/‖v‖) tends to one_step
    as O(ε²) in float64, with a training loss whose λ-gradient is not quadratic in w (a temperature);
    the optimizer's own hyperparameters go through the update's first-order VJP exactly."""
    def tl(f, b, hp):
        return F.cross_entropy(f(b[0]) / hp["temp"], b[1])
    problem = make_problem(opt, hps, train_loss=tl, val_loss=tl, loss_hparams={"temp": Hyper(1.5, positive="softplus")},
                           T=4)
    lam = problem.init_hparams()
    ref = hg.estimate("one_step", problem, lam)
    errs = [rel_err(hg.estimate("one_step", problem, lam, fd=c).value, ref.value) for c in (1e-2, 1e-3, 1e-4)]
    assert errs[0] > 50 * errs[1] > 2500 * errs[2] and errs[2] < 1e-8, errs
    h = hg.estimate("one_step", problem, lam, fd=1e-3)
    assert h.cost == hg.Cost(steps=4, grads=2, val_grads=1)   # no VJP of Φ, no Hessian product, no extra step
    for t, hh in enumerate(online("one_step", problem, lam, 3, fd=1e-4), 1):
        assert rel_err(hh.value, hg.estimate("one_step", problem, lam, T=t).value) < 1e-7
    with pytest.raises(ValueError, match="fd must be"):
        get("one_step", fd=0.0)


def test_sama_is_one_step_with_a_finite_difference():
    """sama(R) is one_step(fd=R) bitwise, and with SGD and R → 0 it is one_step (float64)."""
    def tl(f, b, hp):
        return F.cross_entropy(f(b[0]) / hp["temp"], b[1])
    for opt, hps in (("sgd", dict(lr=0.3, momentum=0.8)), ("adam", dict(lr=Hyper(0.05), beta1=0.8))):
        problem = make_problem(opt, hps, train_loss=tl, val_loss=tl, loss_hparams={"temp": Hyper(1.5)}, T=4)
        lam = problem.init_hparams()
        a, b = hg.estimate("sama", problem, lam, R=1e-2), hg.estimate("one_step", problem, lam, fd=1e-2)
        assert all(torch.equal(a.value[k], b.value[k]) for k in lam)
        assert rel_err(hg.estimate("sama", problem, lam, R=1e-5).value, hg.estimate("one_step", problem, lam).value) < 1e-9
        assert a.cost.vjps == 0 and a.cost.hvps == 0


@pytest.mark.parametrize("storage", ["recompute", "graph"])
def test_online_rmd_is_online_fmd_while_lambda_moves(storage):
    """With λ moving after every step, online_rmd (the past steps with the λ_s they used) equals online
    fmd (RTRL) at every step, under both storage policies."""
    problem = make_problem("sgd", dict(lr=Hyper(0.3), momentum=Hyper(0.8), weight_decay=Hyper(0.05)),
                           train_loss=ce_l2, val_loss=ce_l2, loss_hparams={"l2": Hyper(1e-2)}, T=T)
    lam = problem.init_hparams()
    a = online("online_rmd", problem, lam, T, outer_lr=0.01, storage=storage)
    b = online("fmd", problem, lam, T, outer_lr=0.01)
    for ha, hb in zip(a, b):
        assert rel_err(ha.value, hb.value) < AGREE_RTOL
        for x, y in zip(ha.state.params, hb.state.params):
            torch.testing.assert_close(x, y, rtol=1e-12, atol=1e-14)


def test_online_rmd_reductions():
    """λ fixed: online_rmd at step t is offline rmd with horizon t; window=K is truncated_rmd(K) at every
    step and window=1 is one_step; graph equals recompute; the offline call is rmd / truncated_rmd."""
    problem = make_problem("adam", dict(lr=Hyper(0.05, positive="softplus"), beta1=Hyper(0.8)), T=T)
    lam = problem.init_hparams()
    full = online("online_rmd", problem, lam, T)
    graph = online("online_rmd", problem, lam, T, storage="graph")
    win2 = online("online_rmd", problem, lam, T, window=2)
    win1 = online("online_rmd", problem, lam, T, window=1)
    for t in range(1, T + 1):
        ref = hg.estimate("rmd", problem, lam, T=t)
        assert rel_err(full[t - 1].value, ref.value) < AGREE_RTOL
        assert rel_err(graph[t - 1].value, ref.value) < AGREE_RTOL
        assert rel_err(win2[t - 1].value, hg.estimate("truncated_rmd", problem, lam, T=t, K=2).value) < AGREE_RTOL
        assert rel_err(win1[t - 1].value, hg.estimate("one_step", problem, lam, T=t).value) < AGREE_RTOL
        assert full[t - 1].cost.vjps == t and win2[t - 1].cost.vjps == min(t, 2)
    assert rel_err(hg.estimate("online_rmd", problem, lam).value, hg.estimate("rmd", problem, lam).value) < AGREE_RTOL
    assert rel_err(hg.estimate("online_rmd", problem, lam, window=3).value,
                   hg.estimate("truncated_rmd", problem, lam, K=3).value) < AGREE_RTOL
    with pytest.raises(ValueError, match="storage='graph' keeps the graph"):
        get("online_rmd", storage="graph", window=2)


@pytest.mark.parametrize("name", ["one_step", "first_order"])
def test_online_matches_offline(name):
    problem = make_problem("sgd", dict(lr=Hyper(0.3), momentum=Hyper(0.8)), train_loss=ce_l2, val_loss=ce_l2,
                           loss_hparams={"l2": Hyper(1e-2)}, T=T)
    lam = problem.init_hparams()
    for t, h in enumerate(online(name, problem, lam, T), 1):
        ref = hg.estimate(name, problem, lam, T=t)
        assert rel_err(h.value, ref.value) < AGREE_RTOL
        assert h.cost == ref.cost - hg.Cost(steps=t - 1)


@pytest.mark.parametrize("name,options", [("ift", {"solver": "cg"}), ("ift", {"solver": "neumann", "maxiter": 10})])
def test_ift_online_last_K(name, options):
    """N.IFT(N, K): only the last K of the horizon's steps compute a hypergradient, each equal to the
    offline estimate at that step, at (N + 1) products (Neumann)."""
    Tr, K = 8, 3
    problem, lam, _ = ridge(T=Tr)
    hs = online(name, problem, lam, Tr, window=K, **options)
    assert [h.active for h in hs] == [False] * (Tr - K) + [True] * K
    for h in hs[:Tr - K]:
        assert not h.value["loss.l2"].any() and h.cost.hvps == 0
    for t, h in enumerate(hs[Tr - K:], Tr - K + 1):
        assert rel_err(h.value, hg.estimate(name, problem, lam, T=t, **options).value) < AGREE_RTOL
    if options["solver"] == "neumann":
        assert hs[-1].cost.hvps == options["maxiter"] + 1


# ---- the generic contract, for every registered estimator ------------------------------------------------
def float32_problem():
    g = torch.Generator().manual_seed(0)
    X, y = torch.randn(12, 3, generator=g).float(), torch.randint(0, 2, (12,), generator=g)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)).float()

    def train(f, b, hp):
        return F.cross_entropy(f(b[0]), b[1]) + hp["l2"] * sum((p ** 2).sum() for p in f.params.values())

    return hg.InnerProblem(model, train, ce, hg.optim.sgd(lr=0.2, momentum=0.5),
                           hg.Hypers(loss={"l2": Hyper(0.01, positive="exp")}),
                           hg.Data([(X[:6], y[:6]), (X[6:], y[6:])], (X, y)), horizon=4)


@pytest.mark.parametrize("name,options", GENERIC_CASES,
                         ids=[n + "".join(f"-{v}" for v in o.values()) for n, o in GENERIC_CASES])
def test_generic_contract(name, options):
    problem = float32_problem()
    lam = problem.init_hparams()
    est = get(name, **options)
    h = est(problem, lam, T=4)
    assert isinstance(h, hg.Hypergradient) and isinstance(h.info, dict)
    for part in (h.value, h.direct, h.indirect):
        assert list(part) == list(lam)
        for k, v in part.items():
            assert v.shape == lam[k].shape and v.dtype == torch.float32 and bool(torch.isfinite(v).all())
    for k in lam:
        torch.testing.assert_close(h.value[k], h.direct[k] + h.indirect[k])
        assert lam[k].grad is None, "estimators never write .grad"
    assert h.cost.val_grads >= 1
    if est.online:
        hs = online(name, problem, lam, 3, **options)
        for hh in hs:
            assert list(hh.value) == list(lam) and all(v.dtype == torch.float32 for v in hh.value.values())


# ---- memory --------------------------------------------------------------------------------------------
def memory_problem(T, l2: bool = True):
    """The smallest problem with a loss and two optimizer hyperparameters (cheap per step, so T = 1000
    stays fast); lr / momentum / l2 take forward mode's generic path."""
    g = torch.Generator().manual_seed(0)
    X, y = torch.randn(4, 2, generator=g), torch.randn(4, 1, generator=g)
    torch.manual_seed(0)
    model = nn.Linear(2, 1, bias=False).double()

    def train(f, b, hp):
        loss = torch.tanh(f(b[0]) - b[1]).pow(2).mean()
        return loss + hp["l2"] * (f.params["weight"] ** 2).sum() if l2 else loss

    def val(f, b, hp):
        return (f(b[0]) - b[1]).pow(2).mean()

    return hg.InnerProblem(model, train, val, hg.optim.sgd(lr=Hyper(0.1), momentum=Hyper(0.5)),
                           hg.Hypers(loss={"l2": Hyper(0.01)} if l2 else None),
                           hg.Data([(X, y)], (X, y)), horizon=T)


def held(name, T, **options):
    """(info['stored_bytes'], peak bytes autograd held in saved tensors) over T inner steps."""
    problem = memory_problem(T)
    lam = problem.init_hparams()
    with SavedTensorMeter() as meter:
        h = hg.estimate(name, problem, lam, **options)
    assert meter.live == 0, "autograd still holds saved tensors after the call"
    return h.info["stored_bytes"], meter.peak, problem.init_state().nbytes()


@pytest.mark.parametrize("name", ["fmd", "drmad"])
def test_memory_flat_in_T(name):
    short, long = held(name, 100), held(name, 1000)
    assert short[0] == long[0] and short[1] == long[1], (short, long)


def test_memory_fmd_closed_form_flat_in_T():
    def run(T):
        problem = memory_problem(T, l2=False)
        lam = problem.init_hparams()
        with SavedTensorMeter() as meter:
            h = hg.estimate("fmd", problem, lam)
        assert h.info["closed_form"]
        return h.info["stored_bytes"], meter.peak
    assert run(100) == run(1000)


def test_memory_rmd_recompute_holds_the_trajectory():
    """recompute keeps s_0 … s_{T−1} plus one state and nothing in autograd across steps; the graph
    policy's saved tensors grow with T (the meter sees growth where there is some)."""
    (s100, p100, one), (s1000, p1000, _) = held("rmd", 100, storage="recompute"), held("rmd", 1000, storage="recompute")
    assert s100 == 101 * one and s1000 == 1001 * one
    assert p100 == p1000
    g10, g100 = held("rmd", 10)[1], held("rmd", 100)[1]
    assert g100 > 5 * g10, (g10, g100)
