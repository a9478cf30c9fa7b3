"""Real-time headroom of each model on this machine (run it on the module itself).

For every model (``export/*.onnx`` or the given paths) and device block size (64, 128, 256 at
48 kHz by default) it runs the daemon's own callback (:class:`AudioRunner.callback` over a
:class:`VoiceEngine`, synth mode, 16 kHz model upsampled to the device rate) block after block
and reports the callback time p50/p99/max in µs, p99 as a percentage of the block period, and
the real-time factor (mean processing time / block duration; < 1 is faster than real time),
also from the thread's CPU time alone (``rtf_cpu``: robust on a busy machine, where wall-clock
percentiles include preemption by other processes).
Also the bare model: one onnxruntime frame, p50 µs. Printed as a table, written as JSON (--out).
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import time
from pathlib import Path

import numpy as np

from pimodule.core.controls import CV_NAMES
from pimodule.device import floor
from pimodule.device.audio import AudioRunner
from pimodule.device.engine import VoiceEngine
from pimodule.device.fx.cost import bench_chain, bench_check, bench_estimator
from pimodule.device.models import load_session
from pimodule.device.session import ModelSession

log = logging.getLogger(__name__)

DEFAULT_BLOCK_SIZES = (64, 128, 256)
DEFAULT_RATE_HZ = 48000
DEFAULT_N_BLOCKS = 600
N_WARMUP_BLOCKS = 20
EXPORT_DIR = Path(__file__).resolve().parents[2] / "export"


EXAMPLES = (
    "pimodule bench",
    "pimodule bench export/violin.onnx --block-sizes 128 --n-blocks 3000 --out out/bench.json",
)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("models", nargs="*", type=Path, help="model files (default: export/*.onnx)")
    parser.add_argument(
        "--block-sizes",
        type=int,
        nargs="+",
        default=list(DEFAULT_BLOCK_SIZES),
        help="device blocks (frames per callback) to time",
    )
    parser.add_argument("--sample-rate", type=int, default=DEFAULT_RATE_HZ, help="device rate in Hz")
    parser.add_argument("--n-blocks", type=int, default=DEFAULT_N_BLOCKS, help="timed callbacks per case")
    parser.add_argument(
        "--modes",
        nargs="+",
        default=["synth"],
        choices=["synth", "transfer"],
        help="engine modes to time (transfer adds resampling + streaming f0/loudness of a sine)",
    )
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    parser.add_argument(
        "--floor",
        action="store_true",
        help="also time the callback without a model and onnxruntime's cost per run and node",
    )


def _percentiles(times_us: np.ndarray) -> dict:
    return {
        "p50_us": float(np.percentile(times_us, 50)),
        "p99_us": float(np.percentile(times_us, 99)),
        "max_us": float(times_us.max()),
        "mean_us": float(times_us.mean()),
    }


def bench_model(path: Path, block_size: int, rate_hz: int, n_blocks: int, mode: str = "synth") -> dict:
    """Time the daemon's callback on one model, block size and mode (moving CV; transfer mode
    analyses a 220 Hz sine at the input)."""

    engine = VoiceEngine(device_rate_hz=rate_hz, max_block=block_size)
    session = load_session(path, engine)
    engine.install(session)
    engine.set_mode(mode)
    engine.cv_values[CV_NAMES.index("cv2")] = 4.0
    runner = AudioRunner(engine, sample_rate_hz=rate_hz, realtime_priority=False)
    out = np.zeros((block_size, 2), np.float32)
    t = np.arange((N_WARMUP_BLOCKS + n_blocks) * block_size) / rate_hz
    tone = np.repeat((0.3 * np.sin(2 * np.pi * 220.0 * t)).astype(np.float32)[:, None], 2, axis=1)
    times_ns = np.zeros(n_blocks, np.int64)
    cpu_ns = 0
    for i in range(N_WARMUP_BLOCKS + n_blocks):
        engine.cv_values[0] = (i % 48) / 24.0 - 1.0  # move the pitch like a melody would
        c0 = time.thread_time_ns()
        t0 = time.perf_counter_ns()
        indata = tone[i * block_size : (i + 1) * block_size] if mode == "transfer" else None
        runner.callback(indata, out, block_size, None, None)
        if i >= N_WARMUP_BLOCKS:
            times_ns[i - N_WARMUP_BLOCKS] = time.perf_counter_ns() - t0
            cpu_ns += time.thread_time_ns() - c0
    times_us = times_ns / 1e3
    period_us = block_size / rate_hz * 1e6
    frame = np.zeros(session.info.block_size, np.float32)
    frame_us = np.zeros(200)
    for i in range(frame_us.shape[0]):
        t0 = time.perf_counter_ns()
        session.process_frame(220.0, -30.0, frame)
        frame_us[i] = (time.perf_counter_ns() - t0) / 1e3
    row = {
        "model": session.info.name,
        "path": str(path),
        "mode": mode,
        "block_size": block_size,
        "rate_hz": rate_hz,
        "n_blocks": n_blocks,
        "period_us": period_us,
        **_percentiles(times_us),
    }
    row["p99_percent_of_period"] = 100.0 * row["p99_us"] / period_us
    row["rtf"] = row["mean_us"] / period_us
    # CPU time of this thread only: what the callback costs when nothing else preempts it
    row["cpu_mean_us"] = cpu_ns / n_blocks / 1e3
    row["rtf_cpu"] = row["cpu_mean_us"] / period_us
    row["model_frame_p50_us"] = float(np.percentile(frame_us, 50))
    row["exceptions"] = runner.stats.n_exceptions
    return row


def format_table(rows: list[dict]) -> str:
    head = f"{'model':<16} {'mode':<8} {'block':>5} {'p50 us':>8} {'p99 us':>8} {'max us':>8} {'p99 %':>6} {'RTF':>6} {'RTF cpu':>7} {'frame us':>8}"
    extra = sorted({k for r in rows for k in r if k.endswith("_p99_ratio")})
    head += "".join(f" {k:>14}" for k in extra)
    lines = [head, "-" * len(head)]
    for r in rows:
        line = (
            f"{r['model'][:16]:<16} {r['mode']:<8} {r['block_size']:>5} {r['p50_us']:>8.0f} {r['p99_us']:>8.0f} "
            f"{r['max_us']:>8.0f} {r['p99_percent_of_period']:>6.1f} {r['rtf']:>6.3f} {r['rtf_cpu']:>7.3f} "
            f"{r['model_frame_p50_us']:>8.0f}"
        )
        line += "".join(f" {r.get(k, float('nan')):>14.2f}" for k in extra)
        lines.append(line)
    return "\n".join(lines)


def bench_fx(path: Path, block_sizes, rate_hz: int, n_blocks: int) -> list[dict]:
    """fx mode's two costs: the estimator per analysis window (off the audio thread) and the
    twin chain with every effect on, per device block (in the callback)."""

    est = bench_estimator(path)
    check = bench_check(path)  # a dry model's check (its own thread, every fx.check_interval_s)
    rows = []
    for block in block_sizes:
        chain = bench_chain(rate_hz, block, n_blocks)
        rows.append(
            {
                "model": path.stem,
                "block_size": block,
                "rate_hz": rate_hz,
                "estimator_ms_per_window": est["median_ms"],
                "estimator_max_ms": est["max_ms"],
                "window_s": est["window"] / est["sample_rate"],
                "check_ms_per_window": check["median_ms"] if check else float("nan"),
                "chain_p50_us": chain["p50_us"],
                "chain_p99_us": chain["p99_us"],
                "chain_p99_percent_of_period": 100 * chain["p99_share"],
            }
        )
    return rows


def format_fx_table(rows: list[dict]) -> str:
    head = (
        f"{'fx model':<16} {'block':>5} {'estimator ms/window':>20} {'check ms':>9} {'chain p50 us':>13} "
        f"{'chain p99 us':>13} {'p99 %':>6}"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        check = r.get("check_ms_per_window", float("nan"))
        check = f"{check:>9.0f}" if check == check else f"{'–':>9}"
        lines.append(
            f"{r['model'][:16]:<16} {r['block_size']:>5} {r['estimator_ms_per_window']:>20.2f} {check} "
            f"{r['chain_p50_us']:>13.0f} {r['chain_p99_us']:>13.0f} {r['chain_p99_percent_of_period']:>6.1f}"
        )
    return "\n".join(lines)


def main(args: argparse.Namespace) -> int:
    paths = list(args.models) or sorted(EXPORT_DIR.glob("*.onnx"))
    if not paths:
        log.error("no models: give paths or build export/*.onnx (make models)")
        return 2

    rows, fx_rows = [], []
    for path in paths:
        if ModelSession.peek_kind(path) == "fx":  # the effect estimator and the real-time chain
            fx_rows += bench_fx(Path(path), args.block_sizes, args.sample_rate, args.n_blocks)
            continue
        for mode, block in ((m, b) for m in args.modes for b in args.block_sizes):
            try:
                rows.append(bench_model(Path(path), block, args.sample_rate, args.n_blocks, mode))
            except (ValueError, OSError) as err:  # ModelFileError is a ValueError
                log.error("%s: %s", path, err)
                return 1
    print(format_table(rows))
    if fx_rows:
        print()
        print(format_fx_table(fx_rows))
    floor_rows = []
    if getattr(args, "floor", False):
        floor_rows = floor.measure(args.block_sizes, args.sample_rate, args.n_blocks)
        print()
        print(floor.format_table(floor_rows))
    if args.out is not None:
        result = {
            "machine": platform.machine(),
            "processor": platform.processor(),
            "python": platform.python_version(),
            "note": "callback = the daemon's AudioRunner.callback; RTF = mean / period",
            "rows": rows,
            "fx": fx_rows,
            "floor": floor_rows,
        }
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1))
        print(f"wrote {args.out}")
    return 0
