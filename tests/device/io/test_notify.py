"""sd_notify messages reach a real AF_UNIX datagram socket; nothing happens without one."""

from __future__ import annotations

import socket
import time

import pytest

from pimodule.device.io.notify import Notifier, Watchdog, watchdog_interval_s


@pytest.fixture()
def notify_socket(tmp_path, monkeypatch):
    path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(2.0)
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    yield sock
    sock.close()


def test_ready_status_watchdog_stopping(notify_socket):
    n = Notifier()
    assert n.enabled
    assert n.ready("playing violin\n at 48 kHz")
    assert notify_socket.recv(4096) == b"READY=1\nSTATUS=playing violin at 48 kHz"
    n.status("load crusher")
    assert notify_socket.recv(4096) == b"STATUS=load crusher"
    n.watchdog()
    assert notify_socket.recv(4096) == b"WATCHDOG=1"
    n.stopping()
    assert notify_socket.recv(4096) == b"STOPPING=1"


def test_noop_without_notify_socket(monkeypatch):
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    n = Notifier()
    assert not n.enabled
    assert n.ready() is False and n.sent == []
    dog = Watchdog(n, interval_s=0.01)
    dog.start()
    assert dog._thread is None


def test_watchdog_pings_only_while_healthy(notify_socket):
    healthy = {"ok": True}
    dog = Watchdog(Notifier(), is_healthy=lambda: healthy["ok"], interval_s=0.02)
    dog.start()
    try:
        assert notify_socket.recv(4096) == b"WATCHDOG=1"
        healthy["ok"] = False
        end = time.monotonic() + 5.0
        while dog.withheld < 2 and time.monotonic() < end:
            time.sleep(0.01)
        assert dog.withheld >= 2
    finally:
        dog.stop()


def test_interval_from_environment():
    assert watchdog_interval_s({"WATCHDOG_USEC": "10000000"}) == 5.0
    assert watchdog_interval_s({}) is None
    assert watchdog_interval_s({"WATCHDOG_USEC": "junk"}) is None
