"""Allocation-free compiled kernels of the callback: resampling, the output guard, fades.

Each works on preallocated arrays (views of the shared block) and small integer/float state
kept in the block, so the audio process holds nothing between callbacks but the block itself.
They are the compiled counterparts of :mod:`pimodule.device.resample` and
:mod:`pimodule.device.guard` (same filters, same curves; tests compare them).
"""

from __future__ import annotations

import math

import numba
import numpy as np

from pimodule.device.rt import cache

CACHE_DIR = cache.configure()  # before the first decorator below: where the compiled engine lives
OPTS = {"nogil": True, "cache": True, "error_model": "numpy", "boundscheck": False}


@numba.njit(fastmath={"reassoc", "contract", "nsz"}, **OPTS)
def _dot(a, ao, b, bo, n):
    acc = np.float32(0.0)
    for t in range(n):
        acc += a[ao + t] * b[bo + t]
    return acc


@numba.njit(**OPTS)
def polyphase(taps, n_phases, n_taps, buf, hist_start, x, state, out):
    """Rational resampling by ``up/down`` (up = ``n_phases``) of block ``x`` into ``out``.

    ``taps`` holds ``n_phases`` branches of ``n_taps`` reversed taps; ``buf`` is the input history
    (first ``n_taps - 1`` samples of history, then room for the block); ``state`` is an int64
    array ``[write_pos, n_in, n_out, down]``. Returns the number of outputs written (the first
    outputs of ``scipy.signal.upfirdn(taps, x, up, down)`` over the whole stream, to float32
    rounding: the dot products are summed in the order the machine's vectors take).
    """
    hist = n_taps - 1
    wp, n_in, n_out, down = state[0], state[1], state[2], state[3]
    n = x.shape[0]
    if wp + n > buf.shape[0]:  # compact: the newest history to the front
        for i in range(hist):
            buf[i] = buf[wp - hist + i]
        wp = hist
    for i in range(n):
        buf[wp + i] = x[i]
    base = n_in - wp  # stream index of buf[0]
    wp += n
    n_in += n
    up = n_phases
    m_end = -((-n_in * up) // down)
    count = 0
    # indices as unsigned integers (numba would otherwise test every one for negative
    # wrap-around), the dot product reassociated (fastmath) so LLVM vectorises it
    nt = np.uint64(n_taps)
    m = n_out
    i0 = (m * down) // up
    phase = (m * down) % up
    while m < m_end:
        out[count] = _dot(taps, np.uint64(phase) * nt, buf, np.uint64(i0 - hist - base), nt)
        count += 1
        m += 1
        phase += down  # the next output's phase and input position, without a division
        while phase >= up:
            phase -= up
            i0 += 1
    state[0], state[1], state[2] = wp, n_in, m_end
    return count


@numba.njit(**OPTS)
def guard(x, n, gain_state, params, counters):
    """NaN/inf to silence, smoothed gain and mute, a peak limiter and a hard clip, in place on
    ``x[:n]``. ``gain_state`` = [gain now, limiter gain now]; ``params`` = [target gain, gain
    time constant (samples), release time constant (samples), ceiling]; ``counters`` =
    [non-finite blocks, limited blocks] (incremented). As :class:`pimodule.device.guard.OutputGuard`."""
    if n == 0:
        return
    target, gain_tau, release_tau, ceiling = params[0], params[1], params[2], params[3]
    g0 = gain_state[0]
    if g0 != target:
        g1 = target + (g0 - target) * math.exp(-n / gain_tau)
        if abs(g1 - target) < 1e-5:
            g1 = target
        step = (g1 - g0) / n
        for i in range(n):
            x[i] *= np.float32(g0 + step * (i + 1))
        gain_state[0] = g1
    elif g0 != 1.0:
        g = np.float32(g0)
        for i in range(n):
            x[i] *= g
    peak = 0.0
    bad = False
    for i in range(n):
        v = x[i]
        if not math.isfinite(v):
            bad = True
            x[i] = 0.0
        else:
            a = abs(v)
            if a > peak:
                peak = a
    if bad:
        counters[0] += 1
    l0 = gain_state[1]
    if peak <= ceiling and l0 == 1.0:
        return
    needed = ceiling / peak if peak > ceiling else 1.0
    released = 1.0 + (l0 - 1.0) * math.exp(-n / release_tau)
    l1 = min(needed, released)
    if l1 < 1.0 or l0 < 1.0:
        step = (l1 - l0) / n
        for i in range(n):
            x[i] *= np.float32(l0 + step * (i + 1))
        if needed < 1.0:
            counters[1] += 1
    gain_state[1] = l1 if l1 < 1.0 - 1e-6 else 1.0
    c = np.float32(ceiling)
    for i in range(n):
        if x[i] > c:
            x[i] = c
        elif x[i] < -c:
            x[i] = -c


@numba.njit(**OPTS)
def fade_linear(x, n, level, target, step):
    """Move ``level`` towards ``target`` (0 or 1) by ``step`` per sample, scaling ``x[:n]``;
    returns the new level (exactly 0.0 or 1.0 once there)."""
    if level == target:
        if level == 0.0:
            for i in range(n):
                x[i] = 0.0
        return level
    d = step if target > level else -step
    for i in range(n):
        level = min(1.0, max(0.0, level + d))
        x[i] *= np.float32(level)
    if (d > 0 and level >= target) or (d < 0 and level <= target):
        level = target
    return level


@numba.njit(**OPTS)
def crossfade(old, new, n, curve, position):
    """``new = old + (new - old) * curve[position + i]`` for i < n while the curve lasts; returns
    the new position (``len(curve)`` once done)."""
    m = min(n, curve.shape[0] - position)
    for i in range(m):
        w = curve[position + i]
        new[i] = old[i] + (new[i] - old[i]) * w
    return position + max(m, 0)


@numba.njit(**OPTS)
def ring_write(ring, write_count, x, n):
    """Append ``x[:n]`` to a ring (length a power of two or not); returns the new write count."""
    size = np.uint64(ring.shape[0])
    pos = np.uint64(write_count) % size
    first = min(np.uint64(n), size - pos)
    for i in range(first):
        ring[pos + i] = x[i]
    for i in range(np.uint64(n) - first):
        ring[i] = x[first + i]
    return write_count + n


@numba.njit(**OPTS)
def ring_read(ring, read_count, out, n):
    """Copy ``n`` samples from a ring at ``read_count`` into ``out``; returns the new read count."""
    size = np.uint64(ring.shape[0])
    pos = np.uint64(read_count) % size
    first = min(np.uint64(n), size - pos)
    for i in range(first):
        out[i] = ring[pos + i]
    for i in range(np.uint64(n) - first):
        out[first + i] = ring[i]
    return read_count + n
