"""Shared fixtures: a real JACK server (dummy backend) for audio tests."""

from __future__ import annotations

import os
import shutil
import subprocess
import time

import pytest

from pimodule.runtime.jackdummy import dummy_jack_server, stop_process

JACK_RATE_HZ = 48000
JACK_PERIOD = 128


@pytest.fixture(scope="session")
def jack_server():
    """``jackd --no-realtime -d dummy -r 48000 -p 128`` under a private server name (the daemon's
    own :func:`dummy_jack_server`); PortAudio re-initialised to see it; stopped by PID in teardown."""
    for tool in ("jackd", "jack_wait", "jack_freewheel"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} not installed (apt install jackd2)")
    import sounddevice as sd

    with dummy_jack_server(JACK_RATE_HZ, JACK_PERIOD, name=f"pimodule-test-{os.getpid()}") as server:
        sd._terminate()
        sd._initialize()
        try:
            yield server
        finally:
            sd._terminate()  # before the server goes away
    time.sleep(0.1)
    sd._initialize()


@pytest.fixture()
def pty_pair(tmp_path):
    """Two linked pseudo-terminals from socat (the way a USB serial cable looks to both ends);
    socat stopped by its PID in teardown."""
    if shutil.which("socat") is None:
        pytest.skip("socat not installed")
    a, b = tmp_path / "ttyA", tmp_path / "ttyB"
    proc = subprocess.Popen(["socat", f"pty,raw,echo=0,link={a}", f"pty,raw,echo=0,link={b}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while not (a.exists() and b.exists()):
            if time.monotonic() > deadline or proc.poll() is not None:
                pytest.fail("socat did not create the pty pair")
            time.sleep(0.02)
        yield str(a), str(b)
    finally:
        stop_process(proc)
