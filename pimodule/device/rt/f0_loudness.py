"""Transfer mode's streaming f0 and loudness in the callback, compiled.

The same analysis as :class:`pimodule.core.streaming_features.StreamingFeatures` (YIN with
band-limited 2x oversampling of each window and parabolic refinement, A-weighted loudness; frame
for frame equal to it up to FFT rounding), fed with input L resampled to the model rate, and the
same look-ahead queue as the onnxruntime engine: frames wait ``lookahead`` frames so the voice
never runs ahead of the analysis; if it would, the last frame is held (counted). As the tracker
it is configured from (:func:`pimodule.device.analysis.device_features`), it analyses f0 only at
every ``f0_every``-th frame and loudness at every ``loudness_every``-th (the knots) and fills the
frames between with the same straight lines (:func:`pimodule.core.streaming_features.between`).

Everything lives in the block: ``I_ANA`` holds sizes, offsets and counters, ``D_ANA`` the
buffers and tables (their layout and one frame's analysis: :mod:`pimodule.device.rt.f0_frame`),
written once by :func:`configure` (control process, before audio runs).
"""

from __future__ import annotations

import math

import numba

from pimodule.core.features import DEFAULT_F0_HZ
from pimodule.core.streaming_features import StreamingFeatures
from pimodule.device.analysis import device_features
from pimodule.device.resample import StreamingResampler
from pimodule.device.rt import dsp, fft
from pimodule.device.rt import shared as L
from pimodule.device.rt.f0_frame import (
    A_BUFLEN,
    A_F0_EVERY,
    A_FILL,
    A_FRAME0,
    A_HAS_LAST,
    A_KNOT,
    A_LD_EVERY,
    A_LOOKAHEAD,
    A_LOUDOFF,
    A_MAXLAG,
    A_MINLAG,
    A_NDONE,
    A_NFFT,
    A_OFF,
    A_OS,
    A_PAD,
    A_QR,
    A_QW,
    A_RATE,
    A_REV,
    A_W,
    A_WIN,
    A_YINOFF,
    D_HEAD,
    D_KNOT_F0,
    D_KNOT_LD,
    D_LAST_F0,
    D_POP_F0,
    D_POP_LD,
    D_REF_DB,
    D_THRESHOLD,
    MAX_N,
    O_BUF,
    O_CMND,
    O_CORR,
    O_COS,
    O_DIFF,
    O_FR,
    O_HIM,
    O_HRE,
    O_KLD,
    O_LW,
    O_LWIN,
    O_QF,
    O_QL,
    O_SIM,
    O_SIN,
    O_SQ,
    O_SRE,
    O_UP,
    O_WIM,
    O_WRE,
    _ana,
    _dana,
    _loudness,
    _seg,
    _yin,
)
from pimodule.device.rt.shm import Shared

OPTS = dsp.OPTS
SILENCE_DB = -100.0
QUEUE = 64  # look-ahead queue capacity (frames)
MAX_EVERY = 16  # the longest knot spacing (frames)


def configure(block: Shared, features: StreamingFeatures | None = None, lookahead_frames: int | None = None) -> int:
    """Write the analysis's sizes, tables and zeroed state into the block; returns the look-ahead
    (frames) the queue holds. ``features`` gives the tracker settings (its defaults otherwise)."""
    ih = block.ih
    rate, hop = int(ih[L.I_MODEL_RATE]), int(ih[L.I_HOP])
    f = features or device_features(rate, hop)
    if not 1 <= f.f0_every <= MAX_EVERY:
        raise ValueError(f"f0_every {f.f0_every} is outside 1..{MAX_EVERY}")
    min_lag, max_lag = f._lags  # noqa: SLF001 - the one tracker definition, read not copied
    os_ = f._oversample  # noqa: SLF001
    w = f.yin_window_size
    if w * os_ > MAX_N or f.n_fft > MAX_N:
        raise ValueError(f"analysis windows of {w} x {os_} and {f.n_fft} exceed {MAX_N} points")
    dn_up, dn_down = int(ih[L.I_DN_UP]), int(ih[L.I_DN_DOWN])
    chunk = -(-int(ih[L.I_MAX_CHUNK]) * dn_up // dn_down) + 1
    if lookahead_frames is None:
        down_latency = StreamingResampler(int(ih[L.I_DEVICE_RATE]), rate).latency_out_samples
        lookahead_frames = -(-(f.latency_samples + down_latency) // hop) + 2
    a = block.buf("I_ANA")
    d = block.buf("D_ANA")
    a[:] = 0
    d[:] = 0.0
    n = w * os_
    sizes = {
        O_BUF: f._win + chunk + (f.f0_every - 1) * hop,  # noqa: SLF001
        O_FR: w,
        O_WRE: MAX_N // 2,
        O_WIM: MAX_N // 2,
        O_SRE: MAX_N // 2 + 1,  # noqa: SLF001
        O_SIM: MAX_N // 2 + 1,
        O_UP: n,
        O_HRE: MAX_N // 2 + 1,
        O_HIM: MAX_N // 2 + 1,
        O_CORR: n,
        O_SQ: n + 1,
        O_DIFF: max_lag + 1,
        O_CMND: max_lag + 1,
        O_LWIN: f.n_fft,
        O_LW: f.n_fft // 2 + 1,
        O_COS: fft.table_size(MAX_N),
        O_SIN: fft.table_size(MAX_N),
        O_QF: QUEUE,
        O_QL: QUEUE,
        O_KLD: MAX_EVERY + 1,
    }
    pos = D_HEAD
    for k in range(len(sizes)):
        a[A_OFF + k] = pos
        pos += sizes[k]
    if pos > d.shape[0]:
        raise ValueError(f"the analysis needs {pos} doubles, the block has {d.shape[0]}")
    cos, sin, perms = fft.tables(MAX_N)
    d[a[A_OFF + O_COS] : a[A_OFF + O_COS] + cos.shape[0]] = cos
    d[a[A_OFF + O_SIN] : a[A_OFF + O_SIN] + sin.shape[0]] = sin
    a[A_REV : A_REV + 1024] = perms[1024]
    a[A_REV + 1024 : A_REV + 1536] = perms[512]
    window, weight, ref_db = f._tables  # noqa: SLF001
    d[a[A_OFF + O_LWIN] : a[A_OFF + O_LWIN] + window.shape[0]] = window
    d[a[A_OFF + O_LW] : a[A_OFF + O_LW] + weight.shape[0]] = weight
    d[D_THRESHOLD], d[D_REF_DB] = f.threshold, ref_db
    a[A_OS], a[A_W], a[A_MINLAG], a[A_MAXLAG], a[A_NFFT] = os_, w, min_lag, max_lag, f.n_fft
    a[A_WIN], a[A_YINOFF], a[A_LOUDOFF], a[A_PAD] = f._win, f._yin_off, f._loud_off, f._pad  # noqa: SLF001
    a[A_LOOKAHEAD], a[A_BUFLEN], a[A_RATE] = lookahead_frames, sizes[O_BUF], rate
    a[A_F0_EVERY], a[A_LD_EVERY] = f.f0_every, f.loudness_every
    reset_python(block)
    return lookahead_frames


def reset_python(block: Shared) -> None:
    reset(block.ih, block.dh, block.fh)


@numba.njit(**OPTS)
def reset(ih, dh, fh):
    """Forget all input; the queue holds ``lookahead`` silent frames again."""
    a, d = _ana(ih), _dana(ih, dh)
    if a[A_W] == 0:
        return
    buf = _seg(a, d, O_BUF, a[A_BUFLEN])
    for i in range(buf.shape[0]):
        buf[i] = 0.0
    a[A_FILL] = a[A_PAD]
    a[A_NDONE] = 0
    a[A_FRAME0] = 0
    a[A_HAS_LAST] = 0
    a[A_KNOT] = -1
    a[4], a[5], a[6], a[7] = ih[L.I_DN_TAPS] - 1, 0, 0, ih[L.I_DN_DOWN]  # the downsampler
    dnbuf_off = ih[L.I_BUF + 2 * L.F_DN_BUF]
    for i in range(ih[L.I_BUF + 2 * L.F_DN_BUF + 1]):
        fh[dnbuf_off + i] = 0.0
    qf, ql = _seg(a, d, O_QF, QUEUE), _seg(a, d, O_QL, QUEUE)
    for i in range(a[A_LOOKAHEAD]):
        qf[i] = 0.0
        ql[i] = SILENCE_DB
    a[A_QR] = 0
    a[A_QW] = a[A_LOOKAHEAD]
    d[D_POP_F0], d[D_POP_LD] = 0.0, SILENCE_DB


@numba.njit(inline="always", **OPTS)
def _line(x, xa, ya, xb, yb):
    """The straight line through (xa, ya) and (xb, yb) at x, as ``streaming_features.between``."""
    return ya + (yb - ya) * ((x - xa) / (xb - xa))


@numba.njit(**OPTS)
def _knot(a, d, knot, hop):
    """Analyse the frames from the first not yet queued up to the f0 knot ``knot`` (whose window
    is in the buffer), and queue them: the knots' own values, straight lines between."""
    n0, base = a[A_NDONE], a[A_FRAME0]
    lev = a[A_LD_EVERY]
    kld = _seg(a, d, O_KLD, MAX_EVERY + 1)
    for j in range(n0, knot + 1):
        if j % lev == 0:
            kld[j - n0] = _loudness(a, d, (j - base) * hop)
    f0, voiced = _yin(a, d, (knot - base) * hop)
    if voiced:
        d[D_LAST_F0] = f0
        a[A_HAS_LAST] = 1
    else:
        f0 = d[D_LAST_F0] if a[A_HAS_LAST] != 0 else DEFAULT_F0_HZ
    prev = a[A_KNOT]
    if prev >= 0:  # the line's ends in log2, once per knot
        g_prev, g_knot = math.log2(d[D_KNOT_F0]), math.log2(f0)
    qf, ql = _seg(a, d, O_QF, QUEUE), _seg(a, d, O_QL, QUEUE)
    for j in range(n0, knot + 1):
        if j == knot or prev < 0:
            fj = f0
        else:
            fj = 2.0 ** _line(float(j), float(prev), g_prev, float(knot), g_knot)
        r = j % lev
        if r == 0:
            lj = kld[j - n0]
        else:
            jl = j - r
            yl = d[D_KNOT_LD] if jl < n0 else kld[jl - n0]
            lj = _line(float(j), float(jl), yl, float(jl + lev), kld[jl + lev - n0])
        if a[A_QW] - a[A_QR] < QUEUE:
            qf[a[A_QW] % QUEUE] = fj
            ql[a[A_QW] % QUEUE] = lj
            a[A_QW] += 1
    d[D_KNOT_F0], d[D_KNOT_LD] = f0, kld[knot - n0]
    a[A_KNOT] = knot
    a[A_NDONE] = knot + 1


@numba.njit(**OPTS)
def feed(ih, dh, fh, ring, write_count, n):
    """Input L (the device ring's ``n`` samples from ``write_count``) resampled to the model
    rate; every frame it completes goes into the look-ahead queue."""
    a = _ana(ih)
    if a[A_W] == 0:
        return
    size = ring.shape[0]
    pos = write_count % size
    first = min(n, size - pos)
    _feed_piece(ih, dh, fh, ring[pos : pos + first])
    if n > first:
        _feed_piece(ih, dh, fh, ring[0 : n - first])


@numba.njit(inline="always", **OPTS)
def _region(ih, fh, k):
    off = ih[L.I_BUF + 2 * k]
    return fh[off : off + ih[L.I_BUF + 2 * k + 1]]


@numba.njit(**OPTS)
def _feed_piece(ih, dh, fh, x):
    a, d = _ana(ih), _dana(ih, dh)
    out = _region(ih, fh, L.F_DNOUT)
    k = dsp.polyphase(
        _region(ih, fh, L.F_DN_TAPS), ih[L.I_DN_UP], ih[L.I_DN_TAPS], _region(ih, fh, L.F_DN_BUF), 0, x, a[4:8], out
    )
    buf = _seg(a, d, O_BUF, a[A_BUFLEN])
    hop, win, every = ih[L.I_HOP], a[A_WIN], a[A_F0_EVERY]
    for i in range(k):
        if a[A_FILL] >= buf.shape[0]:  # slide: keep from the next frame's window start
            drop = (a[A_NDONE] - a[A_FRAME0]) * hop
            keep = a[A_FILL] - drop
            for j in range(keep):
                buf[j] = buf[drop + j]
            a[A_FILL] = keep
            a[A_FRAME0] = a[A_NDONE]
        buf[a[A_FILL]] = out[i]
        a[A_FILL] += 1
        knot = (a[A_NDONE] + every - 1) // every * every  # the next f0 knot
        if a[A_FILL] >= (knot - a[A_FRAME0]) * hop + win:
            _knot(a, d, knot, hop)


@numba.njit(**OPTS)
def pop(ih, dh, fh):
    """The next frame's (f0_hz, loudness_db); the last one again when the queue is empty."""
    a, d = _ana(ih), _dana(ih, dh)
    if a[A_W] == 0 or a[A_QR] >= a[A_QW]:
        ih[L.I_N_ANA_UNDERRUNS] += 1
        return d[D_POP_F0], d[D_POP_LD]
    qf, ql = _seg(a, d, O_QF, QUEUE), _seg(a, d, O_QL, QUEUE)
    f0, ld = qf[a[A_QR] % QUEUE], ql[a[A_QR] % QUEUE]
    a[A_QR] += 1
    d[D_POP_F0], d[D_POP_LD] = f0, ld
    return f0, ld
