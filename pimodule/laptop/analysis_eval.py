"""Transfer mode's analysis on the module against analysing every frame, on real recordings.

The module tracks f0 only at every ``f0_every``-th frame and loudness at every
``loudness_every``-th (straight lines between; :data:`pimodule.device.analysis.DEVICE_EVERY`) so
that transfer mode fits a small CPU. This measures what that costs a listener: for each spacing,
on the real recordings of the effects benchmark (speech, drums, flute, bell, guitar, music; none
used in training), the difference from the every-frame tracker in cents (f0, on frames that
tracker calls voiced and louder than -50 dB) and in dB (loudness, frames louder than -50 dB), and
the look-ahead it adds. ``make transfer-eval`` writes ``docs/results/transfer_analysis.json``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import numpy as np

from pimodule.core.streaming_features import StreamingFeatures
from pimodule.device.analysis import DEVICE_EVERY
from pimodule.laptop.fx.realbench import RECORDINGS, BenchmarkError, load_recording

log = logging.getLogger(__name__)
RATE, HOP = 16000, 64
SPACINGS = ((1, 1), (2, 1), (2, 2), (4, 1), (4, 2), (4, 4), (8, 4))
LOUD_DB = -50.0


def track(x: np.ndarray, f0_every: int, loudness_every: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(f0_hz, periodicity, loudness_db) of ``x`` (16 kHz) with the given knot spacing."""
    tracker = StreamingFeatures(RATE, HOP, f0_every=f0_every, loudness_every=loudness_every)
    parts = [tracker.push(x), tracker.flush()]
    return tuple(np.concatenate([p[k] for p in parts]).astype(np.float64) for k in range(3))  # type: ignore[return-value]


def differences(
    x: np.ndarray, spacing: tuple[int, int], reference: tuple[np.ndarray, ...] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Absolute f0 differences (cents) and loudness differences (dB) from every-frame analysis
    (``reference``: that analysis of ``x``, when already at hand)."""
    f0, per, ld = reference if reference is not None else track(x, 1, 1)
    f0_s, _, ld_s = track(x, *spacing)
    loud = ld > LOUD_DB
    cents = np.abs(1200.0 * np.log2(f0_s / f0))[loud & (per > 0)]
    return cents, np.abs(ld_s - ld)[loud]


def _stats(v: np.ndarray) -> dict:
    if len(v) == 0:
        return {"n": 0}
    p50, p90, p99 = np.percentile(v, [50, 90, 99])
    return {"n": int(len(v)), "p50": float(p50), "p90": float(p90), "p99": float(p99), "mean": float(np.mean(v))}


def evaluate() -> dict:
    audio, missing = {}, []
    for rec in RECORDINGS:
        try:
            audio[rec.name] = load_recording(rec, RATE)
        except BenchmarkError as e:
            missing.append(str(e))
    if not audio:
        raise BenchmarkError("no benchmark recording is installed: " + "; ".join(missing))
    every_frame = {name: track(x, 1, 1) for name, x in audio.items()}
    rows = []
    for spacing in SPACINGS:
        per_rec = {name: differences(x, spacing, every_frame[name]) for name, x in audio.items()}
        cents = np.concatenate([c for c, _ in per_rec.values()])
        db = np.concatenate([d for _, d in per_rec.values()])
        rows.append(
            {
                "f0_every": spacing[0],
                "loudness_every": spacing[1],
                "shipped": spacing == tuple(DEVICE_EVERY),
                "added_latency_ms": 1000.0 * (spacing[0] - 1) * HOP / RATE,
                "f0_cents": _stats(cents),
                "loudness_db": _stats(db),
                "per_recording_p90": {k: [_stats(c).get("p90"), _stats(d).get("p90")] for k, (c, d) in per_rec.items()},
            }
        )
        log.info("f0 every %d, loudness every %d: done", *spacing)
    return {"recordings": sorted(audio), "missing": missing, "rate_hz": RATE, "hop": HOP, "rows": rows}


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    p = argparse.ArgumentParser(prog="python -m pimodule.laptop.analysis_eval", description=__doc__.splitlines()[0])
    p.add_argument("--json", type=Path, required=True, help="where to write the results")
    args = p.parse_args(argv)
    try:
        res = evaluate()
    except BenchmarkError as e:
        print(f"analysis_eval: {e}", file=sys.stderr)
        return 2
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(res, indent=1) + "\n")
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
