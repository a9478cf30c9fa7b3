"""One callback's work, compiled: inputs in, the voice (or the fx path), the guard, outputs out.

``process(ih, dh, fh, inp, n_in_ch, out, n_out_ch, n)`` reads and writes only the shared block's
heaps (``ih``, ``dh``, ``fh``, see :mod:`.shared`) and the interleaved float32 device buffers. It
never allocates, blocks or raises: a non-finite voice frame is silenced and counted (the control
process then replaces the voice by the last good one), the output is always finite and within the
guard's ceiling. Blocks of any length are cut into chunks of at most ``I_MAX_CHUNK`` samples.

Modes: 0 synth (CV1 1 V/oct and the gate's envelope or CV2), 1 transfer (input L analysed into
f0 and loudness, :mod:`.analysis`), 2 fx (input R, or L alone, through the matched chain,
:mod:`.fxchain`). Model frames are rendered whenever the device-rate ring holds fewer samples than
the chunk needs, so the output does not depend on the block size.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from pimodule.device.rt import dsp, f0_loudness, fxchain
from pimodule.device.rt import shared as L
from pimodule.device.rt.lowlevel import fence
from pimodule.device.voice import layout as VL
from pimodule.device.voice.kernel import voice_frame

OPTS = dsp.OPTS
SYNTH, TRANSFER, FX = 0, 1, 2
SILENCE_DB = -100.0
U2 = np.uint64(2)


@numba.njit(inline="always", **OPTS)
def fbuf(ih, fh, k):
    off = ih[L.I_BUF + 2 * k]
    return fh[off : off + ih[L.I_BUF + 2 * k + 1]]


@numba.njit(inline="always", **OPTS)
def dbuf(ih, dh, k):
    off = ih[L.I_BUF + 2 * k]
    return dh[off : off + ih[L.I_BUF + 2 * k + 1]]


@numba.njit(inline="always", **OPTS)
def ibuf(ih, k):
    off = ih[L.I_BUF + 2 * k]
    return ih[off : off + ih[L.I_BUF + 2 * k + 1]]


@numba.njit(**OPTS)
def slot_field(ih, s, field):
    return ih[L.I_SLOT + L.SLOT_STRIDE * s + field]


@numba.njit(**OPTS)
def control_frame(ih, dh, fh, mode):
    """(f0_hz, loudness_db) of the next model frame from the CVs, the gate or the analysis."""
    p = dbuf(ih, dh, L.D_PARAMS)
    st = dbuf(ih, dh, L.D_STATUS)
    cv = dbuf(ih, dh, L.D_CV)
    cv1 = cv[int(p[L.P_I_CV1])]
    if mode == SYNTH:
        f0 = p[L.P_HZ_AT_0V] * 2.0 ** min(max(cv1, -10.0), 10.0)
        lo, hi = p[L.P_LD_LO], p[L.P_LD_HI]
        if ih[L.I_LOUD_SRC] == 0:  # CV2
            u = (cv[int(p[L.P_I_CV2])] - p[L.P_CV2_LO]) / (p[L.P_CV2_HI] - p[L.P_CV2_LO])
            u = min(max(u, 0.0), 1.0) if math.isfinite(u) else 0.0
            ld = lo + (hi - lo) * u
        else:  # the gate's attack/release envelope
            gate = dbuf(ih, dh, L.D_GATE)[int(p[L.P_I_GATE])] > 0.5
            target = 1.0 if gate else 0.0
            coef = p[L.P_ATTACK] if gate else p[L.P_RELEASE]
            env = st[L.T_ENV] + coef * (target - st[L.T_ENV])
            st[L.T_ENV] = env
            floor = 10.0 ** ((lo - hi) / 20.0)
            ld = hi + 20.0 * math.log10(max(env, floor))
    else:
        f0, ld = f0_loudness.pop(ih, dh, fh)
        if ih[L.I_TRANSPOSE] != 0 and math.isfinite(cv1):
            f0 *= 2.0 ** min(max(round(cv1), -4.0), 4.0)
    if math.isfinite(f0):
        f0 = min(max(f0, p[L.P_F0_LO]), p[L.P_F0_HI])
    else:
        f0 = p[L.P_F0_LO]
    if not math.isfinite(ld):
        ld = SILENCE_DB
    return f0, ld


@numba.njit(**OPTS)
def run_slot(ih, dh, fh, s, f0, ld, frame):
    """One frame of the voice in slot ``s`` into ``frame``; False if it went non-finite."""
    kind = slot_field(ih, s, L.S_KIND)
    hop = frame.shape[0]
    if kind == L.KIND_COMPILED:
        w = fbuf(ih, fh, L.F_W0 + s)[: slot_field(ih, s, L.S_W_LEN)]
        lay = ibuf(ih, L.I_L0 + s)[: slot_field(ih, s, L.S_L_LEN)]
        state = dbuf(ih, dh, L.D_S0 + s)[: slot_field(ih, s, L.S_S_LEN)]
        scratch = fbuf(ih, fh, L.F_X0 + s)[: slot_field(ih, s, L.S_X_LEN)]
        controls = fbuf(ih, fh, L.F_C0 + s)
        voice_frame(w, lay, controls, f0, ld, state, scratch, frame)
        # the state that outlives the frame (the float64 workspace after it is rewritten by every
        # frame, and a NaN there reaches the frame's audio, which is checked)
        ok = dsp.all_finite(state, lay[VL.OFFSETS + 2 * VL.S_WRAP]) and dsp.all_finite(frame, hop)
        if not ok:
            init = dbuf(ih, dh, L.D_SI0 + s)
            for i in range(state.shape[0]):
                state[i] = init[i]
        return ok
    if kind == L.KIND_RING:  # played by onnxruntime in the control process, a few frames ahead
        req = dbuf(ih, dh, L.D_ORT_REQ)
        n_req = req.shape[0] // 2
        w = ih[L.I_ORT_REQ_WRITE]
        if w - ih[L.I_ORT_REQ_READ] < n_req:
            req[2 * (w % n_req)] = f0
            req[2 * (w % n_req) + 1] = ld
            fence()
            ih[L.I_ORT_REQ_WRITE] = w + 1
        r = ih[L.I_ORT_AUD_READ]
        if r < ih[L.I_ORT_AUD_WRITE]:
            fence()
            aud = fbuf(ih, fh, L.F_ORT_AUD)
            base = (r % (aud.shape[0] // hop)) * hop
            for i in range(hop):
                frame[i] = aud[base + i]
            ih[L.I_ORT_AUD_READ] = r + 1
        else:
            for i in range(hop):
                frame[i] = 0.0
            ih[L.I_N_UNDERRUNS] += 1
        return True
    for i in range(hop):
        frame[i] = 0.0
    return True


@numba.njit(**OPTS)
def take_pending_voice(ih, dh):
    """At a frame boundary: start playing a slot the control process has published."""
    gen = ih[L.I_GEN]
    if gen == ih[L.I_SEEN_GEN] or ih[L.I_FADING] >= 0:
        return
    fence()  # the slot's contents were written before the generation
    new = ih[L.I_PENDING]
    old = ih[L.I_ACTIVE]
    if new >= 0:
        n_state = slot_field(ih, new, L.S_S_LEN)
        state = dbuf(ih, dh, L.D_S0 + new)
        init = dbuf(ih, dh, L.D_SI0 + new)
        for i in range(n_state):
            state[i] = init[i]
    ih[L.I_ACTIVE] = new
    if old >= 0 and old != new and slot_field(ih, old, L.S_KIND) != L.KIND_EMPTY:
        ih[L.I_FADING] = old
        ih[L.I_FADE_POS] = 0
    ih[L.I_SEEN_GEN] = gen
    ih[L.I_N_SWAPS] += 1


@numba.njit(**OPTS)
def render_frame(ih, dh, fh, mode):
    """One model frame (both voices while a swap fades), upsampled into the output ring."""
    take_pending_voice(ih, dh)
    f0, ld = control_frame(ih, dh, fh, mode)
    frame = fbuf(ih, fh, L.F_FRAME)
    active = ih[L.I_ACTIVE]
    if active >= 0:
        if not run_slot(ih, dh, fh, active, f0, ld, frame):
            for i in range(frame.shape[0]):
                frame[i] = 0.0
            ih[L.I_N_VOICE_BAD] += 1
            ih[L.I_BAD_SLOT] = active
    else:
        for i in range(frame.shape[0]):
            frame[i] = 0.0
    fading = ih[L.I_FADING]
    if fading >= 0:
        old = fbuf(ih, fh, L.F_FRAME_OLD)
        if not run_slot(ih, dh, fh, fading, f0, ld, old):
            for i in range(old.shape[0]):
                old[i] = 0.0
        pos = dsp.crossfade(old, frame, frame.shape[0], fbuf(ih, fh, L.F_FADE), ih[L.I_FADE_POS])
        ih[L.I_FADE_POS] = pos
        if pos >= ih[L.I_CROSSFADE]:
            ih[L.I_FADING] = -1
    up = fbuf(ih, fh, L.F_UPOUT)
    st = ibuf(ih, L.I_ANA)  # [0:4] the upsampler's state
    taps, buf, ring = fbuf(ih, fh, L.F_UP_TAPS), fbuf(ih, fh, L.F_UP_BUF), fbuf(ih, fh, L.F_OUT_RING)
    if ih[L.I_UP_UP] == 3 and ih[L.I_UP_DOWN] == 1:  # 16 -> 48 kHz
        ih[L.I_OUT_WRITE] = dsp.upsample3(taps, ih[L.I_UP_TAPS], buf, frame, st[0:4], up, ring, ih[L.I_OUT_WRITE])
    else:
        k = dsp.polyphase(taps, ih[L.I_UP_UP], ih[L.I_UP_TAPS], buf, 0, frame, st[0:4], up)
        ih[L.I_OUT_WRITE] = dsp.ring_write(ring, ih[L.I_OUT_WRITE], up, k)
    ih[L.I_N_FRAMES] += 1
    status = dbuf(ih, dh, L.D_STATUS)
    status[L.T_F0] = f0
    status[L.T_LOUDNESS] = ld


@numba.njit(**OPTS)
def reset_mode_state(ih, dh, fh):
    """Entering a mode: empty rings, fresh resampler and analysis history."""
    ih[L.I_OUT_READ] = ih[L.I_OUT_WRITE]
    st = ibuf(ih, L.I_ANA)
    st[0], st[1], st[2], st[3] = ih[L.I_UP_TAPS] - 1, 0, 0, ih[L.I_UP_DOWN]
    fbuf(ih, fh, L.F_UP_BUF)[:] = 0.0
    f0_loudness.reset(ih, dh, fh)
    fxchain.reset(ih, dh, fh)


@numba.njit(**OPTS)
def _deinterleave(inp, n_ch, ch, start, n, ring, w):
    """Channel ``ch`` of the interleaved ``inp`` (frames start .. start + n) into ``ring`` at write
    count ``w`` (silence when the device has no such channel): the ring's two contiguous runs."""
    size = np.uint64(ring.shape[0])
    j = np.uint64(w) % size
    first = min(np.uint64(n), size - j)
    rest = np.uint64(n) - first
    if n_ch <= ch:
        ring[j : j + first] = 0.0
        ring[:rest] = 0.0
        return
    k = np.uint64(start * n_ch + ch)
    step = np.uint64(n_ch)
    for i in range(first):
        ring[j + i] = inp[k + i * step]
    k += first * step
    for i in range(rest):
        ring[i] = inp[k + i * step]


@numba.njit(**OPTS)
def _deinterleave_stereo(inp, start, n, ring_l, ring_r, w):
    """Both channels of a stereo ``inp`` into the two rings (the usual device): each of the rings'
    contiguous runs in one loop that LLVM vectorises with de-interleaving loads (``ld2``)."""
    size = np.uint64(ring_l.shape[0])
    j = np.uint64(w) % size
    first = min(np.uint64(n), size - j)
    k = U2 * np.uint64(start)
    _split2(inp, k, ring_l, ring_r, j, first)
    _split2(inp, k + U2 * first, ring_l, ring_r, np.uint64(0), np.uint64(n) - first)


@numba.njit(**OPTS)
def _split2(inp, k, ring_l, ring_r, j, n):
    for i in range(n):
        ring_l[j + i] = inp[k + U2 * i]
        ring_r[j + i] = inp[k + U2 * i + np.uint64(1)]


@numba.njit(**OPTS)
def _interleave(mono, n, out, start, n_ch):
    """``mono[:n]`` into every channel of the interleaved ``out`` from frame ``start``."""
    if n_ch == 2:
        k = np.uint64(2 * start)
        for i in range(n):
            v = mono[i]
            out[k] = v
            out[k + np.uint64(1)] = v
            k += np.uint64(2)
        return
    for i in range(n):
        v = mono[i]
        for c in range(n_ch):
            out[np.uint64((start + i) * n_ch + c)] = v


@numba.njit(**OPTS)
def chunk(ih, dh, fh, inp, n_in_ch, start, out, n_out_ch, n):
    """Samples ``start .. start + n`` of the callback (n ≤ I_MAX_CHUNK)."""
    mono = fbuf(ih, fh, L.F_MONO)[:n]
    in_l, in_r = fbuf(ih, fh, L.F_IN_L), fbuf(ih, fh, L.F_IN_R)
    w = ih[L.I_IN_WRITE]
    # the inputs' history (fx estimation reads it from the control process)
    if n_in_ch == 2 and ih[L.I_IN_CH_L] == 0 and ih[L.I_IN_CH_R] == 1 and in_l.shape[0] == in_r.shape[0]:
        _deinterleave_stereo(inp, start, n, in_l, in_r, w)
    else:
        _deinterleave(inp, n_in_ch, ih[L.I_IN_CH_L], start, n, in_l, w)
        _deinterleave(inp, n_in_ch, ih[L.I_IN_CH_R], start, n, in_r, w)
    fence()
    ih[L.I_IN_WRITE] = w + n
    mode = ih[L.I_MODE_NOW]
    if mode == FX:
        src = in_r if n_in_ch > ih[L.I_IN_CH_R] else in_l
        dsp.ring_read(src, w, mono, n)
        fxchain.process(ih, dh, fh, mono, n)
    else:
        if mode == TRANSFER:
            f0_loudness.feed(ih, dh, fh, in_l, w, n)
        ring = fbuf(ih, fh, L.F_OUT_RING)
        while ih[L.I_OUT_WRITE] - ih[L.I_OUT_READ] < n:
            render_frame(ih, dh, fh, mode)
        ih[L.I_OUT_READ] = dsp.ring_read(ring, ih[L.I_OUT_READ], mono, n)
    # a mode switch fades out, switches, fades in
    status = dbuf(ih, dh, L.D_STATUS)
    requested = ih[L.I_MODE_REQ]
    target = 0.0 if requested != mode else 1.0
    level = dsp.fade_linear(mono, n, status[L.T_FADER], target, 1.0 / ih[L.I_MODE_FADE])
    status[L.T_FADER] = level
    if level == 0.0 and requested != mode:
        ih[L.I_MODE_NOW] = requested
        reset_mode_state(ih, dh, fh)
    p = dbuf(ih, dh, L.D_PARAMS)
    target_gain = 0.0 if ih[L.I_MUTE] != 0 else p[L.P_GAIN]
    guard_params = dbuf(ih, dh, L.D_STATUS)[8:12]
    guard_params[0], guard_params[1], guard_params[2], guard_params[3] = (
        target_gain,
        p[L.P_GAIN_TAU],
        p[L.P_RELEASE_TAU],
        p[L.P_CEILING],
    )
    dsp.guard(mono, n, status[L.T_GAIN_NOW : L.T_LIM_NOW + 1], guard_params, ih[L.I_N_NONFINITE : L.I_N_LIMITED + 1])
    _interleave(mono, n, out, start, n_out_ch)
    if ih[L.I_RECORD] != 0:  # what was played, until the recording buffer is full
        rec = fbuf(ih, fh, L.F_REC)
        w = ih[L.I_REC_WRITE]
        k = min(n, ih[L.I_REC_LEN] - w)
        for i in range(k):
            rec[w + i] = mono[i]
        ih[L.I_REC_WRITE] = w + max(k, 0)
    ih[L.I_N_SAMPLES] += n


@numba.njit(**OPTS)
def process(ih, dh, fh, inp, n_in_ch, out, n_out_ch, n):
    """The whole callback's work for ``n`` frames (interleaved buffers)."""
    max_chunk = ih[L.I_MAX_CHUNK]
    pos = 0
    while pos < n:
        m = min(max_chunk, n - pos)
        chunk(ih, dh, fh, inp, n_in_ch, pos, out, n_out_ch, m)
        pos += m
