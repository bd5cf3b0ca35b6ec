"""HyperDistill's sinusoid experiment (App. G: Table 4, Fig. 3, Table 3): ``hypergradient reproduce sinusoid``."""

from .run import *  # noqa: F401,F403
from .run import main

__all__ = ["main"]
