"""Shared fixtures: a real JACK server (dummy backend) for audio tests, a socat pty pair for
serial tests, a small dataset of harmonic tones for training tests."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time

import numpy as np
import pytest

from pimodule.core import features
from pimodule.device.jackdummy import dummy_jack_server, stop_process

JACK_RATE_HZ = 48000
JACK_PERIOD = 128


@pytest.fixture(scope="session", autouse=True)
def compiled_engine():
    """The real-time engine compiled into numba's cache once, before any test starts a daemon
    (whose audio process then loads it in about a second instead of compiling it)."""
    from pimodule.device.rt.warm import warm

    warm()


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
    proc = subprocess.Popen(
        ["socat", f"pty,raw,echo=0,link={a}", f"pty,raw,echo=0,link={b}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while not (a.exists() and b.exists()):
            if time.monotonic() > deadline or proc.poll() is not None:
                pytest.fail("socat did not create the pty pair")
            time.sleep(0.02)
        yield str(a), str(b)
    finally:
        stop_process(proc)


def _tone_dataset(n_examples: int, seed: int, seconds: float = 1.5, sr: int = 16000, hop: int = 64):
    rng = np.random.default_rng(seed)
    out = {k: [] for k in ("audio", "f0_hz", "loudness_db", "periodicity")}
    n = int(seconds * sr) // hop * hop
    t = np.arange(n) / sr
    for _ in range(n_examples):
        f0 = rng.uniform(150, 500) * 2 ** (0.3 * np.sin(2 * np.pi * 5 * t) / 12)
        phase = 2 * np.pi * np.cumsum(f0) / sr
        env = np.clip(np.sin(np.pi * t / seconds) * 2, 0, 1)
        x = (0.2 * env * sum(np.sin(k * phase) / k for k in range(1, 12))).astype(np.float32)
        f, p = features.yin_f0(x, sr, hop_size=hop)
        out["audio"].append(x)
        out["f0_hz"].append(f)
        out["periodicity"].append(p)
        out["loudness_db"].append(features.a_weighted_loudness_db(x, sr, hop_size=hop))
    return {k: np.stack(v).astype(np.float32) for k, v in out.items()}


@pytest.fixture(scope="session")
def tone_data(tmp_path_factory):
    """A small dataset folder of harmonic tones with vibrato (train + held_out)."""
    root = tmp_path_factory.mktemp("tones")
    np.savez(root / "train.npz", **_tone_dataset(6, seed=0))
    np.savez(root / "held_out.npz", **_tone_dataset(2, seed=1))
    (root / "dataset.json").write_text(json.dumps({"sample_rate": 16000, "hop_size": 64}))
    return root
