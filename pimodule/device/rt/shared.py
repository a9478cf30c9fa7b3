"""The shared-memory block of the real-time engine: where everything lives (its layout; the mapping
of it into a process is :class:`pimodule.device.rt.shm.Shared`).

Both processes map one block (``multiprocessing.shared_memory``). It holds three heaps: ``ih``
(int64), ``dh`` (float64) and ``fh`` (float32). ``ih`` starts with a fixed table: the slots named
below (sizes, counters, single-writer values) and, for every buffer, its offset and length in its
heap. The compiled code reads the table at run time (nothing about sizes is baked into the cached
machine code) and the names below are compile-time constants (numba reads module globals so).

Every slot has one writer: ``A`` marks what the audio process writes, ``C`` what the control
process writes. A value is published by writing it and then the slot that announces it (e.g. the
weights of a voice slot, then its generation), with a memory fence between (``lowlevel.fence``):
ARM cores may reorder stores otherwise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

MAGIC = 0x706D6F6475726531  # "pmodure1"
VERSION = 4
N_HEADER = 512  # int64 slots before the ih heap's buffers

# -- ih slots: sizes (C, at creation) ---------------------------------------------------------------
(
    I_MAGIC,
    I_VERSION,
    I_N_I,
    I_N_D,
    I_N_F,
    I_DEVICE_RATE,
    I_MAX_CHUNK,
    I_MODEL_RATE,
    I_HOP,
    I_UP_UP,
    I_UP_DOWN,
    I_UP_TAPS,
    I_DN_UP,
    I_DN_DOWN,
    I_DN_TAPS,
    I_OUT_RING,
    I_IN_RING,
    I_REC_LEN,
    I_N_RESP,
    I_MAX_W,
    I_MAX_L,
    I_MAX_S,
    I_MAX_X,
    I_N_OUT_CH,
    I_IN_CH_L,
    I_IN_CH_R,
    I_CROSSFADE,
    I_MODE_FADE,
    I_ORT_FRAMES,
    I_SIM_LEN,
    I_N_CTRL,
    I_FX_LEN,
) = range(32)
# -- counters and state the audio process writes (A) -------------------------------------------------
(
    I_N_CALLBACKS,
    I_N_XRUNS,
    I_N_LATE,
    I_N_SAMPLES,
    I_N_FRAMES,
    I_N_NONFINITE,
    I_N_LIMITED,
    I_N_SWAPS,
    I_RESP_WRITE,
    I_IN_WRITE,
    I_REC_WRITE,
    I_N_UNDERRUNS,
    I_RT_STATUS,
    I_MODE_NOW,
    I_ACTIVE,
    I_FADING,
    I_FADE_POS,
    I_SEEN_GEN,
    I_ANCHOR_NS,
    I_LAST_START_NS,
    I_N_VOICE_BAD,
    I_BAD_SLOT,
    I_OUT_READ,
    I_OUT_WRITE,
    I_ORT_REQ_WRITE,
    I_ORT_AUD_READ,
    I_MODE_FADE_POS,
    I_N_FADE_DIR,
    I_ALIVE,
    I_SIM_POS,
    I_FIRST_NS,
    I_PERIOD_NS,
    I_MAX_RESP_NS,
    I_SEEN_RESET,
    I_N_ANA_UNDERRUNS,
    I_ENV_STATE,
    I_WMIN_CUR,
    I_WMIN_PREV,
    I_WCOUNT,
    I_WARMUP,
    I_N_LATE_WAKE,
) = range(64, 105)
ANCHOR_WINDOW = 256  # callbacks per window of the schedule's anchor (about 0.7 s at 128 frames)
# -- values the control process writes (C) -----------------------------------------------------------
(
    I_GEN,
    I_PENDING,
    I_MODE_REQ,
    I_MUTE,
    I_LOUD_SRC,
    I_TRANSPOSE,
    I_MATCH,
    I_RECORD,
    I_STOP,
    I_ORT_REQ_READ,
    I_ORT_AUD_WRITE,
    I_RESET_REQ,
    I_SIM_LOOP,
    I_N_IN_CH,
    I_REALTIME,
) = range(128, 143)
I_TS = 150  # 2 slots: the audio thread's timespec scratch (A)
I_TS2 = 152  # 2 slots: the audio thread's sched_param scratch (A)
# -- per voice slot (2 slots; C writes them while the slot is neither active nor fading) ------------------
I_SLOT = 160  # + SLOT_STRIDE * slot + field
SLOT_STRIDE = 16
(S_KIND, S_W_LEN, S_L_LEN, S_S_LEN, S_X_LEN) = range(5)
KIND_EMPTY, KIND_COMPILED, KIND_RING = 0, 1, 2
# -- buffers: (offset, length) pairs at I_BUF + 2 * id -----------------------------------------------------
I_BUF = 256
BUFFERS = (
    # float32 heap
    ("F_UP_TAPS", "f"),  # upsampler polyphase branches (up, taps), reversed
    ("F_UP_BUF", "f"),  # upsampler input history
    ("F_DN_TAPS", "f"),
    ("F_DN_BUF", "f"),
    ("F_OUT_RING", "f"),  # device-rate voice samples waiting for the callback
    ("F_FRAME", "f"),  # the current model frame (hop)
    ("F_FRAME_OLD", "f"),  # the fading-out voice's frame
    ("F_UPOUT", "f"),  # one frame upsampled
    ("F_DNOUT", "f"),  # input downsampled (transfer)
    ("F_MONO", "f"),  # the callback's mono output chunk
    ("F_IN_L", "f"),  # input history L (fx estimation, analysis) ring
    ("F_IN_R", "f"),  # input history R ring
    ("F_REC", "f"),  # what was played (recording) ring
    ("F_W0", "f"),
    ("F_W1", "f"),  # voice weights per slot
    ("F_X0", "f"),
    ("F_X1", "f"),  # voice scratch per slot
    ("F_C0", "f"),
    ("F_C1", "f"),  # voice controls per slot (physical units)
    ("F_ORT_AUD", "f"),  # onnxruntime voice: frames of audio (control process -> callback)
    ("F_SIM_IN", "f"),  # simulated clock: input signal (interleaved L, R)
    ("F_FADE", "f"),  # crossfade curve (raised cosine)
    ("F_FX", "f"),  # the fx chain's buffers
    # float64 heap
    ("D_PARAMS", "d"),  # engine parameters (C)
    ("D_STATUS", "d"),  # last f0, loudness ... (A)
    ("D_CV", "d"),  # CV volts (C: the CV reader writes here)
    ("D_GATE", "d"),  # gate levels (C: the GPIO poller writes here)
    ("D_S0", "d"),
    ("D_S1", "d"),  # voice state per slot
    ("D_SI0", "d"),
    ("D_SI1", "d"),  # initial voice state per slot
    ("D_ORT_REQ", "d"),  # onnxruntime voice: control frames (f0, loudness) (callback -> control)
    ("D_ANA", "d"),  # transfer analysis
    ("D_FX", "d"),  # fx chain parameters and state
    # int64 heap
    ("I_L0", "i"),
    ("I_L1", "i"),  # voice layout per slot
    ("I_RESP", "i"),  # response times (ns from the deadline) ring
    ("I_WAKE", "i"),  # the same blocks' wake-up: ns from the deadline to the callback's start
    ("I_ANA", "i"),
    ("I_FX", "i"),  # the fx chain's counters, indices and FFT table (pimodule.device.rt.fxchain)
)
BUF = {name: i for i, (name, _) in enumerate(BUFFERS)}
globals().update(BUF)
N_BUFFERS = len(BUFFERS)

# -- D_PARAMS fields (C) ----------------------------------------------------------------------------------
(
    P_GAIN,
    P_HZ_AT_0V,
    P_F0_LO,
    P_F0_HI,
    P_LD_LO,
    P_LD_HI,
    P_CV2_LO,
    P_CV2_HI,
    P_ATTACK,
    P_RELEASE,
    P_GAIN_TAU,
    P_RELEASE_TAU,
    P_CEILING,
    P_I_CV1,
    P_I_CV2,
    P_I_GATE,
) = range(16)
N_PARAMS = 32
# -- D_STATUS fields (A) -----------------------------------------------------------------------------------
(T_F0, T_LOUDNESS, T_GAIN_NOW, T_LIM_NOW, T_ENV, T_LAST_RESP_NS, T_FADER) = range(7)
N_STATUS = 16
N_CTRL = 16  # controls per voice slot (the table may hold fewer)
RT_NOT_TRIED, RT_FIFO, RT_DENIED, RT_OFF = 0, 1, 2, 3
RT_NAMES = {RT_NOT_TRIED: "not tried", RT_FIFO: "fifo", RT_DENIED: "denied", RT_OFF: "off"}


@dataclass(frozen=True)
class Sizes:
    """Everything that fixes the block's size (chosen at creation, never changed while playing)."""

    device_rate_hz: int = 48000
    model_rate_hz: int = 16000
    hop: int = 64
    max_chunk: int = 4096  # samples the callback processes at once (longer blocks are split)
    n_output_channels: int = 2
    input_channel: int = 0  # input L; the other input (1 - input_channel) is R
    in_ring: int = 1 << 17  # input history per channel (fx estimation needs about 1 s)
    record_samples: int = 0
    n_responses: int = 8192
    max_weights: int = 1 << 21  # float32 weights per voice slot (8 MiB)
    max_layout: int = 256
    max_state: int = 1 << 17
    max_scratch: int = 1 << 16
    ort_frames: int = 32  # ring of frames for a voice played by onnxruntime
    sim_samples: int = 0  # simulated clock's input signal (interleaved L, R)
    crossfade_ms: float = 20.0
    mode_fade_ms: float = 5.0
    fx_floats: int = 1 << 19  # D_FX: the reverb and its 4 IR slots (498k doubles at 48 kHz; 96 kHz needs 1 << 20)
    analysis_doubles: int = 1 << 15


def rate_ratio(rate_in: int, rate_out: int) -> tuple[int, int]:
    g = math.gcd(rate_in, rate_out)
    return rate_out // g, rate_in // g


def plan(sizes: Sizes, up_taps: int, dn_taps: int) -> tuple[dict[str, tuple[int, int]], tuple[int, int, int]]:
    """Offsets and lengths of every buffer in its heap, and the heaps' lengths."""
    s = sizes
    up_up, up_down = rate_ratio(s.model_rate_hz, s.device_rate_hz)
    dn_up, dn_down = rate_ratio(s.device_rate_hz, s.model_rate_hz)
    frame_out = -(-s.hop * up_up // up_down) + 1
    dn_out = -(-s.max_chunk * dn_up // dn_down) + 1
    lengths = {
        "F_UP_TAPS": up_up * up_taps,
        "F_UP_BUF": up_taps + 2 * max(s.hop, up_taps),
        "F_DN_TAPS": dn_up * dn_taps,
        "F_DN_BUF": dn_taps + 2 * max(s.max_chunk, dn_taps),
        "F_OUT_RING": 1 << max(10, math.ceil(math.log2(s.max_chunk + 4 * frame_out))),
        "F_FRAME": s.hop,
        "F_FRAME_OLD": s.hop,
        "F_UPOUT": frame_out,
        "F_DNOUT": dn_out,
        "F_MONO": s.max_chunk,
        "F_IN_L": s.in_ring,
        "F_IN_R": s.in_ring,
        "F_REC": max(1, s.record_samples),
        "F_W0": s.max_weights,
        "F_W1": s.max_weights,
        "F_X0": s.max_scratch,
        "F_X1": s.max_scratch,
        "F_C0": N_CTRL,
        "F_C1": N_CTRL,
        "F_ORT_AUD": s.ort_frames * s.hop,
        "F_SIM_IN": max(2, 2 * s.sim_samples),
        "F_FADE": max(1, round(s.crossfade_ms * 1e-3 * s.model_rate_hz)),
        "F_FX": s.fx_floats,
        "D_PARAMS": N_PARAMS,
        "D_STATUS": N_STATUS,
        "D_CV": 8,
        "D_GATE": 4,
        "D_S0": s.max_state,
        "D_S1": s.max_state,
        "D_SI0": s.max_state,
        "D_SI1": s.max_state,
        "D_ORT_REQ": 2 * s.ort_frames,
        "D_ANA": s.analysis_doubles,
        "D_FX": s.fx_floats,
        "I_L0": s.max_layout,
        "I_L1": s.max_layout,
        "I_RESP": s.n_responses,
        "I_WAKE": s.n_responses,
        "I_ANA": 2048,
        "I_FX": 512,
    }
    offsets: dict[str, tuple[int, int]] = {}
    heads = {"f": 0, "d": 0, "i": N_HEADER}
    for name, heap in BUFFERS:
        n = int(lengths[name])
        start = heads[heap] + (-heads[heap]) % 16  # 64-byte aligned float32, 128-byte for 8-byte heaps
        offsets[name] = (start, n)
        heads[heap] = start + n
    return offsets, (heads["i"], heads["d"], heads["f"])
