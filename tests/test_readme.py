"""The README's quickstart runs as written (it is the first code a newcomer copies)."""

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_quickstart_runs_and_uses_run_offline(capsys):
    code = re.search(r"## Quickstart\n\n```python\n(.*?)```", README.read_text(), re.S).group(1)
    assert "run_offline" in code
    scope: dict = {}
    exec(compile(code, str(README), "exec"), scope)
    res, lam = scope["res"], scope["lam"]
    assert len(res.history["val_loss"]) == 20 and res.cost.val_grads == 20
    assert res.history["val_loss"][-1] < res.history["val_loss"][0]
    assert all(p.grad is None for p in lam.values())
