"""fx mode's matched chain: the layout of its state in the shared block (``I_FX``, ``D_FX``), the
chain's structure, and the checks that make a garbled block harmless. Written by the control
process (:mod:`.fxparams`), read by the callback (:mod:`.fxchain`, :mod:`.fxreverb`); see
:mod:`.fxchain` for who writes what."""

from __future__ import annotations

import numba

from pimodule.device.rt import shared as L
from pimodule.device.rt.dsp import OPTS

# -- the chain's structure (fxparams checks it against pimodule.core.fx_specs) -----------------------------
EQ, COMP, DIST, REV, GAIN = range(5)
N_STAGES = 5
STAGE_NAMES = ("eq", "compressor", "distortion", "reverb", "gain")
PARAM_NAMES = (
    (
        "low_shelf_gain_db",
        "low_shelf_freq_hz",
        "peak1_gain_db",
        "peak1_freq_hz",
        "peak1_q",
        "peak2_gain_db",
        "peak2_freq_hz",
        "peak2_q",
        "peak3_gain_db",
        "peak3_freq_hz",
        "peak3_q",
        "high_shelf_gain_db",
        "high_shelf_freq_hz",
    ),
    ("threshold_db", "ratio", "attack_ms", "release_ms", "knee_db", "makeup_db"),
    ("drive_db", "output_gain_db"),
    ("decay_s", "damping_pct", "mix_pct"),
    ("gain_db",),
)
P_START = (0, 13, 19, 21, 24)
P_COUNT = (13, 6, 2, 3, 1)
N_P = 25
MODES = ("hard", "soft", "tanh")  # the distortion curves, by index
HARD, SOFT, TANH = 0, 1, 2
N_SLOTS = 4  # reverb IR slots: installed, incoming, and two for publications not yet taken
MAX_PARTITION = 256

# -- I_FX (int64) ---------------------------------------------------------------------------------------------
(
    X_GEN,
    X_SEEN,
    X_IR_GEN,
    X_IR_SLOT,
    X_IR_IMM,
    X_IR_SEEN,
    X_IR_CUR,
    X_IR_NEXT,
    X_N,
    X_P,
    X_READY,
    X_INIT,
    X_NEWEST,
    X_POS,
    X_MODE,
    X_FILLED,
    X_N_RESETS,
    X_MOVING,
) = range(18)  # X_MOVING: 5 flags
X_IR_BASE = 24  # (C) an immediate IR not yet taken when this one was published: installed first
X_REV = 32  # N entries: the bit reversal of the N-point complex FFT
X_LEN = X_REV + MAX_PARTITION

# -- D_FX (float64): constants (C) ------------------------------------------------------------------------------
K_RATE, K_MAX_FREQ = 0, 2  # 1 free
K_MIN, K_MAX, K_LOG, K_LO, K_HI, K_JUMP = 8, 33, 58, 83, 108, 133  # N_P each
# the targets' record (C, under X_GEN)
R_TARGET, R_UNIT, R_PHYS = 160, 185, 210  # N_P each
R_WT, R_W, R_PRESENT = 235, 240, 245  # N_STAGES each
R_MODE, R_IMM, R_SMOOTH = 250, 251, 252
R_END = 253
# the audio's state (A)
S_TARGET, S_UNIT, S_PHYS = 256, 281, 306
S_WT, S_W, S_PRESENT = 331, 336, 341
S_SMOOTH, S_IMM_SEEN = 346, 347
S_SOS = 348  # 5 sections x (b0, b1, b2, a1, a2)
S_ZI = 373  # 5 sections x 2
S_AT, S_RT, S_G = 384, 385, 387  # 386 free
S_RAMP = 388  # (value, target) of: makeup, drive, output gain, mix, gain
RP_MAKEUP, RP_DRIVE, RP_OUT, RP_MIX, RP_GAIN = range(5)
HEADER = 400


@numba.njit(**OPTS)
def layout(n_part, n_parts, chunk):
    """Offsets in ``D_FX`` of the buffers after the header, and the length they need:
    (work, dry, cos, sin, fade, window, wet, old, acc_re, acc_im, w_re, w_im, tmp, acc, fdl, slots, end).
    Spectra are interleaved (re, im) rows of ``n_part + 1`` bins: ``acc`` one row, ``fdl`` ``n_parts`` rows,
    slot ``s`` of the IR ``n_parts`` rows at ``slots + 2 s n_parts (n_part + 1)``."""
    m = n_part + 1
    o = HEADER
    work = o
    o += chunk
    dry = o
    o += chunk
    cos = o
    o += m + n_part  # the FFT's tables (fft.table_size(2 n_part))
    sin = o
    o += m + n_part
    fade = o
    o += n_part
    win = o
    o += 2 * n_part
    wet = o
    o += n_part
    old = o
    o += n_part
    acc_re = o
    o += m
    acc_im = o
    o += m
    w_re = o
    o += n_part
    w_im = o
    o += n_part
    tmp = o
    o += 2 * n_part
    acc = o
    o += 2 * m
    o += (-o) % 8
    fdl = o
    o += 2 * n_parts * m
    slots = o
    o += 2 * N_SLOTS * n_parts * m
    return work, dry, cos, sin, fade, win, wet, old, acc_re, acc_im, w_re, w_im, tmp, acc, fdl, slots, o


@numba.njit(inline="always", **OPTS)
def buffers(ih, dh):
    off = ih[L.I_BUF + 2 * L.D_FX]
    d = dh[off : off + ih[L.I_BUF + 2 * L.D_FX + 1]]
    off = ih[L.I_BUF + 2 * L.I_FX]
    x = ih[off : off + ih[L.I_BUF + 2 * L.I_FX + 1]]
    return d, x


@numba.njit(**OPTS)
def geometry_ok(ih, d, x):
    """The reverb's geometry as written by the control side fits the buffers (and the tables are sane)."""
    if x.shape[0] < X_LEN or d.shape[0] < HEADER or x[X_READY] != 1:
        return False
    n, p, chunk = x[X_N], x[X_P], ih[L.I_MAX_CHUNK]
    if n < 2 or n > MAX_PARTITION or (n & (n - 1)) != 0 or p < 1 or p > (1 << 20) or chunk < 1 or chunk > (1 << 24):
        return False
    return layout(n, p, chunk)[16] <= d.shape[0]


@numba.njit(**OPTS)
def rev_ok(x, n):
    rev = x[X_REV : X_REV + n]
    for i in range(n):
        if rev[i] < 0 or rev[i] >= n:
            return False
    return True
