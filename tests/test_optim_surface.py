"""The optimizer surface of issue 13: optimizers carry their hyperparameters, options and param groups
(torch.optim's conventions), and clip the gradient inside the step; every piece checked against
torch.optim (to 1e-12 in float64) and its hypergradients against finite differences."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

import hypergradient as hg
from hypergradient import Hyper

from conftest import (FD_RTOL, AGREE_RTOL, assert_fd_close, ce, classification_data, fd_grad, mlp, rel_err,
                      val_after)

T = 6


def _problem(opt, T=T, model=None, **kw):
    train, val = classification_data()
    return hg.InnerProblem(mlp() if model is None else model, ce, ce, opt, data=hg.Data(train, val), horizon=T,
                           **kw)


def _torch_run(model, make_opt, T, clip=None):
    """T steps of a torch.optim optimizer (``make_opt(module)``), ``clip(params)`` between backward and step."""
    m = copy.deepcopy(model)
    opt = make_opt(m)
    train, _ = classification_data()
    for t in range(1, T + 1):
        x, y = train[(t - 1) % len(train)]
        opt.zero_grad()
        F.cross_entropy(m(x), y).backward()
        if clip is not None:
            clip(list(m.parameters()))
        opt.step()
    return m


# ---- param groups ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("learned", [False, True])
def test_param_groups_reproduce_torch_optim(learned):
    """Per-group values (by tensors, by names / patterns) give torch.optim's param-group trajectory; a
    group's own Hyper is one λ leaf ``optim.lr@name``, the optimizer-level one is shared by the rest."""
    model = mlp((4, 6, 5, 3))
    m = dict(model.named_parameters())
    lr = (lambda v: Hyper(v)) if learned else (lambda v: v)
    opt = hg.optim.adam([{"params": [m["0.weight"], m["0.bias"]], "lr": lr(0.05), "betas": (0.8, 0.95), "name": "first"},
                         {"params": "2.*", "weight_decay": 0.1},
                         {"params": ["4"], "lr": lr(0.02)}], lr=lr(0.01), amsgrad=True)
    pb = _problem(opt, model=model)
    lam = pb.init_hparams()
    if learned:
        assert list(lam) == ["optim.lr@first", "optim.lr@2", "optim.lr"]
    state, _ = pb.run(pb.init_state(), lam, T)
    ref = _torch_run(model, lambda mm: torch.optim.Adam(
        [{"params": [mm[0].weight, mm[0].bias], "lr": 0.05, "betas": (0.8, 0.95)},
         {"params": mm[2].parameters(), "weight_decay": 0.1},
         {"params": mm[4].parameters(), "lr": 0.02}], lr=0.01, amsgrad=True), T)
    for n, w in zip(pb.names, state.params):
        torch.testing.assert_close(w, dict(ref.named_parameters())[n].detach(), atol=1e-12, rtol=0)
    view = pb.hparams_view(lam)["lr"]
    assert {n: float(v) for n, v in view.items()} == pytest.approx(
        {"0.weight": 0.05, "0.bias": 0.05, "2.weight": 0.01, "2.bias": 0.01, "4.weight": 0.02, "4.bias": 0.02})


def test_group_granularity_and_hypergradients_match_finite_differences():
    """Hyper(..., "group"): one leaf per group; with a group's own tensor-granularity Hyper beside it,
    RMD through it matches central differences."""
    opt = hg.optim.sgd([{"params": "0.*", "name": "body"},
                        {"params": "2.*", "name": "head", "momentum": Hyper(0.5, "tensor")}],
                       lr=Hyper(0.2, "group"), momentum=0.8)
    pb = _problem(opt)
    lam = pb.init_hparams()
    assert list(lam) == ["optim.lr@body", "optim.lr@head", "optim.momentum[2.weight]", "optim.momentum[2.bias]"]
    res = hg.estimate("rmd", pb, lam)
    assert_fd_close(res.value, fd_grad(val_after(pb), lam))
    assert hg.estimate("fmd", pb, lam).info["closed_form"]      # SGD's closed form covers groups
    assert rel_err(hg.estimate("fmd", pb, lam).value, res.value) < AGREE_RTOL


def test_param_group_mistakes_are_named():
    with pytest.raises(ValueError, match=r"inner weights \['2.weight', '2.bias'\] are in no param group"):
        _problem(hg.optim.sgd([{"params": "0.*"}], lr=0.1))
    with pytest.raises(ValueError, match="in param groups '0' and '1'"):
        _problem(hg.optim.sgd([{"params": "0.*"}, {"params": ["0.weight", "2.*"]}], lr=0.1))
    with pytest.raises(ValueError, match="not a parameter of the model"):
        _problem(hg.optim.sgd([torch.zeros(3)], lr=0.1))
    with pytest.raises(TypeError, match=r"options \['nesterov'\] are per optimizer here"):
        hg.optim.sgd([{"params": "0.*", "nesterov": True}])
    with pytest.raises(TypeError, match="has hyperparameters"):
        hg.optim.sgd([{"params": "0.*", "betas": 0.9}])
    with pytest.raises(ValueError, match="granularity 'group' needs param groups"):
        _problem(hg.optim.sgd(lr=Hyper(0.1, "group")))
    with pytest.raises(ValueError, match="holds no inner weight"):
        _problem(hg.optim.sgd([{"params": "0.*"}, {"params": "2.*"}], lr=0.1), hypers=hg.Hypers(model="0"))


def test_model_parameters_as_one_group_and_torch_spellings():
    """``hg.optim.sgd(model.parameters(), ...)`` as torch writes it; torch's tuple spellings; the
    execution options torch has (foreach, fused, capturable, differentiable) are accepted and ignored."""
    model = mlp()
    a = _problem(hg.optim.adam(model.parameters(), lr=0.01, betas=(0.8, 0.9), foreach=True, fused=False,
                               capturable=False, differentiable=True), model=model)
    b = _problem(hg.optim.adam(lr=0.01, beta1=0.8, beta2=0.9), model=model)
    sa, _ = a.run(a.init_state(), a.init_hparams(), T)
    sb, _ = b.run(b.init_state(), b.init_hparams(), T)
    assert all(torch.equal(x, y) for x, y in zip(sa.params, sb.params))
    with pytest.raises(TypeError, match="give betas= or beta1=, not both"):
        hg.optim.adam(betas=(0.9, 0.99), beta1=0.9)
    assert "decoupled_weight_decay=True" in repr(hg.optim.adam(decoupled_weight_decay=True))


def test_deprecated_hypers_optimizer_builds_the_same_problem():
    new = _problem(hg.optim.sgd(lr=Hyper(0.2), momentum=0.5))
    with pytest.warns(DeprecationWarning, match=r"Hypers\(optimizer=\{...\}\) is now the optimizer's own keywords"):
        old = _problem("sgd", hypers=hg.Hypers({"lr": Hyper(0.2), "momentum": 0.5}))
    lam = new.init_hparams()
    assert torch.equal(hg.estimate("rmd", new, lam).flat(), hg.estimate("rmd", old, lam).flat())
    with pytest.warns(DeprecationWarning), pytest.raises(TypeError, match="set both on the optimizer"):
        _problem(hg.optim.sgd(lr=0.1), hypers=hg.Hypers({"lr": 0.2}))


def test_adamw_is_adam_with_decoupled_weight_decay():
    """torch 2.13's AdamW is Adam(decoupled_weight_decay=True) with weight decay 1e-2: ours agree bitwise."""
    a = _problem(hg.optim.adamw(lr=0.01))
    b = _problem(hg.optim.adam(lr=0.01, weight_decay=1e-2, decoupled_weight_decay=True))
    sa, _ = a.run(a.init_state(), a.init_hparams(), T)
    sb, _ = b.run(b.init_state(), b.init_hparams(), T)
    assert all(torch.equal(x, y) for x, y in zip(sa.params, sb.params))


# ---- gradient clipping inside Φ ------------------------------------------------------------------------
CLIPS = {"norm": (lambda: hg.optim.clip_by_norm(0.65), lambda ps: torch.nn.utils.clip_grad_norm_(ps, 0.65)),
         "value": (lambda: hg.optim.clip_by_value(0.05), lambda ps: torch.nn.utils.clip_grad_value_(ps, 0.05))}


@pytest.mark.parametrize("kind", sorted(CLIPS))
@pytest.mark.parametrize("name", ["sgd", "adam"])
def test_clipping_reproduces_torch_clip_grad(kind, name):
    ours, theirs = CLIPS[kind]
    model = mlp()
    kw = dict(lr=0.1, momentum=0.9, weight_decay=0.01) if name == "sgd" else dict(lr=0.01, weight_decay=0.01)
    pb = _problem(hg.optim.get(name, clip=ours(), **kw), model=model)
    state, _ = pb.run(pb.init_state(), pb.init_hparams(), 20)
    ref = _torch_run(model, lambda m: getattr(torch.optim, {"sgd": "SGD", "adam": "Adam"}[name])(m.parameters(), **kw),
                     20, clip=theirs)
    for n, w in zip(pb.names, state.params):
        torch.testing.assert_close(w, dict(ref.named_parameters())[n].detach(), atol=1e-12, rtol=0)


def _clip_active(pb, lam, clip, T):
    """Per step, (clipped, total) over the gradient entries (value) or whether the norm clip bound."""
    seen = []
    state = pb.init_state()
    for _ in range(T):
        _, g, _ = pb._train_grad(state, lam, state.t + 1, create_graph=False)
        if isinstance(clip, hg.optim.clip.ClipByValue):
            flat = torch.cat([x.reshape(-1) for x in g])
            seen.append(((flat.abs() > clip.clip_value).sum().item(), flat.numel()))
        else:
            seen.append(float(torch.sqrt(sum((x ** 2).sum() for x in g))) > clip.max_norm)
        state = pb.step(state, lam)
    return seen


@pytest.mark.parametrize("kind", sorted(CLIPS))
def test_hypergradients_through_clipping_match_finite_differences(kind):
    """RMD (every storage) and forward mode through a clip that binds on some entries / some steps
    match central differences; FMD's SGD closed form, which carries J_clip·(H·Z) (never H·J_clip·Z),
    stays on and agrees with the generic JVP of the whole step."""
    clip = CLIPS[kind][0]()
    pb = _problem(hg.optim.sgd(lr=Hyper(0.3, "tensor"), momentum=Hyper(0.5), weight_decay=Hyper(0.02), clip=clip))
    lam = pb.init_hparams()
    seen = _clip_active(pb, lam, clip, T)
    if kind == "value":
        assert all(0 < k < n for k, n in seen), seen          # some entries clipped, not all, at every step
    else:
        assert any(seen) and not all(seen), seen               # the norm bound binds on some steps only
    fd = fd_grad(val_after(pb), lam)
    for storage in ("graph", "recompute", "checkpoint"):
        assert_fd_close(hg.estimate("rmd", pb, lam, storage=storage).value, fd)
    fmd = hg.estimate("fmd", pb, lam)
    assert fmd.info["closed_form"] is True
    assert_fd_close(fmd.value, fd, rtol=FD_RTOL)
    generic = hg.estimate("fmd", pb, lam, closed_form=False).value
    for k in generic:
        torch.testing.assert_close(fmd.value[k], generic[k], rtol=1e-10, atol=1e-12)


def test_clip_arguments_are_checked():
    with pytest.raises(ValueError, match="max_norm must be a positive finite number"):
        hg.optim.clip_by_norm(0.0)
    with pytest.raises(ValueError, match="clip_value must be positive"):
        hg.optim.clip_by_value(-1.0)
    with pytest.raises(TypeError, match="clip takes"):
        hg.optim.sgd(clip=1.0)
