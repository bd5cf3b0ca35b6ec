"""What every reproduction shares: JSON that survives a crash (written to a temporary file, then
renamed) and holds no tensors or non-finite floats."""

from __future__ import annotations

import json
import math
import os
from typing import Any

import torch

__all__ = ["write_json", "clean"]


def write_json(path: str, obj: Any) -> None:
    """Write ``clean(obj)`` to ``path`` atomically (a reader never sees half a file)."""
    tmp = path + ".tmp"
    with open(tmp, "w") as fh:
        json.dump(clean(obj), fh, indent=1)
    os.replace(tmp, path)


def clean(x: Any) -> Any:
    """JSON-safe: tensors to lists, non-finite floats to strings ('inf', 'nan')."""
    if isinstance(x, dict):
        return {str(k): clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [clean(v) for v in x]
    if isinstance(x, torch.Tensor):
        return clean(x.tolist())
    if isinstance(x, float) and not math.isfinite(x):
        return str(x)
    return x
