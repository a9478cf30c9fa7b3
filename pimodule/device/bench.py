"""Real-time response of each voice on this machine: run it on the module itself.

Every case plays the real daemon (its OSC server, model loader, CV reader, the audio callback)
on a private JACK server (dummy backend: a real audio server's scheduling, no sound card) for a
few seconds, after a warm-up, and measures each block's **response**: the time from when the
block was due to the end of its callback, the figure a listener meets (it includes any wait to
be scheduled or for Python's GIL, which a callback's own duration does not). A block whose
response exceeds its period is late. Cases: every voice × block size × engine (the compiled
engine in its own audio process, and the earlier onnxruntime engine, as the ratio) × load (idle,
or the fx check, an OSC storm and a model swap every second all at once). Without jackd the
simulated clock paces the callback instead. Also the effect estimators: ms per analysis window
and the module check's ms. Printed as tables, written as JSON (--out).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import platform
import threading
import time
from pathlib import Path

import numpy as np

from pimodule.core.modelfile import ModelFileError
from pimodule.device import benchfloor, benchload, cpus
from pimodule.device import daemon as daemon_mod
from pimodule.device.benchtable import format_table, ratios
from pimodule.device.config import parse_config
from pimodule.device.fx.cost import bench_check, bench_estimator
from pimodule.device.jackdummy import JackUnavailable, dummy_jack_server, jack_device_index
from pimodule.device.modelcheck import check_file
from pimodule.device.session import ModelSession

log = logging.getLogger(__name__)

DEFAULT_BLOCK_SIZES = (64, 128, 256)
DEFAULT_RATE_HZ = 48000
EXPORT_DIR = Path(__file__).resolve().parents[2] / "export"
ENGINES = ("compiled", "onnxruntime")
WARMUP_S = 1.5
EXAMPLES = (
    "pimodule bench",
    "pimodule bench export/violin.onnx --block-sizes 128 --seconds 20 --out out/bench.json",
    "pimodule bench export/violin.onnx --block-sizes 128 --loads all --seconds 600 --engines compiled",
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
    parser.add_argument("--seconds", type=float, default=5.0, help="measured seconds per case (after a warm-up)")
    parser.add_argument(
        "--engines",
        nargs="+",
        choices=ENGINES,
        default=list(ENGINES),
        help="the compiled engine, the earlier onnxruntime engine, or both (ratios)",
    )
    parser.add_argument(
        "--loads", nargs="+", default=["idle", "all"], help="idle, all, or any of: " + ", ".join(benchload.LOADS)
    )
    parser.add_argument(
        "--modes",
        nargs="+",
        default=["synth"],
        choices=["synth", "transfer"],
        help="engine modes (transfer analyses a sine line at input L)",
    )
    parser.add_argument(
        "--realtime-server",
        action="store_true",
        help="run the JACK dummy server at real-time priority (as a sound card's server runs)",
    )
    parser.add_argument(
        "--cpus",
        default="auto",
        help='the audio core(s) as [audio] cpus sets them: "auto" (the last CPU; the bench itself and '
        'its loads on the others), "none", or "3" / "2,3"',
    )
    parser.add_argument(
        "--no-floor", action="store_true", help="skip the machine's own wake-up floor (cyclictest, benchfloor.py)"
    )
    parser.add_argument("--no-jack", action="store_true", help="the simulated clock instead of a JACK server")
    parser.add_argument(
        "--soak",
        type=float,
        default=0.0,
        help="also play the first voice at the first block size this many seconds under every load",
    )
    parser.add_argument("--out", type=Path, help="write the results as JSON here")


def _loads(name: str) -> tuple[str, ...]:
    if name == "idle":
        return ()
    if name == "all":
        return benchload.LOADS
    return tuple(name.split("+"))


def _partner(path: Path, voices: list[Path]) -> str:
    """The voice swapped with ``path`` under the swaps load (another voice, or itself)."""
    others = [v for v in voices if v != path and v.parent == path.parent]
    return others[0].stem if others else path.stem


def run_case(
    path: Path,
    partner: str,
    block: int,
    engine: str,
    load: str,
    mode: str,
    seconds: float,
    rate: int,
    jack_index: int | None,
    cpu_spec: str = "none",
) -> dict:
    cfg = parse_config(
        {
            "audio": {
                "device": jack_index if jack_index is not None else "",
                "block_size": block,
                "sample_rate_hz": rate,
                "cpus": cpu_spec,
            },
            "osc": {"port": 0},
            "flash": {"enabled": False},
            "fx": {"model": ""},
            "models": {"dir": str(path.parent.resolve()), "default": path.stem},
            "engine": {"backend": engine, "mode": mode, "loudness_source": "cv2"},
            "cv": {"backend": "simulated"},
        },
        "bench",
    )
    d = daemon_mod.build(cfg)
    thread = threading.Thread(
        target=daemon_mod.run, kwargs={"d": d, "offline": jack_index is None, "duration_s": None}, daemon=True
    )
    t_start = time.monotonic()
    thread.start()
    stats = d.runner.stats
    deadline = time.monotonic() + 300
    while stats.n_callbacks == 0 and time.monotonic() < deadline and thread.is_alive():
        time.sleep(0.005)
    first_sound_s = time.monotonic() - t_start
    time.sleep(WARMUP_S)
    loads = benchload.start(_loads(load), d, (partner, path.stem))
    n0, late0, xr0, lw0 = stats.n_callbacks, _late(stats), stats.n_xruns, _late_at_wake(stats)
    r_us, wake_us = _collect(stats, seconds)
    n1, late1, xr1, lw1 = stats.n_callbacks, _late(stats), stats.n_xruns, _late_at_wake(stats)
    counts = {ld.name: ld.stop() for ld in loads}
    d.stop_event.set()
    thread.join(30)
    d.close()
    period_us = block / rate * 1e6
    row = {
        "model": path.stem,
        "engine": engine,
        "mode": mode,
        "block_size": block,
        "load": load,
        "rate_hz": rate,
        "period_us": period_us,
        "blocks": n1 - n0,
        "late_blocks": late1 - late0,
        "xruns": xr1 - xr0,
        "load_counts": counts,
        "cold_start_s": first_sound_s,
        "backend": d.runner.backend,
    }
    if r_us.size:
        row.update(
            p50_us=float(np.percentile(r_us, 50)), p99_us=float(np.percentile(r_us, 99)), max_us=float(r_us.max())
        )
        row["p99_percent_of_period"] = 100.0 * row["p99_us"] / period_us
    if wake_us is not None and r_us.size:  # read with the responses, block for block
        # the response split: wake-up (deadline to the callback's start: the server and the
        # system) and work (the callback itself); late blocks already late at wake-up
        row["late_at_wake"] = lw1 - lw0
        row["wake_p99_us"] = float(np.percentile(wake_us, 99))
        row["work_p99_us"] = float(np.percentile(r_us - wake_us, 99))
    return row


def _late_at_wake(stats) -> int:
    return int(getattr(stats, "n_late_at_wake", 0))


def _collect(stats, seconds: float, every_s: float = 5.0) -> tuple[np.ndarray, np.ndarray | None]:
    """Every response (and the compiled engine's wake-ups) of the next ``seconds``, read from the
    rings every ``every_s`` (a ring holds the last 8192 blocks, 22 s at 128 frames: a soak's
    percentiles would otherwise cover only its end)."""
    parts, wakes = [], []
    seen, end = stats.n_callbacks, time.monotonic() + seconds
    while (left := end - time.monotonic()) > 0:
        time.sleep(min(every_s, left))
        now = stats.n_callbacks
        if hasattr(stats, "response_and_wake_us"):
            r, w = stats.response_and_wake_us(now - seen)
            wakes.append(w)
        else:
            r = _last_responses(stats, now - seen)
        parts.append(r)
        seen = now
    r_us = np.concatenate(parts) if parts else np.zeros(0)
    return r_us, (np.concatenate(wakes) if wakes else None)


def _late(stats) -> int:
    return int(getattr(stats, "n_late", 0))


def _last_responses(stats, k: int) -> np.ndarray:
    if hasattr(stats, "block"):  # the compiled engine's
        return stats.responses_us(last=k)
    r = stats.responses_ns  # the onnxruntime engine's ring, indexed by callback count
    n = stats.n_callbacks
    idx = np.arange(n - min(k, r.shape[0]), n) % r.shape[0]
    vals = r[idx]
    return vals[vals >= 0].astype(np.float64) / 1e3


def bench_fx(path: Path) -> dict:
    est = bench_estimator(path)
    check = bench_check(path)
    return {
        "model": path.stem,
        "estimator_ms_per_window": est["median_ms"],
        "estimator_max_ms": est["max_ms"],
        "window_s": est["window"] / est["sample_rate"],
        "check_ms_per_window": check["median_ms"] if check else None,
    }


def main(args: argparse.Namespace) -> int:
    paths = [Path(p) for p in (args.models or sorted(EXPORT_DIR.glob("*.onnx")))]
    if not paths:
        log.error("no models: give paths or build export/*.onnx (make models)")
        return 2
    kinds = {p: ModelSession.peek_kind(p) for p in paths}
    for p in paths:  # a file given that is not a model is refused, not skipped
        if kinds[p] not in ("ddsp", "fx"):
            try:
                log.error("%s: a %s model, neither a voice nor an estimator", p, check_file(p).info.kind)
            except ModelFileError as err:
                log.error("%s", err)
            return 2
    voices = [p for p in paths if kinds[p] == "ddsp"]
    for p in voices:  # a voice the module would refuse is refused here too, with its reason
        try:
            ModelSession(p).warm()
        except ValueError as err:  # ModelFileError
            log.error("%s: %s", p, err)
            return 1
    plan = cpus.plan_or_none(args.cpus)
    before = frozenset(os.sched_getaffinity(0))
    cpus.pin_process(plan.control)  # the bench and its loads are the control process
    try:
        return _run(args, paths, kinds, voices, plan)
    finally:
        if plan.control is not None:
            cpus.pin_process(before)


def _run(args, paths, kinds, voices, plan) -> int:
    rows, fx_rows, soak = [], [bench_fx(p) for p in paths if kinds[p] == "fx"], None
    log.info("CPUs: %s", plan.describe())
    for block in args.block_sizes:
        with contextlib.ExitStack() as stack:
            jack_index = None
            if not args.no_jack:
                try:
                    server = stack.enter_context(
                        dummy_jack_server(args.sample_rate, block, realtime=args.realtime_server, cpus=plan.audio)
                    )
                    jack_index = jack_device_index(server)
                except JackUnavailable as err:
                    log.warning("no JACK dummy server (%s): the simulated clock paces the callback", err)
            if args.soak > 0 and block == args.block_sizes[0]:
                soak = run_case(
                    voices[0],
                    _partner(voices[0], voices),
                    block,
                    "compiled",
                    "all",
                    "synth",
                    args.soak,
                    args.sample_rate,
                    jack_index,
                    args.cpus,
                )
                soak["seconds"] = args.soak
                log.info("soak: %d late blocks of %d", soak["late_blocks"], soak["blocks"])
            for path in voices:
                for mode in args.modes:
                    for load in args.loads:
                        for engine in args.engines:
                            row = run_case(
                                path,
                                _partner(path, voices),
                                block,
                                engine,
                                load,
                                mode,
                                args.seconds,
                                args.sample_rate,
                                jack_index,
                                args.cpus,
                            )
                            rows.append(row)
                            log.info(
                                "%s %s %s block %d %s: p99 %.0f us, late %d",
                                row["model"],
                                engine,
                                mode,
                                block,
                                load,
                                row.get("p99_us", float("nan")),
                                row["late_blocks"],
                            )
            if jack_index is not None:
                import sounddevice as sd

                sd._terminate()  # before the server goes
        if jack_index is not None:
            import sounddevice as sd

            sd._initialize()
    print(format_table(rows))
    floor = []
    if not args.no_floor:
        floor = benchfloor.floor_rows(args.block_sizes, args.sample_rate, args.seconds, args.soak, plan.audio)
        print(benchfloor.format_floor(floor) if floor else "no floor: cyclictest missing (apt install rt-tests)")
    rat = ratios(rows)
    for r in rat:
        print(
            f"{r['model']} {r['mode']} {r['block_size']} {r['load']}: onnxruntime / compiled p50 "
            f"{r['p50_ratio']:.1f}x, p99 {r['p99_ratio']:.1f}x; late {r['late_onnxruntime']} vs {r['late_compiled']}"
        )
    if soak is not None:
        print(
            f"soak {soak['seconds']:.0f} s, {soak['model']} at {soak['block_size']} under all loads: "
            f"{soak['late_blocks']} late of {soak['blocks']}, p99 {soak.get('p99_us', float('nan')):.0f} us"
        )
    for r in fx_rows:
        print(
            f"{r['model']}: estimator {r['estimator_ms_per_window']:.1f} ms per {r['window_s']:.2f} s window, "
            f"check {r['check_ms_per_window'] or float('nan'):.0f} ms"
        )
    if args.out is not None:
        result = {
            "machine": platform.machine(),
            "python": platform.python_version(),
            "seconds": args.seconds,
            "realtime_server": args.realtime_server,
            "cpus": plan.describe(),
            "rows": rows,
            "ratios": rat,
            "fx": fx_rows,
            "soak": soak,
            "floor": floor,
        }
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1))
        print(f"wrote {args.out}")
    return 0
