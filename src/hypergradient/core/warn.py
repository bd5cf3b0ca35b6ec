"""Warnings attributed to the user's line: the first frame outside hypergradient and the import
machinery, so that they point at the call that caused them (and Python's default filters, which show
a DeprecationWarning only for ``__main__``'s lines, show them)."""

from __future__ import annotations

import os
import sys
import warnings
from types import FrameType

__all__ = ["warn_user"]

_PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # .../hypergradient


def warn_user(message: str, category: type[Warning] = UserWarning) -> None:
    """``warnings.warn(message, category)`` at the first frame outside the package."""
    level = 1
    frame: FrameType | None = sys._getframe(0)
    while frame is not None and frame.f_code.co_filename.startswith((_PACKAGE, "<frozen")):
        # warnings.warn skips the import machinery's frames by itself: count only ours
        level += not frame.f_code.co_filename.startswith("<frozen")
        frame = frame.f_back
    warnings.warn(message, category, stacklevel=level)
