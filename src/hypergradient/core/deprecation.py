"""Old public names, kept for one minor version with a ``DeprecationWarning`` that names the new one:
renamed keyword arguments (:func:`renamed_kwargs`), renamed module attributes
(:func:`renamed_attributes`), and the one message every deprecation uses (:func:`warn`). Moved module
paths are served by the package root's finder (``hypergradient._deprecated``), with the same message."""

from __future__ import annotations

import functools
from typing import Any, Callable, Mapping

from .warn import warn_user

__all__ = ["REMOVAL", "warn", "renamed_kwargs", "renamed_attributes"]

REMOVAL = "0.3"  # the version that drops the old names


def warn(old: str, new: str) -> None:
    """``DeprecationWarning: {old} is now {new}; the old name goes in 0.3``, attributed to the first
    frame outside hypergradient and the import machinery: the user's line, so that Python's default
    filter (which shows DeprecationWarnings of ``__main__``) shows it wherever the old name was used."""
    warn_user(f"{old} is now {new}; the old name goes in {REMOVAL}", DeprecationWarning)


def renamed_kwargs(**renames: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator: keyword ``old=`` of the function (``__init__`` for a class) is passed on as ``new=``
    with a warning; giving both is a ``TypeError``. ``@renamed_kwargs(N="maxiter", K="window")``."""
    def wrap(fn: Callable[..., Any]) -> Callable[..., Any]:
        owner = fn.__qualname__.removesuffix(".__init__")

        @functools.wraps(fn)
        def inner(*args: Any, **kwargs: Any) -> Any:
            for old, new in renames.items():
                if old in kwargs:
                    if new in kwargs:
                        raise TypeError(f"{owner}: give {new}= only ({old}= is its deprecated name)")
                    warn(f"{owner}({old}=...)", f"{owner}({new}=...)")
                    kwargs[new] = kwargs.pop(old)
            return fn(*args, **kwargs)
        return inner
    return wrap


def renamed_attributes(module: str, renamed: Mapping[str, tuple[str, Callable[[], object]]]) -> Callable[[str], Any]:
    """A module ``__getattr__`` serving ``old -> (new name, getter of the new value)`` with a warning."""
    def __getattr__(name: str) -> Any:
        if name in renamed:
            new, get = renamed[name]
            warn(f"{module}.{name}", new)
            return get()
        raise AttributeError(f"module {module!r} has no attribute {name!r}")
    return __getattr__
