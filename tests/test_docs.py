"""The documentation site (docs/, mkdocs.yml): its code runs, its reference is complete, it builds.

1. Every ```python block of every page in docs/ runs; a page's blocks run in order in one namespace
   (later blocks use the names of earlier ones), from a scratch working directory. A block is
   skipped only when the line before its fence is ``<!-- no-run -->`` (kept for what cannot run
   here, such as a ``torchrun`` launch).
2. Every public name (``hypergradient.__all__`` and each subpackage's ``__all__``) has a ``:::``
   directive in docs/api/ that resolves to the same object (its own path, the path of its
   definition, or a module directive listing it in ``members:``).
3. ``mkdocs build --strict`` passes (skipped when mkdocs is not installed).
"""

from __future__ import annotations

import importlib
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PACKAGES = ["hypergradient", "hypergradient.optim", "hypergradient.estimators", "hypergradient.drivers",
            "hypergradient.learners", "hypergradient.diagnostics", "hypergradient.linalg", "hypergradient.higher"]
NO_RUN = "<!-- no-run -->"
FENCE = re.compile(r"^(?P<indent>[ \t]*)```(?P<info>[^\n`]*)$")


def code_blocks(text: str) -> list[tuple[int, str, bool]]:
    """(line number, code, skipped) for each ```python block of a Markdown page."""
    lines = text.splitlines()
    blocks, i = [], 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        indent, info = m.group("indent"), m.group("info").strip()
        start, body, i = i, [], i + 1
        while i < len(lines) and lines[i].strip() != "```":
            body.append(lines[i][len(indent):] if lines[i].startswith(indent) else lines[i])
            i += 1
        i += 1
        if info.split(" ")[0] in ("python", "py"):
            prev = next((lines[j].strip() for j in range(start - 1, -1, -1) if lines[j].strip()), "")
            blocks.append((start + 1, "\n".join(body) + "\n", prev == NO_RUN))
    return blocks


PAGES = sorted(p for p in DOCS.rglob("*.md") if any(True for _ in code_blocks(p.read_text())))


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(DOCS)) for p in PAGES])
def test_code_blocks_run(page: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import matplotlib
    matplotlib.use("Agg")
    monkeypatch.chdir(tmp_path)
    import torch
    dtype, seed_state = torch.get_default_dtype(), torch.random.get_rng_state()
    torch.set_default_dtype(torch.float32)          # as a user runs the page (conftest sets float64)
    namespace: dict = {"__name__": f"docs_{page.stem}"}
    try:
        for line, code, skipped in code_blocks(page.read_text()):
            if skipped:
                continue
            try:
                exec(compile(code, f"{page.relative_to(ROOT)}:{line}", "exec"), namespace)
            except Exception as e:
                raise AssertionError(f"{page.relative_to(ROOT)}, the block at line {line} failed: {e!r}") from e
    finally:
        torch.set_default_dtype(dtype)
        torch.random.set_rng_state(seed_state)
        import matplotlib.pyplot as plt
        plt.close("all")


def test_few_blocks_skipped() -> None:
    skipped = [(p.relative_to(DOCS), line) for p in PAGES for line, _, s in code_blocks(p.read_text()) if s]
    assert len(skipped) <= 3, skipped


def directives() -> list[tuple[str, list[str]]]:
    """(target, members listed in its options) for each ``:::`` directive in docs/api/."""
    out = []
    for page in sorted((DOCS / "api").rglob("*.md")):
        lines = page.read_text().splitlines()
        for i, line in enumerate(lines):
            m = re.match(r"^:::\s+(\S+)", line)
            if not m:
                continue
            members: list[str] = []
            for nxt in lines[i + 1:]:
                if not nxt.startswith(" ") or not nxt.strip():
                    break
                mm = re.match(r"^\s+members:\s*\[(.*)\]\s*$", nxt)
                if mm:
                    members += [s.strip().strip("'\"") for s in mm.group(1).split(",") if s.strip()]
                mm = re.match(r"^\s+-\s+(\w+)\s*$", nxt)
                if mm:
                    members.append(mm.group(1))
            out.append((m.group(1), members))
    return out


def resolve(path: str) -> object:
    """The object a dotted path names: by attribute access first (a package's exported function
    shadows its submodule of the same name, ``hypergradient.diagnostics.spread``), else through the
    longest importable module prefix (``hypergradient.diagnostics.spread.spread``, as mkdocstrings
    reads the path)."""
    parts = path.split(".")
    try:
        obj: object = importlib.import_module(parts[0])
        for p in parts[1:]:
            obj = getattr(obj, p)
        return obj
    except AttributeError:
        pass
    for k in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:k]))
        except ImportError:
            continue
        for p in parts[k:]:
            obj = getattr(obj, p)
        return obj
    raise ImportError(path)


def test_every_public_name_in_the_reference() -> None:
    documented = []
    for target, members in directives():
        obj = resolve(target)
        documented.append(obj)
        documented += [getattr(obj, m) for m in members]
    missing = []
    for pkg in PACKAGES:
        mod = importlib.import_module(pkg)
        for name in mod.__all__:
            obj = getattr(mod, name)
            if isinstance(obj, (str, int, float)):          # __version__: a directive of its own
                ok = any(t == f"{pkg}.{name}" for t, _ in directives())
            else:
                ok = any(obj is d for d in documented)
            if not ok:
                missing.append(f"{pkg}.{name}")
    assert not missing, f"public names without a ::: directive in docs/api/: {missing}"


def test_every_page_in_the_nav() -> None:
    nav = (ROOT / "mkdocs.yml").read_text()
    pages = [str(p.relative_to(DOCS)) for p in DOCS.rglob("*.md")]
    assert [p for p in pages if p not in nav] == []


def test_mkdocs_build_strict(tmp_path: Path) -> None:
    pytest.importorskip("mkdocs")
    pytest.importorskip("mkdocstrings")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    r = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-q", "-d", str(tmp_path / "site")],
                       cwd=ROOT, capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert (tmp_path / "site" / "index.html").exists()


def test_table_rows_stay_on_one_line() -> None:
    """A Markdown table row broken over two lines ends the table and shows its tail as a paragraph
    (seen in the rendered rmd page); every line that starts a row must end it."""
    bad = [f"{p.relative_to(ROOT)}:{i}" for p in DOCS.rglob("*.md")
           for i, line in enumerate(p.read_text().splitlines(), 1)
           if line.startswith("|") and not line.rstrip().endswith("|")]
    assert not bad, bad
