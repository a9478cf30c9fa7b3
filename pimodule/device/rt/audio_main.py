"""The audio process: ``python -m pimodule.device.rt.audio_main BLOCK [options]``.

It maps the shared block the control process created, loads the compiled callback (from numba's
cache when it can), opens the audio device with that callback (or runs it on the simulated
clock) and then only waits: its main thread sleeps and watches for the stop flag and for its
parent's death. It imports neither onnxruntime nor the daemon; nothing here takes a lock or the
GIL while audio runs. One JSON line on stdout says it is ready (backend, cold-start time) or why
it could not start.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import signal
import struct
import sys
import time

from pimodule.device import cpus
from pimodule.device.rt import shared as L
from pimodule.device.rt import stream as rt_stream  # the compiled callback (numba's cache, or compiled now)
from pimodule.device.rt.shm import Shared

PR_SET_PDEATHSIG = 1
POLL_S = 0.05
CPU_LATENCY_DEV = "/dev/cpu_dma_latency"


def _die_with_parent() -> None:
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass


def _say(**fields) -> None:
    sys.stdout.write(json.dumps(fields) + "\n")
    sys.stdout.flush()


def hold_cpu_latency(path: str = CPU_LATENCY_DEV) -> tuple[int | None, str]:
    """Ask the kernel (PM QoS) to keep every CPU's wake-up latency at 0 µs for as long as the
    returned descriptor is open: no deep idle state between callbacks, so a callback's thread is
    woken on time (idle wake-ups were most of the late blocks on a virtual machine here). Returns
    (descriptor or None, what happened)."""
    try:
        fd = os.open(path, os.O_WRONLY)
    except OSError as err:
        return None, f"not held ({path}: {err.strerror})"
    try:
        os.write(fd, struct.pack("i", 0))
    except OSError as err:
        os.close(fd)
        return None, f"not held ({path}: {err.strerror})"
    return fd, "held at 0 us"


def _device_index(sd, device):
    if device in (None, ""):
        return None
    if isinstance(device, int) or str(device).strip().isdigit():
        return int(device)
    for i, d in enumerate(sd.query_devices()):
        if str(device).lower() in d["name"].lower() and d["max_output_channels"] > 0:
            return i
    raise ValueError(f"no audio output device matching {device!r}")


def open_stream(block: Shared, callback_address: int, device, block_size: int, n_input_channels: int, latency: str):
    """Open (not start) a PortAudio stream whose callback is the compiled C function."""
    import sounddevice as sd  # PortAudio: imported only in the audio process

    ffi, lib = sd._ffi, sd._lib  # noqa: SLF001 - the raw API, to pass a C callback
    ih = block.ih
    rate = int(ih[L.I_DEVICE_RATE])
    index = _device_index(sd, device)
    out_index = index if index is not None else sd.default.device[1]
    if out_index is None or out_index < 0:
        out_index = lib.Pa_GetDefaultOutputDevice()
    info = sd.query_devices(out_index)

    def params(dev, channels, kind):
        p = ffi.new("PaStreamParameters*")
        p.device = dev
        p.channelCount = channels
        p.sampleFormat = lib.paFloat32
        p.suggestedLatency = info[f"default_low_{kind}_latency" if latency == "low" else f"default_high_{kind}_latency"]
        p.hostApiSpecificStreamInfo = ffi.NULL
        return p

    n_out = int(ih[L.I_N_OUT_CH])
    stream = ffi.new("PaStream**")
    callback = ffi.cast("PaStreamCallback*", callback_address)
    user = ffi.cast("void*", block.ih.ctypes.data)
    err = -1
    n_in = 0
    if n_input_channels > 0 and info["max_input_channels"] > 0:
        n_in = min(n_input_channels, info["max_input_channels"])
        ih[L.I_N_IN_CH] = n_in
        err = lib.Pa_OpenStream(
            stream,
            params(out_index, n_in, "input"),
            params(out_index, n_out, "output"),
            rate,
            block_size,
            0,
            callback,
            user,
        )
    if err != 0:
        n_in = 0
        ih[L.I_N_IN_CH] = 0
        err = lib.Pa_OpenStream(
            stream, ffi.NULL, params(out_index, n_out, "output"), rate, block_size, 0, callback, user
        )
    if err != 0:
        raise OSError(f"PortAudio cannot open {info['name']!r}: {ffi.string(lib.Pa_GetErrorText(err)).decode()}")
    host = sd.query_hostapis(info["hostapi"])["name"]
    return stream[0], lib, f"{info['name']} ({host})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pimodule.device.rt.audio_main")
    parser.add_argument("block", help="name of the shared block")
    parser.add_argument("--device", default=None)
    parser.add_argument("--block-size", type=int, default=128)
    parser.add_argument("--input-channels", type=int, default=2)
    parser.add_argument("--latency", default="low")
    parser.add_argument("--offline", action="store_true", help="the simulated clock, no device")
    parser.add_argument("--duration", type=float, default=-1.0, help="seconds of audio (offline); < 0: until stopped")
    parser.add_argument("--freewheel", action="store_true", help="offline, as fast as possible")
    parser.add_argument("--no-realtime", action="store_true", help="do not ask for SCHED_FIFO")
    parser.add_argument("--cpus", default=None, help="pin this process to these CPUs (e.g. 3 or 2,3)")
    args = parser.parse_args(argv)
    if args.cpus:  # before the stream's threads start: they inherit the mask
        cpus.pin_process(cpus.parse_list(args.cpus))
    _die_with_parent()
    signal.signal(signal.SIGTERM, lambda *_: None)  # the stop flag ends us; a signal just wakes the sleep
    parent = os.getppid()
    try:
        block = Shared.attach(args.block)
    except (FileNotFoundError, ValueError) as err:
        _say(ready=False, error=f"cannot map the shared block: {err}")
        return 2
    ih = block.ih
    ih[L.I_REALTIME] = 0 if args.no_realtime else 1
    try:
        if args.offline:
            rate = int(ih[L.I_DEVICE_RATE])
            n_total = int(round(args.duration * rate)) if args.duration >= 0 else -1
            inp, out = rt_stream.clock_buffers(args.block_size, int(ih[L.I_N_OUT_CH]))
            ih[L.I_N_IN_CH] = 2
            _say(ready=True, backend="offline (simulated clock)", pid=os.getpid())
            sim = block.buf("F_SIM_IN")[: 2 * int(ih[L.I_SIM_LEN])]
            rt_stream.run_clock(ih, block.dh, block.fh, sim, inp, out, args.block_size, n_total, not args.freewheel)
            _say(done=True, samples=int(ih[L.I_N_SAMPLES]))
            return 0
        try:
            handle, lib, backend = open_stream(
                block, rt_stream.pa_callback.address, args.device, args.block_size, args.input_channels, args.latency
            )
        except (OSError, ValueError) as err:
            _say(ready=False, error=str(err))
            return 3
        qos_fd, qos = hold_cpu_latency() if not args.no_realtime else (None, "not asked (--no-realtime)")
        lib.Pa_StartStream(handle)
        _say(ready=True, backend=backend, pid=os.getpid(), cpu_latency=qos)
        try:
            while ih[L.I_STOP] == 0 and os.getppid() == parent:
                time.sleep(POLL_S)
        finally:
            lib.Pa_StopStream(handle)
            lib.Pa_CloseStream(handle)
            if qos_fd is not None:
                os.close(qos_fd)  # the request ends with the descriptor
        return 0
    finally:
        block.close()


if __name__ == "__main__":
    sys.exit(main())
