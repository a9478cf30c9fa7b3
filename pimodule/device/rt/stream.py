"""The callback as a C function PortAudio calls on its own thread, and the same callback on a
simulated clock.

:data:`pa_callback` is a ``numba.cfunc`` with PortAudio's callback signature. Its ``userData`` is
the address of the shared block: it maps the three heaps as arrays, times itself, runs
:func:`pimodule.device.rt.block.process` and records its response. It never touches a Python
object, so it never waits for the GIL, whatever the audio process's other threads (there are none
busy) or the control process do.

**Response time** (what a listener meets): each block is due at ``anchor + samples_before /
rate``; its response is the time from then to the end of its callback, and it is *late* when that
exceeds its own period. ``anchor`` is the earliest ``start - samples_before / rate`` over the last
one to two windows of :data:`~pimodule.device.rt.shared.ANCHOR_WINDOW` callbacks: the device's
schedule as its most punctual recent callbacks show it. A burst of callbacks at start-up (a
backend filling its buffers) is forgotten after two windows, and a device clock drifting against
the system clock moves the anchor with it. A block woken more than a period late is counted late
(and late at wake-up), and the schedule is read afresh from it: a device that restarts after an
xrun (ALSA, JACK's dummy driver) plays on a moved schedule, which the old anchor would charge to
every block for two windows. Each response is split into its wake-up (deadline to the callback's
start: the server and the system) and the callback's own work. Under the simulated clock a block
is due when the clock releases it.
"""

from __future__ import annotations

import numba
import numpy as np
from numba import types

from pimodule.device.rt import block as blk
from pimodule.device.rt import shared as L
from pimodule.device.rt.dsp import OPTS
from pimodule.device.rt.lowlevel import f32_ptr, f64_ptr, i64_ptr, now_ns, sleep_until_ns, try_fifo

PA_CONTINUE = 0
PA_OUTPUT_UNDERFLOW, PA_OUTPUT_OVERFLOW = 0x4, 0x8
PA_INPUT_UNDERFLOW, PA_INPUT_OVERFLOW = 0x1, 0x2
STATUS_FLAGS = PA_OUTPUT_UNDERFLOW | PA_INPUT_OVERFLOW | PA_INPUT_UNDERFLOW | PA_OUTPUT_OVERFLOW


@numba.njit(**OPTS)
def record_response(ih, t_release, t_start, t_end, n):
    """Store one block's response (ns from when it was due to the end of its work) and its
    wake-up (ns from when it was due to the start of its callback); count it late when the
    response exceeds the block's period, and apart, late already at wake-up (the server or the
    system started the callback too late for any work to save it). The first two anchor windows
    of a device stream are its warm-up (the schedule is not known yet): not recorded."""
    if ih[L.I_N_CALLBACKS] < ih[L.I_WARMUP]:
        return
    period = n * 1_000_000_000 // ih[L.I_DEVICE_RATE]
    resp = t_end - t_release
    wake = t_start - t_release
    ring, wring = blk.ibuf(ih, L.I_RESP), blk.ibuf(ih, L.I_WAKE)
    w = ih[L.I_RESP_WRITE]
    ring[w % ring.shape[0]] = resp
    wring[w % wring.shape[0]] = wake
    ih[L.I_RESP_WRITE] = w + 1
    if resp > period:
        ih[L.I_N_LATE] += 1
        if wake > period:
            ih[L.I_N_LATE_WAKE] += 1
    if resp > ih[L.I_MAX_RESP_NS]:
        ih[L.I_MAX_RESP_NS] = resp


@numba.njit(**OPTS)
def due_ns(ih, t_start):
    """When the block starting now was due on the device's schedule (see the module's text);
    updates the anchor's windows. Called once per callback, before :func:`after_block`."""
    due_offset = ih[L.I_N_SAMPLES] * 1_000_000_000 // ih[L.I_DEVICE_RATE]
    start_offset = t_start - due_offset
    if ih[L.I_N_CALLBACKS] == 0:
        ih[L.I_WARMUP] = ih[L.I_N_CALLBACKS] + 2 * L.ANCHOR_WINDOW
        ih[L.I_WMIN_CUR] = ih[L.I_WMIN_PREV] = start_offset
        ih[L.I_WCOUNT] = 0
        ih[L.I_FIRST_NS] = t_start
    elif ih[L.I_WCOUNT] >= L.ANCHOR_WINDOW:  # a new window: the older one is forgotten
        ih[L.I_WMIN_PREV] = ih[L.I_WMIN_CUR]
        ih[L.I_WMIN_CUR] = start_offset
        ih[L.I_WCOUNT] = 0
    ih[L.I_WMIN_CUR] = min(ih[L.I_WMIN_CUR], start_offset)
    ih[L.I_WCOUNT] += 1
    ih[L.I_ANCHOR_NS] = min(ih[L.I_WMIN_CUR], ih[L.I_WMIN_PREV])
    return ih[L.I_ANCHOR_NS] + due_offset


@numba.njit(**OPTS)
def after_block(ih, due, t_start, t_end, n):
    """Record the block's response; a block woken more than a period late re-reads the schedule
    from its own start (a device's schedule may have moved: it restarts after an xrun; if it did
    not move, the next punctual callback brings the anchor back at once, as it is a minimum)."""
    record_response(ih, due, t_start, t_end, n)
    if t_start - due > n * 1_000_000_000 // ih[L.I_DEVICE_RATE]:
        ih[L.I_WMIN_CUR] = ih[L.I_WMIN_PREV] = t_start - due + ih[L.I_ANCHOR_NS]  # its start offset
        ih[L.I_WCOUNT] = 0
    ih[L.I_LAST_START_NS] = t_start
    ih[L.I_N_CALLBACKS] += 1


@numba.njit(**OPTS)
def on_callback(ih, dh, fh, inp, n_in_ch, out, n_out_ch, n, flags):
    """Everything one device callback does (its C wrapper below only maps memory)."""
    t_start = now_ns(ih[L.I_TS : L.I_TS + 2])
    if ih[L.I_RT_STATUS] == L.RT_NOT_TRIED:
        ih[L.I_RT_STATUS] = try_fifo(ih[L.I_TS2 : L.I_TS2 + 2]) if ih[L.I_REALTIME] != 0 else L.RT_OFF
    if flags & STATUS_FLAGS:
        ih[L.I_N_XRUNS] += 1
    due = due_ns(ih, t_start)
    blk.process(ih, dh, fh, inp, n_in_ch, out, n_out_ch, n)
    after_block(ih, due, t_start, now_ns(ih[L.I_TS : L.I_TS + 2]), n)


@numba.njit(**{**OPTS, "_nrt": True})  # numba.carray needs its runtime; the arrays it makes own nothing
def heaps(base):
    head = numba.carray(i64_ptr(base), (L.N_HEADER,))
    n_i, n_d, n_f = head[L.I_N_I], head[L.I_N_D], head[L.I_N_F]
    ih = numba.carray(i64_ptr(base), (n_i,))
    dh = numba.carray(f64_ptr(base + 8 * n_i), (n_d,))
    fh = numba.carray(f32_ptr(base + 8 * (n_i + n_d)), (n_f,))
    return ih, dh, fh


_SIGNATURE = types.int32(types.int64, types.int64, types.uint64, types.int64, types.uint64, types.int64)


@numba.cfunc(_SIGNATURE, nopython=True, cache=True, error_model="numpy")
def pa_callback(input_address, output_address, frames, time_info, status_flags, user_data):
    """``int cb(const void *in, void *out, unsigned long frames, const PaStreamCallbackTimeInfo *,
    PaStreamCallbackFlags, void *userData)``: pointers arrive as integers (same ABI)."""
    ih, dh, fh = heaps(user_data)
    n = np.int64(frames)
    n_in, n_out = ih[L.I_N_IN_CH], ih[L.I_N_OUT_CH]
    inp = numba.carray(f32_ptr(input_address), (n * n_in if input_address != 0 else 0,))
    out = numba.carray(f32_ptr(output_address), (n * n_out,))
    on_callback(ih, dh, fh, inp, n_in if input_address != 0 else 0, out, n_out, n, np.int64(status_flags))
    return PA_CONTINUE


@numba.njit(**OPTS)
def _sim_block(sim, sim_len, pos, loop, inp, n):
    """Frames ``pos .. pos + n`` of the interleaved stereo ``sim`` into ``inp`` (looping, or
    silence past its end)."""
    k = pos
    if loop and sim_len > 0:
        k = pos % sim_len
    if k + n <= sim_len:  # one contiguous run (a copy LLVM vectorises)
        src = sim[np.uint64(2 * k) : np.uint64(2 * (k + n))]
        for i in range(np.uint64(2 * n)):
            inp[i] = src[i]
        return
    for i in range(n):
        if k < sim_len:
            inp[np.uint64(2 * i)] = sim[np.uint64(2 * k)]
            inp[np.uint64(2 * i + 1)] = sim[np.uint64(2 * k + 1)]
        else:
            inp[np.uint64(2 * i)] = 0.0
            inp[np.uint64(2 * i + 1)] = 0.0
        k += 1
        if loop and k == sim_len:
            k = 0


@numba.njit(**OPTS)
def run_clock(ih, dh, fh, sim, inp, out, block, n_total, realtime):
    """The simulated clock: call the callback's work ``block`` frames at a time (``n_total`` < 0:
    until ``I_STOP``), paced like a device when ``realtime``, with the input ``sim`` (interleaved
    L and R, looping when ``I_SIM_LOOP``; silence after its end). Returns the frames played.
    ``inp`` (block × 2) and ``out`` (block × channels) are scratch."""
    rate = ih[L.I_DEVICE_RATE]
    n_out = ih[L.I_N_OUT_CH]
    sim_len = sim.shape[0] // 2
    ts = ih[L.I_TS : L.I_TS + 2]
    t0 = now_ns(ts)
    ih[L.I_RT_STATUS] = L.RT_OFF
    done = 0
    while ih[L.I_STOP] == 0 and (n_total < 0 or done < n_total):
        n = block if n_total < 0 else min(block, n_total - done)
        release = t0 + done * 1_000_000_000 // rate
        if realtime:
            if now_ns(ts) < release:
                sleep_until_ns(release, ts)
            elif now_ns(ts) - release > 10 * block * 1_000_000_000 // rate:
                ih[L.I_N_XRUNS] += 1  # a device would have dropped out here
                t0 = now_ns(ts) - done * 1_000_000_000 // rate
                release = t0 + done * 1_000_000_000 // rate
        t_start = now_ns(ts)
        pos = ih[L.I_SIM_POS]
        _sim_block(sim, sim_len, pos, ih[L.I_SIM_LOOP] != 0, inp, n)
        ih[L.I_SIM_POS] = pos + n
        if ih[L.I_N_CALLBACKS] == 0:
            ih[L.I_FIRST_NS] = t_start
        blk.process(ih, dh, fh, inp, 2, out, n_out, n)
        t_end = now_ns(ts)
        record_response(ih, release if realtime else t_start, t_start, t_end, n)
        ih[L.I_LAST_START_NS] = t_start
        ih[L.I_N_CALLBACKS] += 1
        done += n
    return done


def clock_buffers(block_frames: int, n_out_ch: int) -> tuple[np.ndarray, np.ndarray]:
    return np.zeros(2 * block_frames, np.float32), np.zeros(block_frames * n_out_ch, np.float32)
