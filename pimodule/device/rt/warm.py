"""Compile the real-time engine into numba's cache now: ``python -m pimodule.device.rt.warm``.

The first start after an install or an upgrade would otherwise compile it (about a minute here,
several on a Pi) before the first sound. ``make venv``, ``firmware/provision.sh`` and the test
session run this once; afterwards the audio process loads the cached machine code in about a
second. It compiles the callback (the C function PortAudio calls) and the simulated clock, and
plays a few blocks in every mode so that every path is compiled.
"""

from __future__ import annotations

import sys
import time

import numpy as np

from pimodule.device.config import EngineConfig
from pimodule.device.rt import cache, setup, stream
from pimodule.device.rt import shared as L


def warm() -> float:
    """Compile (or load) everything; returns the seconds it took."""
    t0 = time.monotonic()
    block = setup.create_block(L.Sizes())
    try:
        setup.write_params(block, EngineConfig())
        inp, out = stream.clock_buffers(128, 2)
        sim = np.zeros(2 * 1024, np.float32)
        for mode in (0, 1, 2):
            block.ih[L.I_MODE_REQ] = mode
            block.ih[L.I_MATCH] = 1
            stream.run_clock(block.ih, block.dh, block.fh, sim, inp, out, 128, 1024, False)
        assert stream.pa_callback.address  # the C callback is compiled when its module loads
    finally:
        block.close()
    return time.monotonic() - t0


def main() -> int:
    seconds = warm()
    print(f"real-time engine compiled into {cache.configure()} in {seconds:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
