"""Shared fixtures: a real JACK server (dummy backend) for audio tests."""

from __future__ import annotations

import os
import shutil
import time

import pytest

from pimodule.runtime.jackdummy import dummy_jack_server

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
