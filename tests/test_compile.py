"""torch.compile'd models (issue 21): the support matrix, backed by these tests.

| the model given                 | first_order | evograd | rmd (and every estimator through the inner steps) |
|---------------------------------|-------------|---------|---------------------------------------------------|
| ``torch.compile(model)``        | works       | works   | works                                             |
| a compiled submodule inside     | clear error | clear error | clear error                                   |

"Works" means: the inner loop runs the module inside the wrapper (``model._orig_mod``) with a warning
(torch.compile's AOT autograd has no double backward, and its compiled backward frees its buffers after
one use, so the compiled graph cannot carry a hypergradient), the λ keys carry no ``_orig_mod.`` prefix,
and the hypergradient is bitwise the uncompiled module's. Compiling is lazy, and the wrapper is never
called, so these tests compile nothing."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import hypergradient as hg
from hypergradient import Hyper, Hypers

WARNS = pytest.warns(UserWarning, match="uncompiled")


def weighted(f, batch, hp):
    return F.cross_entropy(f(batch[0]), batch[1]) + hp["l2"] * sum((w * w).sum() for w in f.params.values())


def ce(f, batch, hp):
    return F.cross_entropy(f(batch[0]), batch[1])


def problem(model, lr=Hyper(0.1, "tensor")):
    g = torch.Generator().manual_seed(0)
    X, y = torch.randn(32, 5, generator=g), torch.randint(0, 3, (32,), generator=g)
    return hg.InnerProblem(model, weighted, ce, hg.optim.sgd(lr=lr, momentum=0.9),
                           Hypers(model=["3.bias"], loss={"l2": Hyper(1e-3)}), hg.Data([(X[:16], y[:16]), (X[16:], y[16:])], (X, y)),
                           horizon=4)


def net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(5, 8), nn.BatchNorm1d(8), nn.Tanh(), nn.Linear(8, 3))


@pytest.mark.parametrize("estimator", ["first_order", "evograd", "rmd", "one_step", "fmd"])
def test_a_compiled_model_gives_the_uncompiled_hypergradient(estimator):
    plain, lr = net(), 0.1 if estimator == "evograd" else Hyper(0.1, "tensor")   # evograd: loss λ only
    ref = problem(copy.deepcopy(plain), lr)
    with WARNS:
        p = problem(torch.compile(plain, backend="aot_eager"), lr)
    lam, lam_ref = p.init_hparams(), ref.init_hparams()
    assert list(lam) == list(lam_ref) and not any("_orig_mod" in k for k in lam)
    assert p.names == ref.names
    opts = {"seed": 0} if estimator == "evograd" else {}
    got = hg.estimate(estimator, p, lam, **opts)
    want = hg.estimate(estimator, ref, lam_ref, **opts)
    assert all(torch.equal(got.value[k], want.value[k]) for k in want.value)
    assert got.flat().norm() > 0
    # the trained network comes back as the plain module
    m = p.module_at(p.final_state(lam), lam)
    assert type(m) is nn.Sequential and "1.running_mean" in dict(m.named_buffers())


def test_a_compiled_hyperparameter_module_has_plain_keys():
    mwn = nn.Sequential(nn.Linear(1, 4), nn.Tanh(), nn.Linear(4, 1))

    def reweighted(f, batch, hp):
        losses = F.cross_entropy(f(batch[0]), batch[1], reduction="none")
        return (torch.sigmoid(hp["mwn"](losses[:, None]))[:, 0] * losses).mean()
    g = torch.Generator().manual_seed(1)
    X, y = torch.randn(16, 5, generator=g), torch.randint(0, 3, (16,), generator=g)
    with WARNS:
        p = hg.InnerProblem(net(), reweighted, ce, "sgd", Hypers(modules={"mwn": torch.compile(mwn, backend="aot_eager")}),
                            hg.Data([(X, y)], (X, y)), horizon=3)
    lam = p.init_hparams()
    assert {k for k in lam if k.startswith("loss.")} == {f"loss.mwn.{n}" for n, _ in mwn.named_parameters()}
    assert hg.estimate("rmd", p, lam).flat().norm() > 0


def test_a_compiled_submodule_is_a_clear_error():
    model = net()
    model[0] = torch.compile(model[0], backend="aot_eager")
    with pytest.raises(TypeError, match=r"model\[0\] = model\[0\]\._orig_mod"):
        problem(model)


def test_the_fix_for_a_compiled_sequential_entry_is_valid_python():
    model = nn.Sequential(nn.Sequential(nn.Linear(5, 8), nn.Tanh()), nn.Linear(8, 3))
    model[0][0] = torch.compile(model[0][0], backend="aot_eager")
    with pytest.raises(TypeError, match=r"model\[0\]\[0\] = model\[0\]\[0\]\._orig_mod"):
        problem(model)
