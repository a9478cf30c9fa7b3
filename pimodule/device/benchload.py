"""The loads ``pimodule bench`` plays under: what else a module does while its voice plays.

- ``check``: the module's fx check (:class:`pimodule.device.fx.check.SubsetCheck` re-rendering and
  searching effect chains on one-second windows) running back to back in the control process;
- ``osc``: an OSC storm at the daemon's port (garbage, NaN and out-of-range values, valid
  controls and gains), a couple of thousand packets a second;
- ``swaps``: a model swap every second (two voices alternating through the model loader).

Each is a thread started and stopped with the daemon under test; none touches the audio process.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from pimodule.device.fx.cost import bench_check
from pimodule.device.io.osc_client import OscClient

LOADS = ("check", "osc", "swaps")
EXPORT = Path(__file__).resolve().parents[2] / "export"


class Load:
    def __init__(self, name: str, target, *args):
        self.name = name
        self.stop_event = threading.Event()
        self.count = 0
        self._thread = threading.Thread(target=target, args=(self, *args), name=f"bench-{name}", daemon=True)

    def start(self) -> Load:
        self._thread.start()
        return self

    def stop(self) -> int:
        self.stop_event.set()
        self._thread.join(30)
        return self.count


def _check(load: Load, model: Path) -> None:
    while not load.stop_event.is_set():
        bench_check(model, n_runs=1)
        load.count += 1


def _osc(load: Load, port: int) -> None:
    rng = np.random.default_rng(0)
    names = ["noise_gain_db", "harmonic_gain_db", "pitch_shift_semitones", "loudness_offset_db", "nope"]
    with OscClient("127.0.0.1", port) as c:
        while not load.stop_event.is_set():
            k = load.count % 5
            if k == 0:
                c.send_raw(rng.bytes(int(rng.integers(1, 200))))
            elif k == 1:
                c.send(f"/pimodule/control/{names[load.count % 5]}", float("nan"))
            elif k == 2:
                c.send(f"/pimodule/control/{names[load.count % 4]}", float(rng.uniform(-1e6, 1e6)))
            elif k == 3:
                c.send("/pimodule/gain", float(rng.uniform(-20, 0)))
            else:
                c.send("/pimodule/status/subscribe")
            load.count += 1
            if load.count % 20 == 0:
                load.stop_event.wait(0.01)  # about 2000 packets a second


def _swaps(load: Load, loader, names: tuple[str, str]) -> None:
    while not load.stop_event.wait(1.0):
        loader.request(names[load.count % 2])
        load.count += 1


def start(kinds, daemon, voices: tuple[str, str], check_model: Path = EXPORT / "fx-dry.onnx") -> list[Load]:
    loads = []
    for kind in kinds:
        if kind == "check":
            loads.append(Load(kind, _check, check_model).start())
        elif kind == "osc":
            loads.append(Load(kind, _osc, daemon.osc.port).start())
        elif kind == "swaps":
            loads.append(Load(kind, _swaps, daemon.loader, voices).start())
        else:
            raise ValueError(f"unknown load {kind!r}; loads: {', '.join(LOADS)}")
    return loads
