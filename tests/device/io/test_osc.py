"""The OSC server over real UDP sockets, with a real in-memory controller behind it."""

from __future__ import annotations

import socket
import struct
import time

import pytest

from pimodule.core.controls import DDSP_CONTROLS
from pimodule.core.params import ParamSpec, ParamTable
from pimodule.device.io.controller import MemoryController
from pimodule.device.io.osc import OscClient, OscConfig, OscServer, decode, encode


@pytest.fixture()
def ctl():
    other = ParamTable([ParamSpec("drive_db", "dB", 0.0, 30.0, 6.0)])
    return MemoryController(DDSP_CONTROLS, models={"violin": DDSP_CONTROLS, "crusher": other})


@pytest.fixture()
def server(ctl):
    srv = OscServer(ctl, OscConfig(port=0))
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture()
def client(server):
    with OscClient("127.0.0.1", server.port) as c:
        yield c


def _drain_until(client, address, timeout_s=3.0):
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        msg = client.receive(0.2)
        if msg is not None and msg[0] == address:
            return msg
    return None


def test_encoding_round_trip():
    data = encode("/pimodule/x", 1, 2.5, "s", True)
    assert data.startswith(b"/pimodule/x\x00")
    assert b",ifsT" in data
    assert decode(data) == [("/pimodule/x", [1, 2.5, "s", True])]


def test_ping_pong(client):
    assert client.request("/pimodule/ping", 7, expect="/pimodule/pong") == ("/pimodule/pong", [7])


def test_set_control_and_clamp_reply(client, server, ctl):
    client.request("/pimodule/ping", expect="/pimodule/pong")
    client.send("/pimodule/control/noise_gain_db", -12.0)
    client.send("/pimodule/control/pitch_shift_semitones", 99.0)
    addr, args = _drain_until(client, "/pimodule/control/pitch_shift_semitones")
    assert args == [24.0]
    client.request("/pimodule/ping", expect="/pimodule/pong")  # everything before it was handled
    assert ctl.values["noise_gain_db"] == -12.0
    assert ctl.values["pitch_shift_semitones"] == 24.0
    client.send("/pimodule/control/harmonic_gain_db", 3)  # an int is a number too
    client.request("/pimodule/ping", expect="/pimodule/pong")
    assert ctl.values["harmonic_gain_db"] == 3.0
    assert server.counters.clamped == 1


@pytest.mark.parametrize(
    "address,args,reason",
    [
        ("/pimodule/control/nope", [1.0], "unknown control"),
        ("/pimodule/control/noise_gain_db", ["loud"], "expected a number"),
        ("/pimodule/control/noise_gain_db", [1.0, 2.0], "expected one number"),
        ("/pimodule/control/noise_gain_db", [float("nan")], "not a finite"),
        ("/pimodule/control/noise_gain_db", [float("inf")], "not a finite"),
        ("/pimodule/mode", ["disco"], "mode must be one of"),
        ("/pimodule/mode", [3], "expected one string"),
        ("/pimodule/model/load", ["ghost"], "no model"),
        ("/pimodule/whatever", [], "unknown address"),
        ("/other/thing", [], "unknown address"),
        ("/pimodule/status/subscribe", [70000], "port must be"),
    ],
)
def test_bad_requests_get_error_replies(client, ctl, address, args, reason):
    before = dict(ctl.values)
    addr, err = client.request(address, *args, expect="/pimodule/error")
    assert err[0] == address and reason in err[1]
    assert ctl.values == before


def test_mode_gain_mute_models(client, ctl):
    assert client.request("/pimodule/mode", "transfer", expect="/pimodule/mode")[1] == ["transfer"]
    assert ctl.mode == "transfer"
    assert client.request("/pimodule/gain", 40.0, expect="/pimodule/gain")[1] == [12.0]
    assert ctl.gain_db == 12.0
    assert client.request("/pimodule/mute", 1, expect="/pimodule/mute")[1] == [1]
    assert ctl.mute is True
    assert client.request("/pimodule/model/list", expect="/pimodule/models")[1] == ["crusher", "violin"]
    assert client.request("/pimodule/model/load", "crusher", expect="/pimodule/model/loading")[1] == ["crusher"]
    assert ctl.model == "crusher"
    client.send("/pimodule/controls")
    spec = _drain_until(client, "/pimodule/controls/spec")
    assert spec[1] == ["drive_db", "dB", 0.0, 30.0, 6.0, "lin"]
    assert _drain_until(client, "/pimodule/controls/end")[1] == [1]


def test_controls_table_reply_round_trips(client):
    client.send("/pimodule/controls")
    specs = []
    while (msg := client.receive(2.0)) is not None and msg[0] != "/pimodule/controls/end":
        specs.append(ParamSpec(*msg[1][:6]))
    assert msg[1] == [4]
    got = ParamTable(specs)
    assert got.names == DDSP_CONTROLS.names
    assert [s.min for s in got] == [s.min for s in DDSP_CONTROLS]


def test_status_subscription_to_another_port(client, ctl):
    ctl.extra_status = {"cv": {"cv1": 1.5, "cv2": -0.25}, "callback_p99_us": 321.0, "xruns": 2}
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as listener:
        listener.bind(("127.0.0.1", 0))
        port = listener.getsockname()[1]
        listener.settimeout(0.2)
        seen: dict = {}
        end = time.monotonic() + 5.0
        while time.monotonic() < end and len(seen) < 9:
            if "/pimodule/status/subscribed" not in seen:
                client.send("/pimodule/status/subscribe", port, 30.0)
            try:
                addr, args = decode(listener.recvfrom(4096)[0])[0]
                seen[addr] = args
            except TimeoutError:
                pass
        assert seen["/pimodule/status/subscribed"] == [port, 30.0]
        assert seen["/pimodule/status/cv/cv1"] == [1.5]
        assert seen["/pimodule/status/callback_p99_us"] == [321.0]
        assert seen["/pimodule/status/xruns"] == [2]
        assert seen["/pimodule/status/model"] == ["violin"]
        assert seen["/pimodule/status/mode"] == ["synth"]
        end = time.monotonic() + 3.0
        while time.monotonic() < end:
            client.send("/pimodule/status/unsubscribe", port)
            try:
                while decode(listener.recvfrom(4096)[0])[0][0] != "/pimodule/status/unsubscribe":
                    pass
                break
            except TimeoutError:
                continue
        listener.settimeout(0.3)
        with pytest.raises(socket.timeout):  # nothing more after the unsubscribe ack
            for _ in range(1000):
                listener.recvfrom(4096)


def test_subscription_rate_is_bounded(server, client):
    client.request("/pimodule/status/subscribe", client.port, 1e9, expect="/pimodule/status/subscribed")
    ((_, period_s),) = [(k, s.period_s) for k, s in server._subs.items()]
    assert period_s == pytest.approx(1 / 30.0)


def test_garbage_oversized_and_bundles(client, server, ctl):
    client.request("/pimodule/ping", expect="/pimodule/pong")
    client.send_raw(b"\x00\x01garbage that is not OSC")
    assert "not an OSC packet" in _drain_until(client, "/pimodule/error")[1][1]
    client.send_raw(encode("/pimodule/ping", "x" * 5000))
    assert "larger than" in _drain_until(client, "/pimodule/error")[1][1]
    m1 = encode("/pimodule/control/noise_gain_db", -3.0)
    m2 = encode("/pimodule/mode", "fx")
    bundle = b"#bundle\x00" + struct.pack(">Q", 1)
    for m in (m1, m2):
        bundle += struct.pack(">i", len(m)) + m
    client.send_raw(bundle)
    assert _drain_until(client, "/pimodule/mode")[1] == ["fx"]
    assert ctl.values["noise_gain_db"] == -3.0
    assert server.counters.malformed == 2


def test_storm_is_survived_and_error_replies_are_rate_limited(client, server, ctl):
    client.request("/pimodule/ping", expect="/pimodule/pong")
    for i in range(3000):
        client.send("/pimodule/control/nope", float(i))
        if i % 3 == 0:
            client.send("/pimodule/control/loudness_offset_db", float(i % 20) - 10.0)
        if i % 500 == 0:
            client.send_raw(b"junk")
    assert client.request("/pimodule/ping", 1, expect="/pimodule/pong", timeout_s=20.0)
    n_errors = 0
    while (msg := client.receive(0.3)) is not None:
        n_errors += msg[0] == "/pimodule/error"
    assert server.counters.errors >= 100  # the kernel may drop some of the storm
    assert server.counters.errors_suppressed > 0
    assert n_errors < server.counters.errors
    assert -10.0 <= ctl.values["loudness_offset_db"] <= 9.0
    assert server._thread is not None and server._thread.is_alive()


def test_allow_list(ctl):
    with pytest.raises(ValueError, match="allow_hosts"):
        OscConfig(host="0.0.0.0")
    srv = OscServer(ctl, OscConfig(host="0.0.0.0", port=0, allow_hosts=("192.0.2.7",)))
    try:
        srv.handle_packet(encode("/pimodule/mode", "fx"), ("198.51.100.9", 5555))
        assert ctl.mode == "synth" and srv.counters.refused_host == 1
        srv.handle_packet(encode("/pimodule/mode", "fx"), ("192.0.2.7", 5555))
        assert ctl.mode == "fx"
    finally:
        srv.stop()


def _local_non_loopback_ip() -> str | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))  # no packet is sent; picks the outgoing interface
            ip = s.getsockname()[0]
        except OSError:
            return None
    return None if ip.startswith("127.") or ip == "0.0.0.0" else ip


def test_remote_host_over_real_socket(ctl):
    ip = _local_non_loopback_ip()
    if ip is None:
        pytest.skip("no non-loopback interface")
    srv = OscServer(ctl, OscConfig(host="0.0.0.0", port=0, allow_hosts=("192.0.2.7",)))
    srv.start()
    try:
        with OscClient(ip, srv.port) as c:
            for _ in range(5):
                c.send("/pimodule/mode", "fx")
            assert c.receive(0.5) is None
        deadline = time.monotonic() + 3.0
        while srv.counters.refused_host < 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert srv.counters.refused_host >= 1 and ctl.mode == "synth"
    finally:
        srv.stop()
    srv = OscServer(ctl, OscConfig(host="0.0.0.0", port=0, allow_hosts=(ip,)))
    srv.start()
    try:
        with OscClient(ip, srv.port) as c:
            assert c.request("/pimodule/mode", "fx", expect="/pimodule/mode")[1] == ["fx"]
    finally:
        srv.stop()


def test_reply_port_routes_replies(server, client):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as listener:
        listener.bind(("127.0.0.1", 0))
        port = listener.getsockname()[1]
        listener.settimeout(0.25)
        got = None
        for _ in range(20):
            client.send("/pimodule/reply/port", port)
            client.send("/pimodule/ping", 3)
            try:
                while got is None or got[0] != "/pimodule/pong":
                    got = decode(listener.recvfrom(4096)[0])[0]
                break
            except TimeoutError:
                continue
        assert got == ("/pimodule/pong", [3])


def test_async_error_goes_to_subscribers(server, client):
    client.request("/pimodule/status/subscribe", client.port, 0.2, expect="/pimodule/status/subscribed")
    server.notify_error("/pimodule/model/load", "bad.onnx: NaN output")
    assert _drain_until(client, "/pimodule/error")[1] == ["/pimodule/model/load", "bad.onnx: NaN output"]


def test_osc_tool_send_prints_replies(server, capsys):
    from pimodule.device.io.osc_tool import main

    for _ in range(5):  # the first datagram can be lost
        main(["--port", str(server.port), "--send", "/pimodule/ping", "4", "x", "--wait", "0.3"])
        out = capsys.readouterr().out
        if out:
            break
    assert out.strip() == "/pimodule/pong 4 x"


def test_external_cv_values(client, ctl):
    client.send("/pimodule/cv/cv1", 1.25)
    assert client.request("/pimodule/cv/cv2", 50.0, expect="/pimodule/cv/cv2")[1] == [10.0]
    assert ctl.cv["cv1"] == 1.25 and ctl.cv["cv2"] == 10.0
    addr, err = client.request("/pimodule/cv/cv9", 1.0, expect="/pimodule/error")
    assert err[0] == "/pimodule/cv/cv9" and "no CV input" in err[1]


def test_idle_server_sleeps_in_recvfrom(server):
    time.sleep(0.1)
    before = server.counters.wakeups
    time.sleep(1.0)
    assert server.counters.wakeups - before <= 8  # at most one idle timeout per 0.2 s (+ slack)
    assert server._thread.is_alive()


class _BrokenController(MemoryController):
    def set_mode(self, mode: str) -> None:
        raise RuntimeError("bug")

    set_cv = None  # type: ignore[assignment]  # a daemon that reads its own CV


def test_controller_bugs_and_missing_set_cv_are_answered():
    srv = OscServer(_BrokenController(), OscConfig(port=0))
    srv.start()
    try:
        with OscClient("127.0.0.1", srv.port) as c:
            err = c.request("/pimodule/mode", "fx", expect="/pimodule/error")[1]
            assert err == ["/pimodule/mode", "internal error: RuntimeError"]
            err = c.request("/pimodule/cv/cv1", 1.0, expect="/pimodule/error")[1]
            assert "reads its CV itself" in err[1]
            assert c.request("/pimodule/ping", expect="/pimodule/pong")
    finally:
        srv.stop()
