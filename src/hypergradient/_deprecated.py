"""Module paths moved by the layered tree, kept for one minor version: a meta-path finder imports the
new module under the old dotted name, with the :func:`hypergradient.core.deprecation.warn` message.
(Renamed arguments and attributes live with their owners, through the same module.)"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
from collections.abc import Sequence
from importlib.machinery import ModuleSpec
from types import ModuleType

from .core.deprecation import warn

MOVED_MODULES = {
    "hypergradient.functional": "hypergradient.core.functional",
    "hypergradient.hparams": "hypergradient.core.hyper",
    "hypergradient.problem": "hypergradient.core.problem",
    "hypergradient.flat": "hypergradient.core.flat",
    "hypergradient.experiments": "hypergradient.learners",
    "hypergradient.experiments.metalearners": "hypergradient.learners",
    "hypergradient.experiments.tasks": "hypergradient.learners.tasks",
    "hypergradient.experiments.data": "hypergradient.learners.data",
    "hypergradient.experiments.reference": "hypergradient.testing",
    "hypergradient.experiments.sinusoid": "hypergradient.reproduce.sinusoid",
}


class _Loader(importlib.abc.Loader):
    def __init__(self, new: str) -> None:
        self.new = new

    def create_module(self, spec: ModuleSpec) -> ModuleType:
        warn(spec.name, self.new)
        return importlib.import_module(self.new)

    def exec_module(self, module: ModuleType) -> None:
        pass


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname: str, path: Sequence[str] | None = None,
                  target: ModuleType | None = None) -> ModuleSpec | None:
        new = MOVED_MODULES.get(fullname)
        return None if new is None else importlib.util.spec_from_loader(fullname, _Loader(new))


if not any(isinstance(f, _Finder) for f in sys.meta_path):
    sys.meta_path.insert(0, _Finder())
