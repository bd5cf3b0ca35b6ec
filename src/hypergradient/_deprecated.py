"""Old public names, kept for one minor version (0.2) with a ``DeprecationWarning`` naming the new one.

Modules moved by the layered tree are found under their old dotted names by a meta-path finder that
imports the new module, warns, and registers it under the old name; renamed attributes of the
package are served by :func:`attribute`."""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import warnings

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
RENAMED = {"hypergradient": {"HyperParameters": ("hypergradient.core.hyper", "HyperSpec")}}


class _Loader(importlib.abc.Loader):
    def __init__(self, new: str):
        self.new = new

    def create_module(self, spec):
        warnings.warn(f"{spec.name} moved to {self.new}; the old path goes in 0.3", DeprecationWarning, stacklevel=2)
        return importlib.import_module(self.new)

    def exec_module(self, module):
        pass


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path=None, target=None):
        new = MOVED_MODULES.get(fullname)
        if new is None:
            return None
        return importlib.util.spec_from_loader(fullname, _Loader(new))


def attribute(module: str, name: str):
    """A renamed attribute of ``module`` (its new value, with a warning); AttributeError otherwise."""
    if name in RENAMED.get(module, {}):
        where, new = RENAMED[module][name]
        warnings.warn(f"{module}.{name} is now {new}; the old name goes in 0.3", DeprecationWarning, stacklevel=3)
        return getattr(importlib.import_module(where), new)
    raise AttributeError(f"module {module!r} has no attribute {name!r}")


if not any(isinstance(f, _Finder) for f in sys.meta_path):
    sys.meta_path.insert(0, _Finder())
