"""Where everything lives in the compiled voice's three flat arrays (numpy only).

The kernel (:mod:`pimodule.device.voice.kernel`) takes one float32 ``weights`` array, one float64
``state`` vector and one float32 ``scratch`` array, all sized when the file is read, plus an int64
``layout`` vector that says where each piece starts and how big it is. The names below are the
indices into ``layout``; numba reads these module globals as compile-time constants, so the kernel
pays nothing for the indirection.

The state vector is the named state (gru_h, phase, ...) followed by a float64 workspace for the
harmonic synth (its recurrence and sums must be float64; the float32 scratch cannot hold them
without a dtype view, which in numba carries an exception path).

``layout`` holds:

- the dimensions (``D_*``): hidden size ``H`` and ``HP`` (``H`` rounded up to :data:`COL_ALIGN`, so
  every dot product runs over whole SIMD vectors; the padding weights are zero), harmonics, noise
  bands, FIR taps, hop, overlap-add segments, noise table lengths, reverb taps;
- two float64 constants bit for bit (``F64_*``: the graph's own ``phase_step`` and ``two_pi``);
- for each weight segment ``W_*``, each state entry ``S_*`` and each scratch buffer ``X_*`` its
  offset at ``OFFSETS + 2 * id`` and its size (elements) at ``OFFSETS + 2 * id + 1``.

Matrices are (out, in) with ``in`` padded to ``HP`` (or ``NBP`` for the noise bands) and ``out``
to a multiple of :data:`ROW_BLOCK` (zero padding), stored as panels of 4 rows with the columns
interleaved (:func:`panels`): the kernel computes 4 outputs per pass over one contiguous stream.
A decoder matrix a file holds as int8 (``pimodule quantize``) is stored instead as its rows of
bytes, row after row, four to a float32 element, followed by one float32 scale per row; the
kernel tells the two apart by the segment's size (``rows * cols`` against
``rows * cols / 4 + rows``).
"""

from __future__ import annotations

import numpy as np

COL_ALIGN = 8  # dot-product length multiple (two NEON float32 vectors)
ROW_BLOCK = 4  # rows computed together by the kernel's matrix-vector product

# -- dimensions --------------------------------------------------------------------------------
D_H, D_HP, D_K, D_NB, D_NBP, D_TAPS, D_HOP, D_NSEG, D_NOISE_A, D_NOISE_B, D_PERIOD, D_NREV, D_NOUT, D_NOUTP = range(14)
F64_PHASE_STEP, F64_TWO_PI = 14, 15  # float64 bit patterns stored as int64
OFFSETS = 16

# -- float32 constants read from the graph, at the start of segment W_CONST ----------------------
C_CTRL_SCALE = 0  # 4: controls * scale -> exp -> [pitch ratio, -, harmonic gain, noise gain]
C_IN_SCALE = 4  # 2: decoder input scaling (log f0, loudness)
C_IN_SHIFT = 6  # 2
C_F0_MIN, C_F0_MAX, C_LD_MIN, C_LD_MAX, C_NYQUIST = 8, 9, 10, 11, 12
C_SLOPE = 13  # 4 LeakyReLU slopes: input MLP layer 1, layer 2, out MLP layer 1, layer 2
C_EPS = 17  # 4 LayerNorm epsilons, same order
C_POW, C_SIG_SCALE, C_SIG_OFFSET, C_DIST_EPS = 21, 22, 23, 24
N_CONST = 25

# -- segment ids ---------------------------------------------------------------------------------
_WEIGHT_NAMES = (
    "CONST",
    "W1",
    "B1",
    "G1",
    "BE1",
    "W2",
    "B2",
    "G2",
    "BE2",
    "AB",
    "BAB",
    "HH",
    "BHN",
    "X",
    "LN1W",
    "LN1B",
    "LIN2",
    "LIN2B",
    "LN2W",
    "LN2B",
    "PROJ",
    "PROJB",
    "FIR",
    "RAMP",
    "NOISE_A",
    "NOISE_B",
    "REV",
)
_STATE_NAMES = (
    "GRU",
    "PHASE",
    "PREV_F0",
    "PREV_AMP",
    "TAIL",
    "POS",
    "REV",
    # float64 workspace after the state (overwritten every frame, not state):
    "WRAP",
    "C2",
    "S0",
    "S1",
    "ACC_A",
    "ACC_B",  # (HOP) per sample
    "PK",
    "DK",
)  # (K) per harmonic
_SCRATCH_NAMES = (
    "Y1",  # (2, HP) input MLPs' first layer, then [a, b] (the GRU's input)
    "Y2",  # (2, HP) input MLPs' second layer before its LayerNorm
    "GI",  # (4 HP) [r, z, n, out] from [a, b]
    "GH",  # (3 HP) [r, z, n] from h
    "H",  # (HP) h_prev, then h_next
    "O1",
    "O2",  # (HP) out MLP
    "P",  # (NOUTP) projection -> scaled sigmoid
    "MAGS",  # (NBP) noise band magnitudes * noise gain
    "G",  # (8 + TAPS + 8) the frame's FIR between zeros
    "Y",  # (NSEG * HOP) filtered noise of this frame, before the overlap-add
    "WHITE",  # (HOP)
    "AUDIO",  # (HOP) dry audio (the reverb's input)
    "REVX",  # (NREV - 1 + HOP) reverb history followed by this frame's dry audio
    "KN",  # (HOP) audible harmonics per sample (stored as float32 integers)
)

_names = {}
for _i, _n in enumerate(_WEIGHT_NAMES):
    _names["W_" + _n] = _i
for _i, _n in enumerate(_STATE_NAMES):
    _names["S_" + _n] = len(_WEIGHT_NAMES) + _i
for _i, _n in enumerate(_SCRATCH_NAMES):
    _names["X_" + _n] = len(_WEIGHT_NAMES) + len(_STATE_NAMES) + _i
globals().update(_names)
N_SEGMENTS = len(_names)
LAYOUT_SIZE = OFFSETS + 2 * N_SEGMENTS


def round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


class LayoutBuilder:
    """Assigns offsets segment by segment; ``layout`` is the finished int64 vector."""

    def __init__(self, dims: dict[str, int], phase_step: float, two_pi: float):
        self.layout = np.zeros(LAYOUT_SIZE, np.int64)
        for key, value in dims.items():
            self.layout[globals()["D_" + key]] = int(value)
        self.layout[F64_PHASE_STEP] = np.float64(phase_step).view(np.int64)
        self.layout[F64_TWO_PI] = np.float64(two_pi).view(np.int64)
        self._end = {"W": 0, "S": 0, "X": 0}

    def add(self, name: str, size: int) -> int:
        """Place segment ``name`` (e.g. ``"W_HH"``) of ``size`` elements after the previous one of
        its kind (scratch and workspace buffers 16-byte aligned for the SIMD loops)."""
        kind = name[0]
        seg = _names[name]
        start = self._end[kind]
        if kind == "X" or (kind == "S" and seg >= _names["S_WRAP"]):
            start = round_up(start, 4)
        self.layout[OFFSETS + 2 * seg] = start
        self.layout[OFFSETS + 2 * seg + 1] = size
        self._end[kind] = start + size
        return start

    def total(self, kind: str) -> int:
        return round_up(self._end[kind], 4)


def panels(m: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """An (out, in) matrix zero-padded to (rows, cols) and stored as panels of 4 rows, each
    column-interleaved: element [4 i + k, c] at 4 i cols + 4 c + k (what ``matvec`` reads)."""
    padded = np.zeros((rows, cols), np.float32)
    padded[: m.shape[0], : m.shape[1]] = m
    return padded.reshape(rows // ROW_BLOCK, ROW_BLOCK, cols).transpose(0, 2, 1).ravel()


def segment(layout: np.ndarray, name: str) -> tuple[int, int]:
    """(offset, size) of a named segment (``"W_HH"``, ``"S_GRU"``, ``"X_P"`` ...)."""
    seg = _names[name]
    return int(layout[OFFSETS + 2 * seg]), int(layout[OFFSETS + 2 * seg + 1])


def segment_names(kind: str) -> list[str]:
    return [n for n in _names if n.startswith(kind + "_")]
