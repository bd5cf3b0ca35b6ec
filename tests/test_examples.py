"""The examples run and show what they claim."""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "examples"))


def test_maml_higher_example_ports_agree():
    """higher's MAML example through hypergradient.higher and through the native API: the same
    meta-gradients (float64), and the unchanged higher loop meta-trains."""
    import maml_higher
    out = maml_higher.main(["--iterations", "2", "--meta-batch", "2"])
    assert out["relative_difference"] < 1e-10
    assert len(out["accuracy"]) == 2
