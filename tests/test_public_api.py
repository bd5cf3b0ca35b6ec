"""The public surface is small and pinned: adding or removing a public name is a deliberate change."""

import hypergradient as hg

PUBLIC = {"Cost", "Data", "Hypers", "Settings", "DivergenceError", "Estimator", "EstimatorState", "FunctionalModel", "run_offline", "run_online", "Hyper", "HyperSpec", "Hypergradient",
          "InnerProblem", "REGISTRY", "State", "compare", "estimate", "diagnostics", "drivers", "estimators", "learners", "linalg", "optim",
          "__version__"}
ESTIMATORS = {"rmd", "truncated_rmd", "online_rmd", "es", "pes", "sama", "fmd", "drmad", "ift", "one_step",
              "first_order", "hyperdistill", "evograd"}


def test_top_level_names():
    assert set(hg.__all__) == PUBLIC
    for name in PUBLIC:
        assert hasattr(hg, name), name


def test_registry_names():
    assert set(hg.REGISTRY) == ESTIMATORS


def test_submodule_all_resolves():
    for mod in (hg.estimators, hg.optim, hg.drivers, hg.diagnostics, hg.linalg, hg.learners):
        for name in mod.__all__:
            assert hasattr(mod, name), f"{mod.__name__}.{name}"
