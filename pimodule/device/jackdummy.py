"""A private JACK server on the dummy backend (no sound card needed), for ``pimodule run
--jack-dummy`` and ``make demo``: the daemon then plays through a real audio server anywhere.

The server dies with the process that started it, however that process dies (``kill -9``
included): the child asks the kernel for a SIGTERM when its parent goes
(``prctl(PR_SET_PDEATHSIG)``, set between fork and exec). The kernel sends it when the *thread*
that started the server exits, so start it from the main thread (as ``pimodule run`` does)."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import logging
import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass

log = logging.getLogger(__name__)


class JackUnavailable(RuntimeError):
    """jackd is not installed or did not start."""


def stop_process(proc: subprocess.Popen, timeout_s: float = 5.0) -> None:
    """Terminate an external process we started; kill it if it does not exit in time."""
    proc.terminate()
    try:
        proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout_s)


PR_SET_PDEATHSIG = 1


def _die_with_parent(parent_pid: int, sig: int = signal.SIGTERM, cpus: frozenset[int] | None = None):
    """A ``preexec_fn``: the child gets ``sig`` when its parent dies (Linux); if the parent is
    already gone by now, the child exits at once. ``cpus``: the child runs on these CPUs."""
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)

    def preexec() -> None:
        libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
        if os.getppid() != parent_pid:  # the parent died before the prctl took effect
            os._exit(1)
        if cpus:
            os.sched_setaffinity(0, cpus)

    return preexec


@dataclass(frozen=True)
class JackServer:
    name: str
    pid: int
    rate_hz: int
    period: int
    env: dict

    def freewheel(self, on: bool) -> None:
        """``jack_freewheel yes|no``: process cycles as fast as the clients allow (deterministic)."""
        subprocess.run(
            ["jack_freewheel", "yes" if on else "no"], env=self.env, check=True, capture_output=True, timeout=10
        )

    def device_index(self) -> int:
        """The sounddevice index of the JACK device (PortAudio must already see this server)."""
        import sounddevice as sd

        for i, dev in enumerate(sd.query_devices()):
            if "JACK" in sd.query_hostapis(dev["hostapi"])["name"] and dev["max_output_channels"] > 0:
                return i
        raise JackUnavailable("PortAudio sees no JACK device")


@contextlib.contextmanager
def dummy_jack_server(
    rate_hz: int = 48000,
    period: int = 128,
    name: str | None = None,
    realtime: bool = False,
    cpus: frozenset[int] | None = None,
) -> Iterator[JackServer]:
    """Start ``jackd --no-realtime -d dummy`` (``realtime``: ``jackd -R -P 80``, its threads and
    its clients' process threads at SCHED_FIFO, as a sound card's server runs; at jackd's default
    priority 10 its driver thread missed its wake-up more often under load), make it this process's
    default server (``JACK_DEFAULT_SERVER``), yield it; stop it by PID on exit. ``cpus``: the
    server runs on these CPUs (the audio core, beside the audio process: device/cpus.py)."""
    for tool in ("jackd", "jack_wait"):
        if shutil.which(tool) is None:
            raise JackUnavailable(f"{tool} not found (apt install jackd2)")
    name = name or f"pimodule-{os.getpid()}"
    env = dict(os.environ, JACK_DEFAULT_SERVER=name, JACK_NO_AUDIO_RESERVATION="1")
    log_file = tempfile.TemporaryFile(mode="w+")  # a file, not a pipe: jackd must never block on it
    proc = subprocess.Popen(
        [
            "jackd",
            "-n",
            name,
            *(["-R", "-P", "80"] if realtime else ["--no-realtime"]),
            "-d",
            "dummy",
            "-r",
            str(rate_hz),
            "-p",
            str(period),
        ],
        env=env,
        stdout=log_file,
        stderr=subprocess.STDOUT,
        preexec_fn=_die_with_parent(os.getpid(), cpus=cpus),  # noqa: PLW1509 - started before the daemon's threads
    )
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
        yield JackServer(name, proc.pid, rate_hz, period, env)
    finally:
        if previous is None:
            os.environ.pop("JACK_DEFAULT_SERVER", None)
        else:
            os.environ["JACK_DEFAULT_SERVER"] = previous
        stop_process(proc)
        log_file.close()


def jack_device_index(server: JackServer) -> int:
    """The JACK device's index after re-initialising PortAudio so that it sees the new server."""
    import sounddevice as sd

    sd._terminate()
    sd._initialize()
    return server.device_index()
