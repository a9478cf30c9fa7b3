"""A private JACK server on the dummy backend (no sound card needed), for ``pimodule run
--jack-dummy`` and ``make demo``: the daemon then plays through a real audio server anywhere."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import subprocess
import tempfile
from typing import Iterator

log = logging.getLogger(__name__)


class JackUnavailable(RuntimeError):
    """jackd is not installed or did not start."""


@contextlib.contextmanager
def dummy_jack_server(rate_hz: int = 48000, period: int = 128, name: str | None = None) -> Iterator[str]:
    """Start ``jackd --no-realtime -d dummy``, make it this process's default server
    (``JACK_DEFAULT_SERVER``), yield its name; stop it by PID on exit."""
    for tool in ("jackd", "jack_wait"):
        if shutil.which(tool) is None:
            raise JackUnavailable(f"{tool} not found (apt install jackd2)")
    name = name or f"pimodule-{os.getpid()}"
    env = dict(os.environ, JACK_DEFAULT_SERVER=name, JACK_NO_AUDIO_RESERVATION="1")
    log_file = tempfile.TemporaryFile(mode="w+")  # a file, not a pipe: jackd must never block on it
    proc = subprocess.Popen(["jackd", "-n", name, "--no-realtime", "-d", "dummy", "-r", str(rate_hz),
                             "-p", str(period)], env=env, stdout=log_file, stderr=subprocess.STDOUT)
    previous = os.environ.get("JACK_DEFAULT_SERVER")
    try:
        try:
            ok = subprocess.run(["jack_wait", "-w", "-t", "10"], env=env, capture_output=True, timeout=20)
        except subprocess.TimeoutExpired:
            ok = None
        if ok is None or ok.returncode != 0 or proc.poll() is not None:
            log_file.seek(0)
            raise JackUnavailable(f"jackd (dummy backend) did not start: {log_file.read()[-500:]}")
        os.environ["JACK_DEFAULT_SERVER"] = name
        log.info("JACK dummy server %r running (pid %d, %d Hz, period %d)", name, proc.pid, rate_hz, period)
        yield name
    finally:
        if previous is None:
            os.environ.pop("JACK_DEFAULT_SERVER", None)
        else:
            os.environ["JACK_DEFAULT_SERVER"] = previous
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        log_file.close()


def jack_device_index() -> int:
    """The sounddevice index of the JACK device (PortAudio re-initialised to see a new server)."""
    import sounddevice as sd

    sd._terminate()
    sd._initialize()
    for i, dev in enumerate(sd.query_devices()):
        if "JACK" in sd.query_hostapis(dev["hostapi"])["name"] and dev["max_output_channels"] > 0:
            return i
    raise JackUnavailable("PortAudio sees no JACK device")
