"""What compiled real-time code needs from the machine: fences, raw pointers, the clock.

All of it is callable from numba's nopython mode and from a ``cfunc`` that PortAudio calls on its
own thread: no Python object, no GIL, no allocation.

- :func:`fence`: a full memory barrier (``dmb ish`` on ARM), so that a value published by one
  process is seen only after what it announces;
- :func:`f32_ptr`, :func:`f64_ptr`, :func:`i64_ptr`: an integer address as a typed pointer, so a
  ``cfunc`` can make arrays (``numba.carray``) over the shared block it is given;
- :func:`now_ns`: ``CLOCK_MONOTONIC`` in nanoseconds (``clock_gettime``, a vDSO call on Linux);
- :func:`sleep_until_ns`: ``clock_nanosleep`` to an absolute monotonic time (the simulated clock);
- :func:`try_fifo`: ``SCHED_FIFO`` for the calling thread (the audio thread only).
"""

from __future__ import annotations

import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

CLOCK_MONOTONIC = 1
TIMER_ABSTIME = 1
SCHED_FIFO = 1
AUDIO_PRIORITY = 70  # below JACK's own (typically 80+)


def _c_call(builder, symbol: str, argtys: list, vals: list):
    fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.IntType(32), argtys), symbol)
    return builder.call(fn, vals)


_I32, _PTR = ir.IntType(32), ir.IntType(8).as_pointer()


# The C library's functions are called by name, resolved when the machine code is loaded: the
# code can be cached (a ctypes function pointer would be an address baked into it).
@intrinsic
def _clock_gettime(typingctx, clock_id, ts_address):
    def codegen(context, builder, signature, args):
        return _c_call(
            builder, "clock_gettime", [_I32, _PTR], [builder.trunc(args[0], _I32), builder.inttoptr(args[1], _PTR)]
        )

    return types.int32(types.int64, types.int64), codegen


@intrinsic
def _clock_nanosleep(typingctx, clock_id, flags, ts_address):
    def codegen(context, builder, signature, args):
        null = ir.Constant(_PTR, None)
        return _c_call(
            builder,
            "clock_nanosleep",
            [_I32, _I32, _PTR, _PTR],
            [builder.trunc(args[0], _I32), builder.trunc(args[1], _I32), builder.inttoptr(args[2], _PTR), null],
        )

    return types.int32(types.int64, types.int64, types.int64), codegen


@intrinsic
def _sched_setscheduler(typingctx, pid, policy, param_address):
    def codegen(context, builder, signature, args):
        return _c_call(
            builder,
            "sched_setscheduler",
            [_I32, _I32, _PTR],
            [builder.trunc(args[0], _I32), builder.trunc(args[1], _I32), builder.inttoptr(args[2], _PTR)],
        )

    return types.int32(types.int64, types.int64, types.int64), codegen


@intrinsic
def fence(typingctx):
    """A sequentially consistent memory fence."""

    def codegen(context, builder, signature, args):
        builder.fence("seq_cst")
        return context.get_dummy_value()

    return types.void(), codegen


def _pointer_intrinsic(dtype):
    @intrinsic
    def as_pointer(typingctx, address):
        sig = types.CPointer(dtype)(types.int64)

        def codegen(context, builder, signature, args):
            return builder.inttoptr(args[0], context.get_value_type(types.CPointer(dtype)))

        return sig, codegen

    return as_pointer


f32_ptr = _pointer_intrinsic(types.float32)
f64_ptr = _pointer_intrinsic(types.float64)
i64_ptr = _pointer_intrinsic(types.int64)


@intrinsic
def address_of(typingctx, arr):
    """The data address of a C-contiguous array, as an int64."""
    if not isinstance(arr, types.Array):
        return None

    def codegen(context, builder, signature, args):
        ary = cgutils.create_struct_proxy(signature.args[0])(context, builder, value=args[0])
        return builder.ptrtoint(ary.data, ir.IntType(64))

    return types.int64(arr), codegen


@numba.njit(nogil=True, cache=True)
def now_ns(scratch):
    """Monotonic time in ns; ``scratch`` is a preallocated int64 array of 2 (a timespec)."""
    _clock_gettime(CLOCK_MONOTONIC, address_of(scratch))
    return scratch[0] * 1_000_000_000 + scratch[1]


@numba.njit(nogil=True, cache=True)
def sleep_until_ns(t_ns, scratch):
    """Sleep until the monotonic clock reaches ``t_ns`` (returns at once if it has)."""
    scratch[0] = t_ns // 1_000_000_000
    scratch[1] = t_ns % 1_000_000_000
    _clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, address_of(scratch))


@numba.njit(nogil=True, cache=True)
def try_fifo(scratch):
    """SCHED_FIFO for the calling thread: 1 if granted, 2 if denied (``scratch``: int32-sized
    room in an int64 array holding ``struct sched_param``)."""
    scratch[0] = AUDIO_PRIORITY
    ok = _sched_setscheduler(0, SCHED_FIFO, address_of(scratch))
    return 1 if ok == 0 else 2


def timespec() -> np.ndarray:
    return np.zeros(2, np.int64)


@numba.njit(nogil=True, cache=True)
def full_fence():
    """:func:`fence`, callable from Python (the control process publishing into the block)."""
    fence()
