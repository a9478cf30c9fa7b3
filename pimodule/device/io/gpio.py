"""Trigger inputs, buttons, gate outputs and the LED of the Terminal Tedium, by BCM pin.

Usage (daemon)::

    from pimodule.device.io.hardware import load_hardware
    from pimodule.device.io.gpio import Buttons, Outputs, RpiGpio, Triggers

    hw = load_hardware()
    gpio = RpiGpio()                                    # FakeGpio() in tests / off the Pi
    triggers = Triggers(gpio, hw.gpio)                  # edge-driven, no thread of its own
    buttons = Buttons(gpio, hw.gpio, on_event=handler)  # handler(ButtonEvent) off the audio thread
    buttons.start()                                     # ~200 Hz poll thread (debounce, long press)
    outs = Outputs(gpio, hw.gpio)
    ...
    # in the audio callback (plain reads of preallocated arrays, no locks):
    n = triggers.counts[0]            # rising triggers at jack 1 so far (compare with last seen)
    held = triggers.active[0]         # 1 while the trigger/gate at jack 1 is high
    outs.set_gate(0, True); outs.set_led(False)
    ...
    buttons.stop(); gpio.cleanup()

Electrical facts (hardware/README.md): triggers and buttons are pull-up inputs, active low (the
input transistor pulls the pin low while the jack is high / the button is pressed); gate outputs
and the LED are driven high for "on".

:class:`FakeGpio` keeps levels in memory; tests call ``fake.drive(pin, level)``, which fires edge
callbacks like RPi.GPIO's event thread does. Button timing uses an injectable ``clock`` (seconds).
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from pimodule.device.io.hardware import GpioConfig
from pimodule.device.io.worker import BackgroundThread

log = logging.getLogger(__name__)

EdgeCallback = Callable[[int], None]
BUTTON_POLL_HZ = 200.0
EVENT_QUEUE_LEN = 64


class GpioBackend(Protocol):
    """The few GPIO calls the module needs (BCM numbering; level True = high)."""

    def setup_input(self, pin: int, pull_up: bool) -> None: ...

    def setup_output(self, pin: int, initial: bool) -> None: ...

    def read(self, pin: int) -> bool: ...

    def write(self, pin: int, level: bool) -> None: ...

    def on_edge(self, pin: int, callback: EdgeCallback) -> None:
        """Call ``callback(pin)`` on every edge (both directions) of an input pin."""

    def cleanup(self) -> None: ...


class FakeGpio:
    """GPIO in memory. ``drive(pin, level)`` is the outside world changing an input."""

    def __init__(self) -> None:
        self.levels: dict[int, bool] = {}
        self.modes: dict[int, str] = {}  # pin -> "in" | "out"
        self.pull_up: dict[int, bool] = {}
        self.callbacks: dict[int, list[EdgeCallback]] = {}
        self.writes: list[tuple[int, bool]] = []

    def setup_input(self, pin: int, pull_up: bool) -> None:
        self._claim(pin, "in")
        self.pull_up[pin] = pull_up
        self.levels[pin] = pull_up  # floating input rests at its pull

    def setup_output(self, pin: int, initial: bool) -> None:
        self._claim(pin, "out")
        self.levels[pin] = bool(initial)

    def _claim(self, pin: int, mode: str) -> None:
        if pin in self.modes:
            raise RuntimeError(f"BCM pin {pin} already set up as {self.modes[pin]}")
        self.modes[pin] = mode

    def read(self, pin: int) -> bool:
        if pin not in self.modes:
            raise RuntimeError(f"BCM pin {pin} not set up")
        return self.levels[pin]

    def write(self, pin: int, level: bool) -> None:
        if self.modes.get(pin) != "out":
            raise RuntimeError(f"BCM pin {pin} is not an output")
        self.levels[pin] = bool(level)
        self.writes.append((pin, bool(level)))

    def on_edge(self, pin: int, callback: EdgeCallback) -> None:
        if self.modes.get(pin) != "in":
            raise RuntimeError(f"BCM pin {pin} is not an input")
        self.callbacks.setdefault(pin, []).append(callback)

    def drive(self, pin: int, level: bool) -> None:
        """The outside world sets an input's level; edge callbacks fire on a change."""
        if self.modes.get(pin) != "in":
            raise RuntimeError(f"BCM pin {pin} is not an input")
        level = bool(level)
        if self.levels[pin] == level:
            return
        self.levels[pin] = level
        for cb in self.callbacks.get(pin, []):
            cb(pin)

    def cleanup(self) -> None:
        self.modes.clear()
        self.callbacks.clear()


class RpiGpio:
    """The real pins through RPi.GPIO (imported here, so only on a Pi)."""

    def __init__(self) -> None:
        import RPi.GPIO as GPIO  # noqa: N814,PLC0415

        self._g = GPIO
        GPIO.setwarnings(False)
        GPIO.setmode(GPIO.BCM)

    def setup_input(self, pin: int, pull_up: bool) -> None:
        g = self._g
        g.setup(pin, g.IN, pull_up_down=g.PUD_UP if pull_up else g.PUD_DOWN)

    def setup_output(self, pin: int, initial: bool) -> None:
        g = self._g
        g.setup(pin, g.OUT, initial=g.HIGH if initial else g.LOW)

    def read(self, pin: int) -> bool:
        return bool(self._g.input(pin))

    def write(self, pin: int, level: bool) -> None:
        self._g.output(pin, self._g.HIGH if level else self._g.LOW)

    def on_edge(self, pin: int, callback: EdgeCallback) -> None:
        self._g.add_event_detect(pin, self._g.BOTH, callback=callback)

    def cleanup(self) -> None:
        self._g.cleanup()


class Triggers:
    """Pull-up, active-low trigger inputs; counts rising edges at the jack (pin falling)."""

    def __init__(self, backend: GpioBackend, cfg: GpioConfig, on_trigger: Callable[[int], None] | None = None):
        self.backend = backend
        self.names = tuple(p.name for p in cfg.triggers)
        self.pins = cfg.trigger_pins
        self.counts = np.zeros(len(self.pins), dtype=np.int64)  # lock-free hand-off
        self.active = np.zeros(len(self.pins), dtype=np.float64)  # 1.0 while the jack is high
        self._on_trigger = on_trigger
        self._slot = {pin: i for i, pin in enumerate(self.pins)}
        for pin in self.pins:
            backend.setup_input(pin, pull_up=True)
            self.active[self._slot[pin]] = 0.0 if backend.read(pin) else 1.0
            backend.on_edge(pin, self._edge)

    def _edge(self, pin: int) -> None:
        i = self._slot[pin]
        is_active = not self.backend.read(pin)  # active low
        was_active = self.active[i] > 0.5
        self.active[i] = 1.0 if is_active else 0.0
        if is_active and not was_active:
            self.counts[i] += 1
            if self._on_trigger is not None:
                self._on_trigger(i)

    def index(self, name: str) -> int:
        return self.names.index(name)


@dataclass(frozen=True)
class ButtonEvent:
    name: str
    index: int
    kind: str  # "short" (released before long_press_ms) or "long" (held past it; fires once)
    time_s: float


class _ButtonState:
    __slots__ = ("stable_pressed", "raw_pressed", "raw_since", "pressed_at", "long_sent")

    def __init__(self) -> None:
        self.stable_pressed = False
        self.raw_pressed = False
        self.raw_since = 0.0
        self.pressed_at = 0.0
        self.long_sent = False


class Buttons(BackgroundThread):
    """Debounced short/long presses of pull-up, active-low buttons, by polling the levels.

    A level change counts once it has been stable for ``debounce_ms``. "long" fires while the
    button is still held, once ``long_press_ms`` passed; releasing before that gives "short".
    Events go to ``on_event`` (called from the polling thread) and to the ``events`` deque.
    """

    def __init__(
        self,
        backend: GpioBackend,
        cfg: GpioConfig,
        on_event: Callable[[ButtonEvent], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        poll_hz: float = BUTTON_POLL_HZ,
    ):
        self.backend = backend
        self.names = tuple(p.name for p in cfg.buttons)
        self.pins = cfg.button_pins
        self.debounce_s = cfg.debounce_ms / 1000.0
        self.long_press_s = cfg.long_press_ms / 1000.0
        self.events: deque[ButtonEvent] = deque(maxlen=EVENT_QUEUE_LEN)
        self._on_event = on_event
        self._clock = clock
        self._poll_s = 1.0 / poll_hz
        self._state = [_ButtonState() for _ in self.pins]
        super().__init__("pimodule-buttons")
        for pin in self.pins:
            backend.setup_input(pin, pull_up=True)

    def poll(self) -> list[ButtonEvent]:
        """Read every button once, advance the debounce/long-press logic, return new events."""
        now = self._clock()
        out: list[ButtonEvent] = []
        for i, (pin, st) in enumerate(zip(self.pins, self._state)):
            pressed = not self.backend.read(pin)
            if pressed != st.raw_pressed:
                st.raw_pressed = pressed
                st.raw_since = now
            if st.raw_pressed != st.stable_pressed and now - st.raw_since >= self.debounce_s:
                st.stable_pressed = st.raw_pressed
                if st.stable_pressed:
                    st.pressed_at = st.raw_since
                    st.long_sent = False
                elif not st.long_sent:
                    out.append(ButtonEvent(self.names[i], i, "short", now))
            if st.stable_pressed and not st.long_sent and now - st.pressed_at >= self.long_press_s:
                st.long_sent = True
                out.append(ButtonEvent(self.names[i], i, "long", now))
        for ev in out:
            self.events.append(ev)
            if self._on_event is not None:
                self._on_event(ev)
        return out

    def pressed(self, name: str) -> bool:
        return self._state[self.names.index(name)].stable_pressed

    def _run(self) -> None:
        while not self._stop.wait(self._poll_s):
            try:
                self.poll()
            except Exception:  # a handler's bug must not kill the button thread
                log.exception("button poll failed")


class Outputs:
    """Gate outputs and the LED (driven high for on); all start low."""

    def __init__(self, backend: GpioBackend, cfg: GpioConfig):
        self.backend = backend
        self.gate_names = tuple(p.name for p in cfg.gates)
        self.gate_pins = cfg.gate_pins
        self.led_pin = cfg.led.pin
        self.gates = np.zeros(len(self.gate_pins), dtype=bool)
        self.led = False
        for pin in (*self.gate_pins, self.led_pin):
            backend.setup_output(pin, initial=False)

    def set_gate(self, gate: int | str, on: bool) -> None:
        i = self.gate_names.index(gate) if isinstance(gate, str) else int(gate)
        on = bool(on)
        if self.gates[i] != on:  # write only on change
            self.backend.write(self.gate_pins[i], on)
            self.gates[i] = on

    def set_led(self, on: bool) -> None:
        on = bool(on)
        if self.led != on:
            self.backend.write(self.led_pin, on)
            self.led = on

    def all_off(self) -> None:
        for i in range(len(self.gate_pins)):
            self.set_gate(i, False)
        self.set_led(False)
