"""The compiled voice against onnxruntime, frame after frame with state carried (no torch).

:func:`compare` runs the same inputs through ``InferenceSession.run`` and through
:func:`pimodule.device.voice.kernel.voice_frame` and returns the largest absolute difference of the
audio and of every state tensor. :func:`sweep` is the standard drive: f0 sweeping 55 Hz to 2 kHz
and back (so harmonics cross Nyquist in mid-ramp), loudness sweeping -100 to +10 dB, and every
control at its minimum, maximum and default for a while. :func:`check_voice` is what a model
validator runs before trusting the kernel with a file: any difference beyond float32 rounding
raises :class:`UnsupportedVoice` (the file is then played through onnxruntime).
"""

from __future__ import annotations

import numpy as np

from pimodule.device.voice.kernel import voice_frame
from pimodule.device.voice.onnx_graph import UnsupportedVoice
from pimodule.device.voice.weights import VoiceWeights, read_voice

# what check_voice accepts; the shipped voices differ by < 1e-5 over tests/device/voice's sweep
AUDIO_TOLERANCE = 1e-4
STATE_TOLERANCE = {
    "gru_h": 1e-3,
    "phase": 1e-9,
    "prev_f0_hz": 1e-3,
    "prev_amplitudes": 1e-4,
    "noise_tail": 1e-4,
    "noise_position": 0.0,
    "reverb_history": 1e-4,
}


def sweep(
    n_frames: int, voice: VoiceWeights, f0_range_hz=(55.0, 2000.0), loudness_range_db=(-100.0, 10.0)
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(f0_hz, loudness_db, controls) float32 arrays for ``n_frames`` frames: an exponential f0
    sweep up and back down, a raised-cosine loudness sweep (3 cycles), and 12 equal segments of
    controls: all default; each control at its min then at its max (others default); all at min;
    all at max; all default."""
    t = np.arange(n_frames) / max(n_frames - 1, 1)
    lo, hi = f0_range_hz
    f0 = lo * (hi / lo) ** (1.0 - np.abs(1.0 - 2.0 * t))
    llo, lhi = loudness_range_db
    loudness = llo + (lhi - llo) * (0.5 - 0.5 * np.cos(2 * np.pi * 3 * t))
    specs = list(voice.info.controls)
    default = np.array([s.default for s in specs], np.float32)
    rows = [default]
    for i, spec in enumerate(specs):
        for value in (spec.min, spec.max):
            row = default.copy()
            row[i] = value
            rows.append(row)
    rows += [np.array([s.min for s in specs], np.float32), np.array([s.max for s in specs], np.float32), default]
    seg = np.minimum((np.arange(n_frames) * len(rows)) // max(n_frames, 1), len(rows) - 1)
    controls = np.stack([rows[s] for s in seg]).astype(np.float32)
    return f0.astype(np.float32), loudness.astype(np.float32), controls


def reference_session(path: str):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def compare(
    voice: VoiceWeights,
    f0_hz: np.ndarray,
    loudness_db: np.ndarray,
    controls: np.ndarray,
    session=None,
    state: dict | None = None,
) -> dict:
    """Largest |kernel - onnxruntime| per output over the frames (``"audio"`` and each state
    name), ``"audio_rms"`` (the reference's RMS) and ``"frames"`` (per-frame audio difference)."""

    sess = session or reference_session(voice.path)
    names = [o.name for o in sess.get_outputs()]
    ref_state = {k: v.copy() for k, v in (state or voice.info.initial_state()).items()}
    vec = voice.pack_state(ref_state)
    scratch = voice.new_scratch()
    out = np.zeros(voice.block_size, np.float32)
    worst = {n: 0.0 for n in ["audio"] + list(ref_state)}
    per_frame = np.zeros(len(f0_hz))
    sq = 0.0
    for i in range(len(f0_hz)):
        feeds = {
            "f0_hz": np.full((1, 1), f0_hz[i], np.float32),
            "loudness_db": np.full((1, 1), loudness_db[i], np.float32),
            "controls": controls[i].reshape(1, -1).astype(np.float32),
            **ref_state,
        }
        result = sess.run(None, feeds)
        ref_state = {n[: -len("_next")]: r for n, r in zip(names[1:], result[1:])}
        voice_frame(
            voice.weights,
            voice.layout,
            controls[i].astype(np.float32),
            float(f0_hz[i]),
            float(loudness_db[i]),
            vec,
            scratch,
            out,
        )
        diff = np.abs(out.astype(np.float64) - result[0].reshape(-1))
        per_frame[i] = diff.max()
        sq += float(np.sum(result[0].astype(np.float64) ** 2))
        worst["audio"] = max(worst["audio"], per_frame[i])
        for name, value in voice.state_dict(vec).items():
            d = np.abs(value.astype(np.float64) - ref_state[name].astype(np.float64)).max()
            worst[name] = max(worst[name], float(d))
    worst["audio_rms"] = float(np.sqrt(sq / max(1, len(f0_hz) * voice.block_size)))
    worst["frames"] = per_frame
    return worst


def check_voice(path: str, n_frames: int = 100) -> VoiceWeights:
    """Read ``path`` and run it against onnxruntime over a short :func:`sweep`; the weights if
    every output agrees to float32 rounding, else :class:`UnsupportedVoice`."""
    voice = read_voice(path)
    result = compare(voice, *sweep(n_frames, voice))
    bad = {k: result[k] for k in STATE_TOLERANCE if k in result and result[k] > STATE_TOLERANCE[k]}
    if not result["audio"] <= AUDIO_TOLERANCE:
        bad["audio"] = result["audio"]
    if bad:
        raise UnsupportedVoice(f"the compiled voice differs from onnxruntime: {bad}")
    return voice
