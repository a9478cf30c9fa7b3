"""Triggers count edges, buttons give debounced short/long presses, gates and LED reach their pins."""

from __future__ import annotations

import time

import pytest

from pimodule.device.io.gpio import Buttons, FakeGpio, Outputs, Triggers
from pimodule.device.io.hardware import load_hardware


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture()
def cfg():
    return load_hardware().gpio


def test_triggers_are_pull_up_active_low_and_count_rising_jack_edges(cfg):
    gpio = FakeGpio()
    fired: list[int] = []
    trig = Triggers(gpio, cfg, on_trigger=fired.append)
    assert all(gpio.pull_up[p] for p in (4, 17, 14, 27))
    assert list(trig.active) == [0, 0, 0, 0]
    pin = cfg.trigger_pins[1]  # BCM 17
    for _ in range(3):
        gpio.drive(pin, False)  # jack high -> pin pulled low
        assert trig.active[1] == 1.0
        gpio.drive(pin, True)
    assert list(trig.counts) == [0, 3, 0, 0]
    assert fired == [1, 1, 1]
    assert trig.index("trig2") == 1


def test_pins_cannot_be_claimed_twice(cfg):
    gpio = FakeGpio()
    Triggers(gpio, cfg)
    with pytest.raises(RuntimeError, match="already set up"):
        Triggers(gpio, cfg)


def _step(buttons, clock, gpio, pin, level, dt_s):
    gpio.drive(pin, level)
    out = []
    end = clock.t + dt_s
    while clock.t < end:
        clock.t += 0.001
        out += buttons.poll()
    return out


def test_short_press_with_bounce(cfg):
    gpio, clock = FakeGpio(), Clock()
    got = []
    b = Buttons(gpio, cfg, on_event=got.append, clock=clock)
    pin = cfg.button_pins[0]
    # contact bounce shorter than the debounce time produces nothing
    for _ in range(5):
        assert _step(b, clock, gpio, pin, False, 0.001) == []
        assert _step(b, clock, gpio, pin, True, 0.001) == []
    _step(b, clock, gpio, pin, False, 0.100)  # press, held 100 ms
    assert b.pressed("button1")
    ev = _step(b, clock, gpio, pin, True, 0.020)
    assert [(e.name, e.kind) for e in ev] == [("button1", "short")]
    assert [e.kind for e in got] == ["short"] and len(b.events) == 1


def test_long_press_fires_once_while_held(cfg):
    gpio, clock = FakeGpio(), Clock()
    b = Buttons(gpio, cfg, clock=clock)
    pin = cfg.button_pins[2]  # BCM 24 = button3
    ev = _step(b, clock, gpio, pin, False, 0.550)
    assert ev == []
    ev = _step(b, clock, gpio, pin, False, 0.100)
    assert [(e.name, e.kind) for e in ev] == [("button3", "long")]
    ev = _step(b, clock, gpio, pin, False, 1.0) + _step(b, clock, gpio, pin, True, 0.020)
    assert ev == []  # no second long, no short on release


def test_button_thread_delivers_events(cfg):
    gpio = FakeGpio()
    b = Buttons(gpio, cfg)
    b.start()
    try:
        gpio.drive(cfg.button_pins[1], False)
        time.sleep(0.05)
        gpio.drive(cfg.button_pins[1], True)
        t_end = time.monotonic() + 5.0
        while not b.events and time.monotonic() < t_end:
            time.sleep(0.01)
    finally:
        b.stop()
    assert b.events and b.events[0].name == "button2" and b.events[0].kind == "short"


def test_gates_and_led(cfg):
    gpio = FakeGpio()
    out = Outputs(gpio, cfg)
    assert gpio.levels[12] is False and gpio.levels[26] is False
    out.set_gate(0, True)
    out.set_gate("gate2", True)
    out.set_gate("gate2", True)  # no second write
    out.set_led(True)
    assert gpio.levels[12] and gpio.levels[16] and gpio.levels[26]
    assert gpio.writes == [(12, True), (16, True), (26, True)]
    out.all_off()
    assert not any(gpio.levels[p] for p in (12, 16, 26))
    with pytest.raises(RuntimeError, match="not an output"):
        gpio.write(4, True)
