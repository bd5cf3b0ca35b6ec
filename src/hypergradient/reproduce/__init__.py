"""Layer 6, reproductions of the papers' experiments, one sub-package each (config, train, report, plots),
run by ``hypergradient reproduce NAME``. Imports any library layer (nothing in the library imports it)."""
