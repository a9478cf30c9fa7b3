"""The audio process's PM QoS request (pimodule.device.rt.audio_main.hold_cpu_latency)."""

import os
import struct

from pimodule.device.rt.audio_main import hold_cpu_latency


def test_the_request_is_a_zero_written_once_and_held_open(tmp_path):
    dev = tmp_path / "cpu_dma_latency"  # the kernel's device takes a native int32 (µs)
    dev.write_bytes(b"\xff" * 4)
    fd, said = hold_cpu_latency(str(dev))
    try:
        assert fd is not None and said == "held at 0 us"
        assert struct.unpack("i", dev.read_bytes()) == (0,)
        os.fstat(fd)  # still open: the request lasts as long as the descriptor
    finally:
        os.close(fd)


def test_no_access_is_said_and_nothing_raises(tmp_path):
    fd, said = hold_cpu_latency(str(tmp_path / "missing"))
    assert fd is None and said.startswith("not held") and "missing" in said
