"""The README's quickstart runs as written (it is the first code a newcomer copies)."""

import re
from pathlib import Path

import torch
import torch.nn.functional as F

README = Path(__file__).resolve().parents[1] / "README.md"


def test_quickstart_runs_and_uses_run_offline(capsys):
    code = re.search(r"## Quickstart\n\n```python\n(.*?)```", README.read_text(), re.S).group(1)
    assert "run_offline" in code
    scope: dict = {}
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float32)          # as a user runs it (conftest makes the suite's float64)
    try:
        exec(compile(code, str(README), "exec"), scope)
    finally:
        torch.set_default_dtype(old)
    res, lam, problem = scope["res"], scope["lam"], scope["problem"]
    assert len(res.history["val_loss"]) == 20 and res.cost.val_grads == 20
    assert res.history["val_loss"][-1] < res.history["val_loss"][0]
    assert all(p.grad is None for p in lam.values())
    # what it prints: the validation loss before and after (the quoted numbers), and the learned values
    before, after = re.search(r"validation loss (\S+) -> (\S+)", capsys.readouterr().out).groups()
    assert float(after) < 0.5 * float(before)
    assert f"`validation loss {before} -> {after}`" in README.read_text()
    X, y = scope["data"].val                         # the trained module is the network the last run trained
    with torch.no_grad():
        loss = F.cross_entropy(scope["trained"](X), y).item()
    assert abs(loss - float(after)) < 1e-3
