"""What every outer optimizer's ``step(closure)`` does first (the ``torch.optim`` contract)."""

from __future__ import annotations

from typing import Any, Callable

import torch

__all__ = ["evaluate_closure"]


def evaluate_closure(closure: Callable[[], Any] | None) -> Any:
    """The loss ``closure()`` returns, evaluated with autograd enabled (None without a closure)."""
    if closure is None:
        return None
    with torch.enable_grad():
        return closure()
