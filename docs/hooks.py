"""MkDocs hook: render the Sphinx roles some docstrings use (``:class:`~a.b.C```) as plain code.

mkdocstrings' Google-style parser leaves ``:mod:``, ``:class:``, ``:func:``, ``:meth:``, ``:data:``,
``:attr:`` and ``:exc:`` in the text; after Markdown they read ``:class:<code>~a.b.C</code>``. This hook
drops the role, and for a ``~`` target keeps the last dotted component, as Sphinx shows it.
"""

from __future__ import annotations

import re

_ROLE = re.compile(r":(?:py:)?(?:mod|class|func|meth|data|attr|exc|obj):(<code>)(~?)([^<]*)(</code>)")


def _strip(match: re.Match) -> str:
    target = match.group(3)
    if match.group(2):
        target = target.rsplit(".", 1)[-1]
    return f"{match.group(1)}{target}{match.group(4)}"


def on_page_content(html: str, **kwargs) -> str:
    return _ROLE.sub(_strip, html)
