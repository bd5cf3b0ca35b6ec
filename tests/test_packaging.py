"""Packaging conventions (issue 21): a license, a changelog naming the current version, project URLs and
classifiers in the metadata, the optional extras."""

from pathlib import Path

import pytest

import hypergradient as hg

ROOT = Path(__file__).resolve().parents[1]


def test_license_changelog_and_metadata():
    assert "MIT License" in (ROOT / "LICENSE").read_text()
    assert f"## {hg.__version__}" in (ROOT / "CHANGELOG.md").read_text()
    tomllib = pytest.importorskip("tomllib")          # Python 3.11+
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert {"Homepage", "Documentation", "Source", "Changelog"} <= set(project["urls"])
    assert "License :: OSI Approved :: MIT License" in project["classifiers"]
    assert {"experiments", "test", "docs", "bench", "baselines"} <= set(project["optional-dependencies"])
    assert project["dependencies"] and all(">=" in d for d in project["dependencies"])   # lower bounds only
