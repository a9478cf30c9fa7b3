"""Shared fixtures: a real JACK server (dummy backend) for audio tests."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from dataclasses import dataclass

import pytest

JACK_RATE_HZ = 48000
JACK_PERIOD = 128


@dataclass
class JackServer:
    name: str
    pid: int
    rate_hz: int
    period: int
    env: dict

    def freewheel(self, on: bool) -> None:
        """``jack_freewheel yes|no``: process cycles as fast as the clients allow (deterministic)."""
        subprocess.run(["jack_freewheel", "yes" if on else "no"], env=self.env, check=True,
                       capture_output=True, timeout=10)

    def device_index(self) -> int:
        import sounddevice as sd

        for i, dev in enumerate(sd.query_devices()):
            if "JACK" in sd.query_hostapis(dev["hostapi"])["name"] and dev["max_output_channels"] > 0:
                return i
        raise RuntimeError("sounddevice sees no JACK device")


@pytest.fixture(scope="session")
def jack_server(tmp_path_factory):
    """``jackd --no-realtime -d dummy -r 48000 -p 128`` under a private server name; PortAudio
    re-initialised to see it; stopped by PID in teardown."""
    for tool in ("jackd", "jack_wait", "jack_freewheel"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} not installed (apt install jackd2)")
    import sounddevice as sd

    name = f"pimodule-test-{os.getpid()}"
    env = dict(os.environ, JACK_DEFAULT_SERVER=name, JACK_NO_AUDIO_RESERVATION="1")
    previous = os.environ.get("JACK_DEFAULT_SERVER")
    os.environ["JACK_DEFAULT_SERVER"] = name
    log_path = tmp_path_factory.mktemp("jack") / "jackd.log"
    log_file = open(log_path, "w")
    proc = subprocess.Popen(
        ["jackd", "-n", name, "--no-realtime", "-d", "dummy", "-r", str(JACK_RATE_HZ), "-p", str(JACK_PERIOD)],
        env=env, stdout=log_file, stderr=subprocess.STDOUT)
    try:
        ok = subprocess.run(["jack_wait", "-w", "-t", "15"], env=env, capture_output=True, timeout=30)
        if ok.returncode != 0 or proc.poll() is not None:
            raise RuntimeError(f"jackd did not start: {log_path.read_text()[-2000:]}")
        sd._terminate()
        sd._initialize()
        yield JackServer(name, proc.pid, JACK_RATE_HZ, JACK_PERIOD, env)
    finally:
        try:
            sd._terminate()
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
            log_file.close()
            if previous is None:
                os.environ.pop("JACK_DEFAULT_SERVER", None)
            else:
                os.environ["JACK_DEFAULT_SERVER"] = previous
            time.sleep(0.1)
            sd._initialize()
