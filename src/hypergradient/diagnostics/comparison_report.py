"""How :func:`~hypergradient.diagnostics.comparison.compare` is read: why an estimator is not meant to
reach cosine 1 with exact reverse mode, the printable table and the bar plot (matplotlib, optional)."""

from __future__ import annotations

import textwrap
from typing import Any, Mapping, Sequence

from ..estimators.base import REGISTRY, Estimator, GeneratorState

__all__ = ["WHY_NOT_EXACT", "why_not_exact", "table", "plot"]

# estimator name -> why its hypergradient is not dL_val/dλ (kind first: stochastic, approximate, truncated)
WHY_NOT_EXACT: dict[str, str] = {
    "truncated_rmd": "truncated: reverse mode through the last K steps only (exact when K = T)",
    "one_step": "approximate: the last inner step only (greedy, one-step lookahead)",
    "sama": "approximate: one_step with the optimizer's preconditioning and a finite-difference mixed term",
    "drmad": "approximate: reverse mode along the straight line s_0 -> s_T (exact on linear trajectories)",
    "ift": "approximate: assumes w_T is a stationary point of the training loss (cg / neumann: an inexact solve too)",
    "first_order": "approximate: the direct term dL_val/dλ only (the indirect term is dropped)",
    "hyperdistill": "approximate and stochastic: one distilled VJP per step, theta fitted, random subsamples",
    "es": "stochastic: zeroth-order, antithetic random perturbations of λ (seeded)",
    "pes": "stochastic and truncated: persistent ES over truncations of K steps (seeded)",
    "evograd": "stochastic: first order through a random evolutionary virtual step (seeded)",
}


def why_not_exact(name: str, options: Mapping[str, Any] | None = None) -> str | None:
    """Why the estimator registered as ``name`` (built with ``options``) is not meant to reach cosine 1
    with exact RMD; None when it is exact (``exact = True`` and no option truncating it)."""
    cls: type[Estimator] | None = REGISTRY.get(name)
    options = options or {}
    if cls is not None and cls.exact:
        window = options.get("window")
        return f"truncated: window={window} (exact through the whole unroll only)" if window else None
    if name in WHY_NOT_EXACT:
        return WHY_NOT_EXACT[name]
    if cls is not None and issubclass(cls.state_class, GeneratorState):
        return "stochastic: random perturbations (estimator declares exact = False)"
    return "approximate (estimator declares exact = False)"


# ---- the table ---------------------------------------------------------------------------------------
def _num(x: float | None, fmt: str) -> str:
    return "-" if x is None else format(x, fmt)


def _bytes(n: int | None) -> str:
    if n is None:
        return "-"
    if abs(n) < 1024:
        return f"{n} B"
    x = n / 1024
    for unit in ("KiB", "MiB"):
        if abs(x) < 1024:
            return f"{x:.1f} {unit}"
        x /= 1024
    return f"{x:.1f} GiB"


COLUMNS = [("estimator", 20, "<"), ("exact", 6, ">"), ("cosine", 10, ">"), ("|g|/|g_ref|", 12, ">"),
           ("sign agr", 9, ">"), ("time s", 9, ">"), ("saved peak", 12, ">"), ("heap peak", 12, ">"),
           ("steps", 6, ">"), ("VJPs", 6, ">"), ("JVPs", 6, ">"), ("HVPs", 6, ">")]


def _cells(r: Mapping[str, Any]) -> list[str]:
    c = r.get("cost") or {}
    return [r["name"], "yes" if r["exact"] else "no", _num(r["cosine"], ".6f"), _num(r["norm_ratio"], ".4g"),
            _num(r["sign_agreement"], ".3f"), _num(r["seconds"], ".3f"), _bytes(r["saved_peak_bytes"]),
            _bytes(r["heap_peak_bytes"]), *(str(c.get(k, "-")) for k in ("steps", "vjps", "jvps", "hvps"))]


def table(rows: Sequence[Mapping[str, Any]], *, reference: str, T: int, seed: int, memory: str | None) -> str:
    """The rows as a text table; error rows show their reason wrapped under the name; a footer says
    which estimators are not meant to reach cosine 1 and why, and what the memory columns measure."""
    width = sum(w for _, w, _ in COLUMNS) + len(COLUMNS) - 1
    head = " ".join(f"{t:{a}{w}}" for t, w, a in COLUMNS)
    lines = [head, "-" * width]
    for r in rows:
        name = textwrap.wrap(r["name"], COLUMNS[0][1]) or [""]
        if r["error"] is not None:
            lines.append(f"{name[0]:<{COLUMNS[0][1]}} " + "failed".rjust(COLUMNS[1][1]))
            lines += ["    " + s for s in textwrap.wrap(r["error"], width - 4)]
            continue
        lines.append(" ".join(f"{v[:w] if i else name[0]:{a}{w}}" for i, (v, (_, w, a)) in enumerate(zip(_cells(r), COLUMNS))))
        lines += name[1:]
    notes = [(r["name"], r["why"]) for r in rows if r["error"] is None and r["why"]]
    lines += [""] + textwrap.wrap(f"reference: exact {reference}, T={T}; cosine and |g|/|g_ref| to it; sign agr = "
                                  "fraction of entries with the reference's sign (its zero entries ignored); "
                                  f"seed={seed} for every estimator.", width)
    if notes:
        lines.append("not meant to reach cosine 1 (exact = no):")
        for n, why in notes:
            lines += textwrap.wrap(f"{n}: {why}", width, initial_indent="  ", subsequent_indent="      ")
    meters = {"saved": "saved peak = most bytes autograd held in saved tensors at once (SavedTensorMeter)",
              "heap": "heap peak = peak glibc heap in use above the start (HeapMeter; '-' off glibc >= 2.33)"}
    on = [v for k, v in meters.items() if memory in (k, "both")]
    lines += textwrap.wrap("; ".join(on) + "; time includes the meters' overhead (memory=None for clean timings)."
                           if on else "memory not measured (memory=None).", width)
    return "\n".join(lines)


# ---- the plot ----------------------------------------------------------------------------------------
def plot(rows: Sequence[Mapping[str, Any]], path: str | None = None, *, reference: str = "rmd") -> Any:
    """Two bar panels per estimator, cosine to the reference and |g|/|g_ref| (log scale, 1 marked);
    failed rows are left out. Returns the matplotlib ``Figure``; saved to ``path`` when given."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise ImportError("plot() needs matplotlib: pip install matplotlib (it is in hypergradient's "
                          "[experiments] extra)") from None
    ok = [r for r in rows if r["error"] is None]
    names = [r["name"] for r in ok]
    colors = ["tab:blue" if r["exact"] else "tab:orange" for r in ok]
    fig = Figure(figsize=(10, 0.4 * len(ok) + 1.5), layout="constrained")
    ax1, ax2 = fig.subplots(1, 2, sharey=True)
    ax1.barh(names, [r["cosine"] or 0.0 for r in ok], color=colors)
    ax1.set_xlim(min([0.0] + [r["cosine"] or 0.0 for r in ok]), 1.05)
    ax1.axvline(1.0, color="k", lw=0.8)
    ax1.set_xlabel(f"cosine to {reference}")
    ax1.invert_yaxis()
    ratios = [r["norm_ratio"] or float("nan") for r in ok]
    ax2.barh(names, ratios, color=colors)
    if any(x > 0 for x in ratios):
        from matplotlib.ticker import NullFormatter
        ax2.set_xscale("log")
        ax2.xaxis.set_minor_formatter(NullFormatter())     # minor labels overlap on a short decade span
    ax2.axvline(1.0, color="k", lw=0.8)
    ax2.set_xlabel(f"|g| / |g_{reference}|")
    fig.suptitle("estimators against exact reverse mode (blue: exact, orange: not meant to match)")
    if path is not None:
        fig.savefig(path, dpi=120)
    return fig
