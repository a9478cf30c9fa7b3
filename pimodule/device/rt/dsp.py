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
OPTS = {"nogil": True, "cache": True, "error_model": "numpy", "boundscheck": False, "_nrt": False}
ABS_MASK, SIGN = np.uint64(0x7FFFFFFF), np.uint32(0x80000000)  # float32 bits: |x|, the sign
POS_INF = np.int32(0x7F800000)  # +inf; NaN above it
U0, U1, U2, U3 = np.uint64(0), np.uint64(1), np.uint64(2), np.uint64(3)


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
    wp = _append(buf, hist, wp, x, n)
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
def _append(buf, hist, wp, x, n):
    """``x[:n]`` into the resampler's history at ``wp`` (the newest ``hist`` samples moved to the
    front first when it would not fit); returns where ``x`` now starts."""
    if wp + n > buf.shape[0]:
        for i in range(hist):
            buf[i] = buf[wp - hist + i]
        wp = hist
    for i in range(n):
        buf[wp + i] = x[i]
    return wp


@numba.njit(**OPTS)
def upsample3(taps, n_taps, buf, x, state, acc, ring, write_count):
    """:func:`polyphase` for ``up = 3, down = 1`` (16 -> 48 kHz), appended to ``ring`` at
    ``write_count``; returns the new write count. The same outputs to float32 rounding (each a
    dot product in tap order), computed phase-major: for each tap, the three branches' products
    over the whole block (``acc``: 3 x len(x) scratch), which LLVM vectorises across output
    samples (one load of the input per three 4-wide multiply-adds, instead of a horizontal sum
    per output), then interleaved into the ring (``st3``)."""
    hist = n_taps - 1
    n = x.shape[0]
    wp = _append(buf, hist, state[0], x, n)
    _phases3(taps, np.uint64(n_taps), buf, np.uint64(wp - hist), np.uint64(n), acc)
    state[0], state[1] = wp + n, state[1] + n
    state[2] = 3 * state[1]
    size = np.uint64(ring.shape[0])
    pos = np.uint64(write_count) % size
    n3 = np.uint64(3 * n)
    if pos + n3 <= size:
        _interleave3(acc, np.uint64(n), ring, pos)
    else:  # across the ring's end (once per lap)
        for k in range(n3):
            q = pos + k
            ring[q - size if q >= size else q] = acc[(k % U3) * np.uint64(n) + k // U3]
    return write_count + 3 * n


@numba.njit(fastmath={"contract"}, **OPTS)
def _phases3(taps, nt, buf, s0, n, acc):
    """acc[p n + i] = sum_t taps[p nt + t] buf[s0 + i + t], p < 3, i < n (no reassociation: each
    sum in tap order, so the loop over i is the vectorised one). Three taps per pass over the
    block: each accumulator is loaded and stored once per three multiply-adds (the same sums,
    in the same order, as one tap at a time)."""
    a0, a1, a2 = acc[:n], acc[n : U2 * n], acc[U2 * n : U3 * n]
    for i in range(n):
        a0[i] = 0.0
        a1[i] = 0.0
        a2[i] = 0.0
    t = U0
    while t + U3 <= nt:
        f0, g0, h0 = taps[t], taps[t + U1], taps[t + U2]
        f1, g1, h1 = taps[nt + t], taps[nt + t + U1], taps[nt + t + U2]
        f2, g2, h2 = taps[U2 * nt + t], taps[U2 * nt + t + U1], taps[U2 * nt + t + U2]
        b0, b1, b2 = buf[s0 + t : s0 + t + n], buf[s0 + t + U1 : s0 + t + U1 + n], buf[s0 + t + U2 : s0 + t + U2 + n]
        for i in range(n):
            u, v, x = b0[i], b1[i], b2[i]
            a0[i] = a0[i] + f0 * u + g0 * v + h0 * x
            a1[i] = a1[i] + f1 * u + g1 * v + h1 * x
            a2[i] = a2[i] + f2 * u + g2 * v + h2 * x
        t += U3
    while t < nt:
        f0, f1, f2 = taps[t], taps[nt + t], taps[U2 * nt + t]
        b0 = buf[s0 + t : s0 + t + n]
        for i in range(n):
            u = b0[i]
            a0[i] += f0 * u
            a1[i] += f1 * u
            a2[i] += f2 * u
        t += U1


@numba.njit(**OPTS)
def _interleave3(acc, n, ring, pos):
    a0, a1, a2 = acc[:n], acc[n : U2 * n], acc[U2 * n : U3 * n]
    r = ring[pos : pos + U3 * n]
    for i in range(n):
        r[U3 * i] = a0[i]
        r[U3 * i + U1] = a1[i]
        r[U3 * i + U2] = a2[i]


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
    peak, bad = _peak(x, n)
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
def _peak(x, n):
    """(largest |x[i]| over the finite samples, whether any was not finite), non-finite samples
    silenced. The usual case (all finite) in one vectorised pass over the float32 bit patterns,
    which order as the magnitudes do within a sign: their largest value as int32 is the largest
    positive sample, as uint32 the largest negative one (sign bit set), and only NaN and inf
    reach the exponent's all-ones (LLVM makes each a 4-lane max reduction)."""
    as_u, as_s = x[:n].view(np.uint32), x[:n].view(np.int32)
    mu, ms = np.uint32(0), np.int32(0)
    for i in range(n):
        mu = max(mu, as_u[i])
        ms = max(ms, as_s[i])
    neg = np.uint32(np.uint64(mu) & ABS_MASK)
    if ms < POS_INF and (mu < SIGN or neg < POS_INF):
        return max(np.float64(np.int32(ms).view(np.float32)), np.float64(neg.view(np.float32))), False
    peak = 0.0
    for i in range(n):
        v = x[i]
        if not math.isfinite(v):
            x[i] = 0.0
        else:
            peak = max(peak, abs(v))
    return peak, True


@numba.njit(fastmath={"reassoc"}, **OPTS)
def all_finite(x, n):
    """Whether ``x[:n]`` holds no NaN or inf: the sum of ``x - x`` is 0 unless one is there
    (reassociated, so LLVM vectorises it; without ``nnan``/``ninf`` it cannot fold ``x - x``;
    summed in ``x``'s own type)."""
    if n <= 0:
        return True
    s = x[0] - x[0]
    for i in range(1, n):
        s += x[i] - x[i]
    return s == 0.0


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
