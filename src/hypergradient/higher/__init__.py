"""A ``higher``-compatible layer: code written for ``higher`` runs unchanged after

    import hypergradient.higher as higher

``innerloop_ctx(model, opt)`` yields a patched copy of ``model`` (:mod:`.patch`) and a differentiable
copy of the live ``torch.optim`` optimizer ``opt`` (:mod:`.optim`), with higher's documented
semantics (ALGORITHMS.md §12): ``copy_initial_weights``, ``override``, ``track_higher_grads``,
``fmodel(x, params=[...])``, ``parameters(time=t)``, ``fast_params``. A thin adapter over the
library's optimizers (one implementation each), with higher's reported defects fixed: AdamW, NAdam and
RAdam work, RMSprop is torch's, Adam's √0 stays finite under double backward, tensors in param groups
are differentiated, nothing outlives a context, buffers can be written back on exit
(``write_back_buffers=True``), and a window can be cut keeping the optimizer state
(``fmodel.start_window()`` with ``diffopt.detach_()``).
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator

import torch
from torch import nn

from . import optim, patch, utils
from .optim import (DifferentiableOptimizer, apply_trainable_opt_params, create_diff_optim, get_diff_optim,
                    get_trainable_opt_params, register_optim)
from .patch import monkeypatch

__all__ = ["innerloop_ctx", "monkeypatch", "get_diff_optim", "create_diff_optim", "register_optim",
           "get_trainable_opt_params", "apply_trainable_opt_params", "DifferentiableOptimizer", "optim", "patch",
           "utils"]


@contextlib.contextmanager
def innerloop_ctx(model: nn.Module, opt: torch.optim.Optimizer, device: torch.device | str | None = None,
                  copy_initial_weights: bool = True, override: optim.Override | None = None,
                  track_higher_grads: bool = True, *, write_back_buffers: bool = False) -> Iterator[tuple[Any, Any]]:
    """``(fmodel, diffopt)`` for a differentiable inner loop over ``model`` trained by ``opt``.

    ``write_back_buffers`` (not in higher): on exit, copy the patched copy's buffers (BatchNorm's
    running statistics) into ``model``."""
    fmodel = monkeypatch(model, device, copy_initial_weights=copy_initial_weights,
                         track_higher_grads=track_higher_grads)
    diffopt = get_diff_optim(opt, model.parameters(), fmodel=fmodel, device=device, override=override,
                             track_higher_grads=track_higher_grads)
    try:
        yield fmodel, diffopt
    finally:
        if write_back_buffers:
            patch.buffer_sync(fmodel, model)
