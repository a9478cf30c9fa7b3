"""Record what the compiled engine plays, deterministically in sample time (make pi-check).

``python firmware/emu/engine_record.py --model violin.onnx --mode synth|transfer|fx --seconds 3
--out out.npy [--input speech.wav]`` builds the shared block as the daemon does, publishes the
voice and runs the callback's work block by block on the simulated clock, as fast as it can
(exactly what ``python -m pimodule.device.rt.probe`` runs), and saves every output sample
(float32, interleaved channels) to ``--out``. Unlike the daemon, whose CV reaches the engine
through threads polling in wall time (so two runs of the daemon differ from the first note on),
everything here is a function of the sample position: the pitch CV steps every block as the probe
steps it, the input is a file (or the probe's signal), fx mode's chain gets one fixed estimate.
So the same command on x86_64 and on an emulated Pi must give the same samples to float32
rounding, and ``compare`` says by how much they differ.

``python firmware/emu/engine_record.py compare A.npy B.npy`` prints the differences as JSON.
Runs on the host (.venv) and inside the emulated Pi (the provisioned venv); imports no torch.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np

FX_ESTIMATE = {  # every stage of the chain on (as tests/device/rt/test_fxchain.py's ALL_ON)
    "eq": {"active": True, "params": {"low_shelf_gain_db": -4.0, "peak1_gain_db": 6.0, "high_shelf_gain_db": 5.0}},
    "compressor": {"active": True, "params": {"threshold_db": -30.0, "ratio": 6.0, "attack_ms": 3.0, "makeup_db": 6.0}},
    "distortion": {"active": True, "params": {"drive_db": 12.0, "output_gain_db": -6.0}, "mode": "soft"},
    "reverb": {"active": True, "params": {"decay_s": 0.8, "damping_pct": 40.0, "mix_pct": 30.0}},
    "gain": {"active": True, "params": {"gain_db": -3.0}},
}


def _read_input(path: str, seconds: float, rate: int, both: bool) -> np.ndarray:
    """A mono or stereo file as interleaved L, R at ``rate`` (looped to ``seconds``); a mono file
    goes to L, and to R as well when ``both`` (fx mode plays input R through the chain)."""
    import soundfile

    x, sr = soundfile.read(path, dtype="float32", always_2d=True)
    if sr != rate:
        raise SystemExit(f"{path}: {sr} Hz, the engine runs at {rate} Hz")
    stereo = np.zeros((x.shape[0], 2), np.float32)
    stereo[:, 0] = x[:, 0]
    if x.shape[1] > 1:
        stereo[:, 1] = x[:, 1]
    elif both:
        stereo[:, 1] = x[:, 0]
    n = int(round(seconds * rate))
    reps = -(-n // stereo.shape[0])
    return np.ascontiguousarray(np.tile(stereo, (reps, 1))[:n]).reshape(-1)


def record(
    model: str, mode: str, seconds: float, block: int, rate: int, input_path: str | None
) -> tuple[np.ndarray, dict]:
    from pimodule.device.config import EngineConfig
    from pimodule.device.rt import probe, setup, stream
    from pimodule.device.rt import shared as L
    from pimodule.device.rt.voices import Published, SlotWriter, compile_or_explain
    from pimodule.device.session import ModelSession

    cfg = EngineConfig(mode=mode, loudness_source="cv2")
    b = setup.create_block(L.Sizes(device_rate_hz=rate))
    try:
        setup.write_params(b, cfg)
        b.ih[L.I_MODE_NOW] = b.ih[L.I_MODE_REQ] = probe.MODES[mode]
        b.ih[L.I_MATCH] = 1 if mode == "fx" else 0
        session = ModelSession(model)
        weights, why = compile_or_explain(session)
        if weights is None:
            raise SystemExit(f"{model} is not compiled: {why}")
        SlotWriter(b).publish(Published(session, weights, why))
        writer = None
        if mode == "fx":
            from pimodule.device.fx.match import FxMatcher
            from pimodule.device.rt.fxparams import FxChainWriter

            matcher = FxMatcher(rate, 8192)
            writer = FxChainWriter(b)
            writer.attach(matcher)
            matcher.apply(FX_ESTIMATE)
        cv = b.buf("D_CV")
        cv[1] = 4.0
        n = int(round(seconds * rate))
        if input_path:
            sim = _read_input(input_path, seconds, rate, both=mode == "fx")
        else:
            sim = probe._input(max(seconds, 0.01), rate, mode)  # noqa: SLF001 - the probe's own signal
        inp, out = stream.clock_buffers(block, int(b.ih[L.I_N_OUT_CH]))
        n_ch = int(b.ih[L.I_N_OUT_CH])
        played = np.zeros(n * n_ch, np.float32)
        done = 0
        t0 = time.perf_counter()
        while done < n:
            cv[0] = ((done // block) % 48) / 24.0 - 1.0  # the probe's melody: a step every block
            m = min(block, n - done)
            b.ih[L.I_SIM_POS] = done
            stream.run_clock(b.ih, b.dh, b.fh, sim, inp, out, block, m, False)
            played[done * n_ch : (done + m) * n_ch] = out[: m * n_ch]
            done += m
            if writer is not None:
                writer.poll()  # the reverb's IR, once the callback has a free slot
        info = {
            "model": model,
            "mode": mode,
            "seconds": seconds,
            "block": block,
            "rate_hz": rate,
            "channels": n_ch,
            "input": input_path,
            "frames": int(b.ih[L.I_N_FRAMES]),
            "wall_s": round(time.perf_counter() - t0, 2),
        }
        return played, info
    finally:
        b.close()


def compare(a: np.ndarray, b: np.ndarray) -> dict:
    """Max and RMS difference, the reference's peak and RMS, and the SNR of ``b`` against ``a``."""
    n = min(a.shape[0], b.shape[0])
    a64, b64 = a[:n].astype(np.float64), b[:n].astype(np.float64)
    d = np.abs(a64 - b64)
    rms = float(np.sqrt(np.mean(a64**2))) if n else 0.0
    err = float(np.sqrt(np.mean(d**2))) if n else 0.0
    return {
        "samples": int(n),
        "same_length": a.shape[0] == b.shape[0],
        "max_abs_diff": float(d.max()) if n else 0.0,
        "rms_diff": err,
        "ref_peak": float(np.max(np.abs(a64))) if n else 0.0,
        "ref_rms": rms,
        "snr_db": float(20 * np.log10(rms / err)) if err > 0 and rms > 0 else None,
        "finite": bool(np.all(np.isfinite(a)) and np.all(np.isfinite(b))),
    }


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["compare"]:
        p = argparse.ArgumentParser(prog="engine_record.py compare")
        p.add_argument("a")
        p.add_argument("b")
        args = p.parse_args(argv[1:])
        print(json.dumps(compare(np.load(args.a), np.load(args.b))))
        return 0
    p = argparse.ArgumentParser(prog="engine_record.py", description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True)
    p.add_argument("--mode", choices=["synth", "transfer", "fx"], default="synth")
    p.add_argument("--seconds", type=float, default=3.0)
    p.add_argument("--block", type=int, default=128)
    p.add_argument("--rate", type=int, default=48000)
    p.add_argument(
        "--input", help="a wav file at --rate (mono: input L, and R in fx mode), looped; default: the probe's signal"
    )
    p.add_argument("--out", required=True, help="the output samples (.npy, float32, interleaved)")
    args = p.parse_args(argv)
    played, info = record(args.model, args.mode, args.seconds, args.block, args.rate, args.input)
    np.save(args.out, played)
    info.update(
        finite=bool(np.all(np.isfinite(played))),
        peak=float(np.max(np.abs(played))) if played.size else 0.0,
        rms=float(np.sqrt(np.mean(played.astype(np.float64) ** 2))) if played.size else 0.0,
        torch_imported="torch" in sys.modules,
    )
    print(json.dumps(info))
    return 0


if __name__ == "__main__":
    sys.exit(main())
