"""The DDSP voice's frame as compiled, allocation-free code (numba): ``FrameVoice.forward``.

``voice_frame(weights, layout, controls, f0_hz, loudness_db, state, scratch, out)`` computes one
hop of audio into ``out`` and updates ``state`` in place; ``voice_frames`` runs many frames (offline
rendering, benchmarks). The arrays come from :func:`pimodule.device.voice.weights.read_voice`; the
kernel trusts their layout and never allocates, raises or touches a Python object, so it can run
in the audio callback without the GIL. NaN in any input propagates to ``out`` (the engine's guard
replaces a non-finite block); no input value makes it read or write outside its arrays.

Numerics follow the ONNX graph: float32 where the graph computes float32 (the f0 ramp and the
Nyquist masks bit for bit, since a harmonic switching on or off is not a rounding difference),
float64 where it is float64 (phase), and float64 where that costs nothing and is closer to the
intended function (LayerNorm statistics, transcendental functions, the sines). The sines are not
4096 calls of ``sin``: per sample, ``sin(k p)`` for k = 1, 2, ... follows the Chebyshev recurrence
``s[k] = 2 cos(p) s[k-1] - s[k-2]`` in float64, 8 harmonics per pass over the samples; each
harmonic runs only over the samples where it is below Nyquist (f0 ramps monotonically over the
frame, so that is a prefix or a suffix of the frame). The noise FIR runs only over its non-zero
support; matrices are (out, in) rows, 4 rows per pass (see ``matvec``).

Indices are uint64 throughout (:mod:`.kernel_ops` says why). The code is split over
``kernel_ops``, ``kernel_synth`` and this module; numba's cache only notices changes to the file
that defines a function, so :func:`_check_cache` recompiles everything when the hash of these
sources and of ``layout`` differs from the one baked into the cached code.

fastmath: reassociation and contraction only where it makes SIMD reductions and fused
multiply-adds (dot products, LayerNorm sums, the sine recurrence, the FIR); never 'nnan'/'ninf',
which would let LLVM drop NaN handling. The f0 ramp and Nyquist masks are computed without it.
"""

from __future__ import annotations

import hashlib
import math
import sys
from pathlib import Path

import numba
import numpy as np

from pimodule.device.voice import kernel_ops, kernel_synth
from pimodule.device.voice import layout as L
from pimodule.device.voice.kernel_math import ONE32, exp32, log32, sigmoid32, tanh32
from pimodule.device.voice.kernel_ops import FAST, OPTS, U0, U2, U3, U4, dim, layer_norm_leaky, matvec_any, off, size
from pimodule.device.voice.kernel_synth import amplitudes, harmonic, noise, phases, reverb

_SOURCES = ("layout.py", "kernel_ops.py", "kernel_math.py", "kernel_synth.py", "kernel.py")
SOURCE_HASH = int.from_bytes(
    hashlib.sha256(b"".join((Path(__file__).parent / name).read_bytes() for name in _SOURCES)).digest()[:7], "little"
)
_A = "float32[::1]"
FRAME_SIGNATURE = f"void({_A}, int64[::1], {_A}, float64, float64, float64[::1], {_A}, {_A})"
FRAMES_SIGNATURE = f"void({_A}, int64[::1], float32[:, ::1], {_A}, {_A}, float64[::1], {_A}, float32[:, ::1])"


@numba.njit(fastmath=FAST, **OPTS)
def _gru_update(w, bhn, sx, gi, gh, xh, h, hp, state, sg):
    """h_next = n + z (h_prev - n), r and z sigmoids, n = tanh(gi_n + r (gh_n + b_hn)); into
    scratch H (it held h_prev) and the state."""
    for j in range(h):
        r = sigmoid32(sx[gi + j] + sx[gh + j])
        z = sigmoid32(sx[gi + hp + j] + sx[gh + hp + j])
        n = tanh32(sx[gi + U2 * hp + j] + r * (sx[gh + U2 * hp + j] + w[bhn + j]))
        hn = n + z * (sx[xh + j] - n)
        sx[xh + j] = hn
        state[sg + j] = hn


@numba.njit(fastmath=FAST, **OPTS)
def _scaled_sigmoid(sx, p, n, pw, scale, offset):
    """x -> 2 sigmoid(x)^ln10 + 1e-7 (the constants read from the graph) in place, as
    exp(-pw log(1 + exp(-x))) in float32, vectorised: the error of the exponent, ~1e-7 x
    |pw log sigmoid(x)|, is large only where the result is negligible beside the 1e-7 offset.
    NaN stays NaN."""
    for i in range(n):
        x = sx[p + i]
        v = exp32(-pw * log32(ONE32 + exp32(-x)))
        v = v if x == x else x
        sx[p + i] = v * scale + offset


@numba.njit(fastmath=FAST, inline="always", **OPTS)
def _mv(w, lay, seg, rows, cols, x, xo, b, bo, has_bias, y, yo):
    matvec_any(w, off(lay, seg), size(lay, seg), rows, cols, x, xo, b, bo, has_bias, y, yo)


@numba.njit(**OPTS)
def _decode(w, lay, f0, ld, state, sx):
    """The decoder: input MLPs, GRU step (state updated), out MLP, projection and scaled
    sigmoid into scratch P."""
    h, hp = dim(lay, L.D_H), dim(lay, L.D_HP)
    c = off(lay, L.W_CONST)
    y1, y2, gi, gh = off(lay, L.X_Y1), off(lay, L.X_Y2), off(lay, L.X_GI), off(lay, L.X_GH)
    xh, o1, o2, p = off(lay, L.X_H), off(lay, L.X_O1), off(lay, L.X_O2), off(lay, L.X_P)
    xin0 = np.float32(math.log(np.float64(f0))) * w[c + L.C_IN_SCALE] + w[c + L.C_IN_SHIFT]
    xin1 = ld * w[c + L.C_IN_SCALE + 1] + w[c + L.C_IN_SHIFT + 1]
    w1, b1, g1, be1 = off(lay, L.W_W1), off(lay, L.W_B1), off(lay, L.W_G1), off(lay, L.W_BE1)
    w2, b2, g2, be2 = off(lay, L.W_W2), off(lay, L.W_B2), off(lay, L.W_G2), off(lay, L.W_BE2)
    n2 = size(lay, L.W_W2) // U2  # each MLP's matrix (float32 or int8 with its scales)
    for m in range(U2):
        xin = xin0 if m == U0 else xin1
        mo = m * hp
        for j in range(h):
            sx[y2 + mo + j] = xin * w[w1 + mo + j] + w[b1 + mo + j]
        layer_norm_leaky(sx, y2 + mo, h, w[c + L.C_EPS], w, g1 + mo, be1 + mo, w[c + L.C_SLOPE], sx, y1 + mo)
        matvec_any(w, w2 + m * n2, n2, hp, hp, sx, y1 + mo, w, b2 + mo, True, sx, y2 + mo)
        layer_norm_leaky(sx, y2 + mo, h, w[c + L.C_EPS + 1], w, g2 + mo, be2 + mo, w[c + L.C_SLOPE + 1], sx, y1 + mo)
    # GRU: gates from [a, b] (y1) and from h_prev
    sg = off(lay, L.S_GRU)
    for j in range(h):
        sx[xh + j] = np.float32(state[sg + j])
    _mv(w, lay, L.W_AB, U4 * hp, U2 * hp, sx, y1, w, off(lay, L.W_BAB), True, sx, gi)
    _mv(w, lay, L.W_HH, U3 * hp, hp, sx, xh, w, U0, False, sx, gh)
    _gru_update(w, off(lay, L.W_BHN), sx, gi, gh, xh, h, hp, state, sg)
    # out MLP on [h, a, b] (its [a, b] part is gi's last block) and the projection
    _mv(w, lay, L.W_X, hp, hp, sx, xh, sx, gi + U3 * hp, True, sx, o1)
    layer_norm_leaky(
        sx, o1, h, w[c + L.C_EPS + 2], w, off(lay, L.W_LN1W), off(lay, L.W_LN1B), w[c + L.C_SLOPE + 2], sx, o1
    )
    _mv(w, lay, L.W_LIN2, hp, hp, sx, o1, w, off(lay, L.W_LIN2B), True, sx, o2)
    layer_norm_leaky(
        sx, o2, h, w[c + L.C_EPS + 3], w, off(lay, L.W_LN2W), off(lay, L.W_LN2B), w[c + L.C_SLOPE + 3], sx, o2
    )
    _mv(w, lay, L.W_PROJ, dim(lay, L.D_NOUTP), hp, sx, o2, w, off(lay, L.W_PROJB), True, sx, p)
    _scaled_sigmoid(sx, p, dim(lay, L.D_NOUT), w[c + L.C_POW], w[c + L.C_SIG_SCALE], w[c + L.C_SIG_OFFSET])


@numba.njit(FRAME_SIGNATURE, **OPTS)
def voice_frame(weights, layout, controls, f0_hz, loudness_db, state, scratch, out):
    """One frame: ``out[:hop]`` (float32) from f0 (Hz), loudness (dB) and ``controls`` (float32:
    pitch_shift_semitones, loudness_offset_db, harmonic_gain_db, noise_gain_db); ``state``
    updated in place. ``weights``, ``layout``, ``state`` and ``scratch`` from read_voice."""
    w, lay = weights, layout
    c = off(lay, L.W_CONST)
    g_shift = np.float32(math.exp(np.float64(controls[0] * w[c + L.C_CTRL_SCALE])))
    g_harm = np.float32(math.exp(np.float64(controls[2] * w[c + L.C_CTRL_SCALE + 2])))
    g_noise = np.float32(math.exp(np.float64(controls[3] * w[c + L.C_CTRL_SCALE + 3])))
    f0 = np.float32(f0_hz) * g_shift
    if f0 < w[c + L.C_F0_MIN]:
        f0 = w[c + L.C_F0_MIN]
    elif f0 > w[c + L.C_F0_MAX]:
        f0 = w[c + L.C_F0_MAX]
    ld = np.float32(loudness_db) + controls[1]
    if ld < w[c + L.C_LD_MIN]:
        ld = w[c + L.C_LD_MIN]
    elif ld > w[c + L.C_LD_MAX]:
        ld = w[c + L.C_LD_MAX]
    _decode(w, lay, f0, ld, state, scratch)
    amplitudes(w, lay, f0, g_harm, state, scratch)
    phases(w, lay, f0, state, scratch)
    hop = dim(lay, L.D_HOP)
    a = off(lay, L.X_AUDIO)
    dry = scratch[a : a + hop]
    harmonic(w, lay, state, scratch, dry)
    noise(w, lay, g_noise, state, scratch, dry)
    if lay[L.D_NREV] > 0:
        reverb(w, lay, state, scratch, dry, out)
    else:
        for n in range(hop):
            out[n] = dry[n]


@numba.njit(FRAMES_SIGNATURE, **OPTS)
def voice_frames(weights, layout, controls, f0_hz, loudness_db, state, scratch, out):
    """Frames one after another: ``controls`` (n, 4) or (1, 4) for all frames, ``f0_hz`` and
    ``loudness_db`` (n,) float32, ``out`` (n, hop)."""
    n_ctrl = controls.shape[0]
    for i in range(f0_hz.shape[0]):
        voice_frame(
            weights,
            layout,
            controls[min(i, n_ctrl - 1)],
            np.float64(f0_hz[i]),
            np.float64(loudness_db[i]),
            state,
            scratch,
            out[i],
        )


@numba.njit("int64()", **OPTS)
def _baked_source_hash():
    return SOURCE_HASH  # a compile-time constant: what the cached code was compiled from


def _check_cache() -> None:
    """Recompile every kernel function if the cached code predates the sources. Every function's
    disk cache is emptied first: a caller recompiled here compiles its callees, and a callee whose
    own file did not change (``_decode`` when only ``kernel_ops.py`` did) would otherwise be loaded
    from its cache with the old code of *its* callees inside."""
    if _baked_source_hash() == SOURCE_HASH:
        return
    dispatchers = [
        obj
        for module in (kernel_ops, kernel_synth, sys.modules[__name__])
        for obj in list(vars(module).values())
        if isinstance(obj, numba.core.registry.CPUDispatcher) and obj.__module__ == module.__name__
    ]
    for obj in dispatchers:
        obj._cache.flush()
    for obj in dispatchers:
        if obj.signatures:
            obj.recompile()


_check_cache()
