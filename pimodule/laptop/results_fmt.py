"""Number and table formatting shared by the results page's renderers."""

from __future__ import annotations


def f(x, digits: int = 2) -> str:
    return "–" if x is None or x != x else f"{x:.{digits}f}"


def pct(x) -> str:
    return "–" if x is None or x != x else f"{100 * x:.0f} %"


def table(head: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def millions(x) -> str:
    """Instructions in millions."""
    return "–" if x is None else f"{x / 1e6:,.1f} M"
