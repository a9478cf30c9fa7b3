"""The machine's own floor under ``pimodule bench``: how late a real-time thread that does nothing
wakes up, measured by ``cyclictest`` (rt-tests, the standard tool for this) on the audio core, at
the audio threads' priority and the period of the block size, idle and with the fx check running in
the control process.

The compiled callback cannot start before its thread wakes. If cyclictest's wake-ups on this
machine already pass 5 % of the period, or a whole period, the bench's figures above that floor are
the operating system's and the hypervisor's, not the engine's. cyclictest holds
``/dev/cpu_dma_latency`` at 0 while it runs, as the audio process does (device/rt/audio_main.py).
"""

from __future__ import annotations

import logging
import shutil
import subprocess
from pathlib import Path

import numpy as np

from pimodule.device import benchload

log = logging.getLogger(__name__)

PRIORITY = 80  # the private JACK server's (jackdummy: jackd -R -P 80)
HISTOGRAM_US = 100_000  # wake-ups later than this count in the overflow


def available() -> bool:
    return shutil.which("cyclictest") is not None


def parse_histogram(text: str) -> tuple[np.ndarray, np.ndarray, int, int]:
    """cyclictest's ``-h`` output as (latency µs, count) arrays, its overflow count and its max."""
    lat, cnt, overflow, max_us = [], [], 0, 0
    for line in text.splitlines():
        parts = line.split()
        if not parts:
            continue
        if parts[0].isdigit() and len(parts) >= 2:
            if int(parts[1]):
                lat.append(int(parts[0]))
                cnt.append(int(parts[1]))
        elif line.startswith("# Histogram Overflows:") and len(parts) >= 4:
            overflow = int(parts[3])
        elif line.startswith("# Max Latencies:") and len(parts) >= 4:
            max_us = int(parts[3])
    return np.asarray(lat, dtype=np.int64), np.asarray(cnt, dtype=np.int64), overflow, max_us


def summarise(lat: np.ndarray, cnt: np.ndarray, overflow: int, max_us: int, period_us: float) -> dict:
    n = int(cnt.sum()) + overflow
    if n == 0:
        return {"wakeups": 0}
    cum = np.cumsum(cnt)

    def pct(q: float) -> float:
        i = int(np.searchsorted(cum, q * n))
        return float(lat[i]) if i < lat.size else float(HISTOGRAM_US)

    late = int(cnt[lat > period_us].sum()) + overflow
    return {
        "wakeups": n,
        "p50_us": pct(0.50),
        "p99_us": pct(0.99),
        "max_us": float(max_us),
        "over_5_percent": int(cnt[lat > 0.05 * period_us].sum()) + overflow,
        "late": late,
    }


def measure(
    period_us: float,
    seconds: float,
    cpus: frozenset[int] | None,
    load: str = "idle",
    check_model: Path = benchload.EXPORT / "fx-dry.onnx",
) -> dict | None:
    """cyclictest for ``seconds`` at ``period_us`` on ``cpus`` (None: any CPU), with ``load``
    ("idle" or "check") in this process meanwhile; None when cyclictest is missing or fails."""
    if not available():
        return None
    cmd = [
        "cyclictest",
        "-m",  # mlockall, as the audio process
        "-q",
        "-t",
        "1",
        "-p",
        str(PRIORITY),
        "-i",
        str(int(round(period_us))),
        "-D",
        f"{max(1, int(round(seconds)))}s",
        "-h",
        str(HISTOGRAM_US),
    ]
    if cpus:
        cmd += ["-a", ",".join(str(c) for c in sorted(cpus))]
    if load not in ("idle", "check"):
        raise ValueError(f"the floor is measured idle or under the check, not {load!r}")
    loads = benchload.start(("check",), None, ("", ""), check_model) if load == "check" else []
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60)
    except subprocess.TimeoutExpired:
        done = None
    finally:
        counts = {ld.name: ld.stop() for ld in loads}
    if done is None or done.returncode != 0:
        log.warning("cyclictest failed: %s", done.stderr[-300:] if done is not None else "timed out")
        return None
    row = summarise(*parse_histogram(done.stdout), period_us)
    row.update(load=load, seconds=seconds, period_us=period_us, load_counts=counts, tool="cyclictest")
    return row


def floor_rows(block_sizes, rate_hz: int, seconds: float, soak_s: float, cpus: frozenset[int] | None) -> list[dict]:
    """The floor at every block size, idle and under the check; with a soak, the first block size
    under the check for as long as the soak."""
    rows = []
    for i, block in enumerate(block_sizes):
        period_us = block / rate_hz * 1e6
        cases = [("idle", seconds), ("check", seconds)] + ([("check", soak_s)] if soak_s > 0 and i == 0 else [])
        for load, secs in cases:
            row = measure(period_us, secs, cpus, load)
            if row is None:
                return rows
            row["block_size"] = block
            rows.append(row)
            log.info("floor, block %d, %s, %.0f s: p99 %.0f us, late %d", block, load, secs, row["p99_us"], row["late"])
    return rows


def format_floor(rows: list[dict]) -> str:
    head = f"{'floor (cyclictest)':<19} {'block':>5} {'load':<6} {'s':>5} {'p50 us':>7} {'p99 us':>7} {'max us':>7} {'>5%':>5} {'late':>5}"
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(
            f"{'':<19} {r['block_size']:>5} {r['load']:<6} {r['seconds']:>5.0f} {r['p50_us']:>7.0f} "
            f"{r['p99_us']:>7.0f} {r['max_us']:>7.0f} {r['over_5_percent']:>5} {r['late']:>5}"
        )
    return "\n".join(lines)
