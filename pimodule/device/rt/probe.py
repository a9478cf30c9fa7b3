"""A fixed amount of audio through the compiled engine, for counting what it costs.

``python -m pimodule.device.rt.probe --model export/violin.onnx --mode synth --seconds 2`` builds
the shared block as the daemon does, publishes the voice, and runs the callback's work ``--block``
frames at a time on the simulated clock as fast as it can (no pacing, no device): everything the
audio process does per block, callback included. Run with ``--seconds 0`` and with ``--seconds N``
under an instruction counter (``make pi-bench``), the difference over N is the engine's executed
instructions per second of audio; ``--frames-only`` runs only the voice's frame function (per
model frame). The CV moves like a melody (synth), the input is a sine line (transfer) or noise
(fx, with the whole matched chain on: EQ, compressor, distortion, reverb), so every path does
real work.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np

from pimodule.device.audio import AudioRunner
from pimodule.device.config import EngineConfig
from pimodule.device.fx.twin_chain import ChainTwin
from pimodule.device.models import load_session
from pimodule.device.ort_engine import VoiceEngine
from pimodule.device.rt import setup, stream
from pimodule.device.rt import shared as L
from pimodule.device.rt.fxparams import FxChainWriter
from pimodule.device.rt.voices import Published, SlotWriter, compile_or_explain
from pimodule.device.session import ModelSession
from pimodule.device.voice.kernel import voice_frames

MODES = {"synth": 0, "transfer": 1, "fx": 2}
NOTE_BLOCKS = 16
INPUT_S = 4.0  # the input is made this long whatever --seconds is (≤ this), so that making it
# (numpy's sin and cumsum over every sample) is the same in every count and cancels out


def run_earlier(model: str, mode: str, seconds: float, block: int, rate: int) -> dict:
    """The earlier engine for comparison: the Python callback with the voice through onnxruntime
    in it (:class:`~pimodule.device.ort_engine.VoiceEngine`, ``--engine onnxruntime``), called
    block by block as PortAudio calls it, the CV stepping as in :func:`run`."""
    engine = VoiceEngine(device_rate_hz=rate, max_block=block, config=EngineConfig(mode=mode, loudness_source="cv2"))
    engine.install(load_session(model, engine))
    engine.set_mode(mode)
    engine.cv_values[1] = 4.0
    calls = [0]

    def melody() -> bool:  # called before every block
        engine.cv_values[0] = ((calls[0] // NOTE_BLOCKS) % 24) / 12.0 - 1.0
        calls[0] += 1
        return False

    runner = AudioRunner(engine, sample_rate_hz=rate, realtime_priority=False)
    x = _input(max(seconds, INPUT_S), rate, mode).reshape(-1, 2)
    t0 = time.perf_counter()
    if seconds > 0:
        runner.run_offline(seconds, block_size=block, realtime=False, input_signal=x, should_stop=melody)
    return {"model": model, "mode": mode, "seconds": seconds, "engine": "earlier", "wall_s": time.perf_counter() - t0}


def _input(seconds: float, rate: int, mode: str) -> np.ndarray:
    n = int(round(seconds * rate))
    t = np.arange(n) / rate
    if mode == "fx":
        x = 0.1 * np.random.default_rng(0).standard_normal((n, 2))
    else:
        f = 220.0 * 2 ** (np.floor(t / 0.25) % 12 / 12)
        x = np.zeros((n, 2))
        x[:, 0] = 0.3 * np.sin(2 * np.pi * np.cumsum(f) / rate)
    return np.ascontiguousarray(x, np.float32).reshape(-1)


def run(model: str, mode: str, seconds: float, block: int, rate: int, engine: str = "compiled") -> dict:
    cfg = EngineConfig(mode=mode, loudness_source="cv2")
    b = setup.create_block(L.Sizes(device_rate_hz=rate))
    try:
        setup.write_params(b, cfg)
        b.ih[L.I_MODE_NOW] = b.ih[L.I_MODE_REQ] = MODES[mode]
        b.ih[L.I_MATCH] = 1 if mode == "fx" else 0
        session = ModelSession(model)
        weights, why = compile_or_explain(session)
        writer = SlotWriter(b)
        writer.publish(Published(session, weights if engine == "compiled" else None, why))
        if mode == "fx":  # every stage of the matched chain on (reverb included), as after an estimate
            FxChainWriter(b).update(ChainTwin(rate), immediate=True)
        cv = b.buf("D_CV")
        cv[1] = 4.0
        sim = _input(max(seconds, INPUT_S), rate, mode)
        inp, out = stream.clock_buffers(block, 2)
        n = int(round(seconds * rate))
        done = 0
        t0 = time.perf_counter()
        while done < n:  # the pitch CV steps every NOTE_BLOCKS blocks (43 ms), as a melody would
            cv[0] = ((done // (NOTE_BLOCKS * block)) % 24) / 12.0 - 1.0
            m = min(NOTE_BLOCKS * block, n - done)
            b.ih[L.I_SIM_POS] = done
            # one call per note: the callback's work block by block inside, as PortAudio calls
            # it (Python's call into numba would otherwise be counted once per block)
            stream.run_clock(b.ih, b.dh, b.fh, sim, inp, out, block, m, False)
            done += m
        wall = time.perf_counter() - t0
        writer.stop()
        return {
            "model": model,
            "mode": mode,
            "seconds": seconds,
            "block": block,
            "rate_hz": rate,
            "compiled": weights is not None,
            "wall_s": wall,
            "frames": int(b.ih[L.I_N_FRAMES]),
            "finite": bool(np.all(np.isfinite(out))),
            "peak": float(np.max(np.abs(out))) if n else 0.0,
        }
    finally:
        b.close()


def frames_only(model: str, n_frames: int) -> dict:
    """The voice's frame function alone, ``n_frames`` times (instructions per model frame)."""
    session = ModelSession(model)
    w, why = compile_or_explain(session)
    if w is None:
        raise SystemExit(f"{model} is not compiled: {why}")
    state = w.initial_state()
    scratch = w.new_scratch()
    hop = session.info.block_size
    controls = session.controls.astype(np.float32)
    f0 = np.geomspace(55, 1760, max(n_frames, 1)).astype(np.float32).reshape(-1, 1)
    ld = np.full_like(f0, -20.0)
    out = np.zeros((max(n_frames, 1), hop), np.float32)
    t0 = time.perf_counter()
    if n_frames:
        voice_frames(
            w.weights,
            w.layout,
            np.ascontiguousarray(np.repeat(controls[None], n_frames, 0)),
            f0[:n_frames, 0].copy(),
            ld[:n_frames, 0].copy(),
            state,
            scratch,
            out[:n_frames],
        )
    return {"model": model, "frames": n_frames, "wall_s": time.perf_counter() - t0}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m pimodule.device.rt.probe", description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True, help="a DDSP .onnx file")
    p.add_argument("--mode", choices=list(MODES), default="synth", help="engine mode")
    p.add_argument("--seconds", type=float, default=1.0, help="seconds of audio (0: set-up only)")
    p.add_argument("--block", type=int, default=128, help="frames per callback")
    p.add_argument("--rate", type=int, default=48000, help="device rate in Hz")
    p.add_argument("--frames-only", type=int, default=None, help="run only the voice's frame function this often")
    p.add_argument(
        "--engine",
        choices=["compiled", "onnxruntime-ring", "earlier"],
        default="compiled",
        help="the compiled voice, the voice through onnxruntime beside the callback (a voice the compiler "
        "refuses), or the earlier engine (Python callback, onnxruntime in it)",
    )
    args = p.parse_args(argv)
    if args.frames_only is not None:
        result = frames_only(args.model, args.frames_only)
    elif args.engine == "earlier":
        result = run_earlier(args.model, args.mode, args.seconds, args.block, args.rate)
    else:
        ring = args.engine != "compiled"
        result = run(args.model, args.mode, args.seconds, args.block, args.rate, "ring" if ring else "compiled")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
