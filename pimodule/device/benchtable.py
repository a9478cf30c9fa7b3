"""``pimodule bench``'s table and its onnxruntime ÷ compiled ratios."""

from __future__ import annotations


def format_table(rows: list[dict]) -> str:
    head = (
        f"{'model':<14} {'engine':<11} {'mode':<8} {'block':>5} {'load':<5} {'p50 us':>8} {'p99 us':>8} "
        f"{'max us':>8} {'p99 %':>6} {'late':>5} {'blocks':>6} {'wake p99':>8} {'work p99':>8} {'late@wake':>9}"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(
            f"{r['model'][:14]:<14} {r['engine']:<11} {r['mode']:<8} {r['block_size']:>5} {r['load']:<5} "
            f"{r.get('p50_us', float('nan')):>8.0f} {r.get('p99_us', float('nan')):>8.0f} "
            f"{r.get('max_us', float('nan')):>8.0f} {r.get('p99_percent_of_period', float('nan')):>6.1f} "
            f"{r['late_blocks']:>5} {r['blocks']:>6} {r.get('wake_p99_us', float('nan')):>8.0f} "
            f"{r.get('work_p99_us', float('nan')):>8.0f} {r.get('late_at_wake', ''):>9}"
        )
    return "\n".join(lines)


def ratios(rows: list[dict]) -> list[dict]:
    """onnxruntime ÷ compiled for every case both engines ran (above 1: the compiled is better)."""
    by = {(r["model"], r["mode"], r["block_size"], r["load"], r["engine"]): r for r in rows}
    out = []
    for (m, mode, b, ld, eng), r in by.items():
        other = by.get((m, mode, b, ld, "onnxruntime"))
        if eng == "compiled" and other is not None and "p99_us" in r and "p99_us" in other:
            out.append(
                {
                    "model": m,
                    "mode": mode,
                    "block_size": b,
                    "load": ld,
                    "p50_ratio": other["p50_us"] / r["p50_us"],
                    "p99_ratio": other["p99_us"] / r["p99_us"],
                    "late_compiled": r["late_blocks"],
                    "late_onnxruntime": other["late_blocks"],
                }
            )
    return out
