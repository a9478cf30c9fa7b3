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
from pimodule.device.io.osc_args import Refused
from pimodule.device.io.osc_client import Signer, load_key, make_key


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
        while time.monotonic() < end and not {
            "/pimodule/status/cv/cv1",
            "/pimodule/status/control/noise_gain_db",
        } <= set(seen):
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
        # what the Pd panel follows: every control's value now, gain, the model list, swaps
        assert seen["/pimodule/status/control/noise_gain_db"] == [0.0]
        assert seen["/pimodule/status/gain_db"] == [0.0]
        assert seen["/pimodule/status/models"] == ["crusher", "violin"]
        assert seen["/pimodule/status/swaps"] == [0]
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


def test_allow_list(ctl, tmp_path):
    with pytest.raises(ValueError, match="allow_hosts"):
        OscConfig(host="0.0.0.0")
    key_file = make_key(tmp_path / "osc.key")
    srv = OscServer(ctl, OscConfig(host="0.0.0.0", port=0, allow_hosts=("192.0.2.7",), key_file=str(key_file)))
    try:
        signer = Signer(load_key(key_file))
        signer.nonce = srv.nonce
        srv.handle_packet(signer.wrap(encode("/pimodule/mode", "fx")), ("198.51.100.9", 5555))
        assert ctl.mode == "synth" and srv.counters.refused_host == 1  # not allowed: dropped, signed or not
        srv.handle_packet(encode("/pimodule/mode", "fx"), ("192.0.2.7", 5555))
        assert ctl.mode == "synth" and srv.counters.unsigned_remote == 1  # allowed host, unsigned
        srv.handle_packet(signer.wrap(encode("/pimodule/mode", "fx")), ("192.0.2.7", 5555))
        assert ctl.mode == "fx" and srv.counters.auth_ok == 1
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


def test_remote_host_over_real_socket(ctl, tmp_path):
    ip = _local_non_loopback_ip()
    if ip is None:
        pytest.skip("no non-loopback interface")
    key_file = make_key(tmp_path / "osc.key")
    srv = OscServer(ctl, OscConfig(host="0.0.0.0", port=0, allow_hosts=("192.0.2.7",), key_file=str(key_file)))
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
    srv = OscServer(ctl, OscConfig(host="0.0.0.0", port=0, allow_hosts=(ip,), key_file=str(key_file)))
    srv.start()
    try:
        with OscClient(ip, srv.port) as c:  # allowed but unsigned: refused, with the reason
            err = c.request("/pimodule/mode", "fx", expect="/pimodule/error")[1]
            assert "must be signed" in err[1] and ctl.mode == "synth"
        with OscClient(ip, srv.port, key=load_key(key_file)) as c:
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


def test_status_repeats_the_latest_refusal(server, client):
    """A client that missed a /pimodule/error datagram still reads what was refused, and why."""
    client.request("/pimodule/status/subscribe", client.port, 30.0, expect="/pimodule/status/subscribed")
    errors = _drain_until(client, "/pimodule/status/errors")
    assert errors[1] == [0]
    assert server.last_error is None  # nothing refused yet: no last_error field
    client.request("/pimodule/control/nope", 1.0, expect="/pimodule/error")
    got = _drain_until(client, "/pimodule/status/last_error")
    assert got[1][0] == "/pimodule/control/nope" and "unknown control" in got[1][1]
    server.notify_error("/pimodule/model/load", "bad.onnx: NaN output")  # asynchronous ones too
    end = time.monotonic() + 3.0
    while time.monotonic() < end and got[1] != ["/pimodule/model/load", "bad.onnx: NaN output"]:
        got = _drain_until(client, "/pimodule/status/last_error")
    assert got[1] == ["/pimodule/model/load", "bad.onnx: NaN output"]


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


def _int64_ping(value: int) -> bytes:
    return b"/pimodule/ping\x00\x00,h\x00\x00" + struct.pack(">q", value)


def _double_ping(value: float) -> bytes:
    return b"/pimodule/ping\x00\x00,d\x00\x00" + struct.pack(">d", value)


def test_ping_with_int64_or_huge_double_is_refused_not_a_traceback(client, server, caplog):
    client.request("/pimodule/ping", expect="/pimodule/pong")
    for data, why in ((_int64_ping(2**40), "does not fit int32"), (_double_ping(1e300), "not a finite float32")):
        client.send_raw(data)
        err = _drain_until(client, "/pimodule/error")
        assert err[1][0] == "/pimodule/ping" and why in err[1][1]
    # values that fit are converted and echoed faithfully
    client.send_raw(_int64_ping(-7))
    assert _drain_until(client, "/pimodule/pong")[1] == [-7]
    client.send_raw(_double_ping(0.5))
    assert _drain_until(client, "/pimodule/pong")[1] == [0.5]
    for _ in range(2000):
        client.send_raw(_int64_ping(2**62))
    client.request("/pimodule/ping", 1, expect="/pimodule/pong", timeout_s=20)
    assert server.counters.unencodable == 0 and server.counters.internal == 0
    assert "Traceback" not in caplog.text and len(caplog.records) < 20


def test_subscriber_slots_are_limited_per_host(ctl):
    srv = OscServer(ctl, OscConfig(host="0.0.0.0", port=0, allow_hosts=("192.0.2.7", "192.0.2.8")))
    sent = []
    srv._send = lambda addr, address, *args: sent.append((addr, address, args)) or True  # no network
    for port in range(10000, 10003):
        srv._dispatch("/pimodule/status/subscribe", [port], ("192.0.2.7", 5000))
    with pytest.raises(Refused, match="max 3 per host"):
        srv._dispatch("/pimodule/status/subscribe", [10003], ("192.0.2.7", 5000))
    # other hosts: at most max_subscribers - per_host remote slots in all (5) ...
    for port in range(10000, 10002):
        srv._dispatch("/pimodule/status/subscribe", [port], ("192.0.2.8", 5000))
    with pytest.raises(Refused, match="kept for this one"):
        srv._dispatch("/pimodule/status/subscribe", [10002], ("192.0.2.8", 5000))
    assert len(srv.subscribers) == 5
    # ... so the module's own Pd panel (loopback) still gets its slots
    for port in (9001, 9002, 9003):
        srv._dispatch("/pimodule/status/subscribe", [port], ("127.0.0.1", 40000))
    assert len(srv.subscribers) == 8
    # renewing is not a new slot
    srv._dispatch("/pimodule/status/subscribe", [9001, 2.0], ("127.0.0.1", 40000))
    srv.stop()


def test_unsubscribe_only_your_own(server, ctl):
    with OscClient("127.0.0.1", server.port) as owner, OscClient("127.0.0.1", server.port) as other:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as listener:
            listener.bind(("127.0.0.1", 0))
            port = listener.getsockname()[1]
            owner.send("/pimodule/status/subscribe", port, 1.0)
            deadline = time.monotonic() + 5
            while ("127.0.0.1", port) not in server.subscribers and time.monotonic() < deadline:
                time.sleep(0.02)
            err = other.request("/pimodule/status/unsubscribe", port, expect="/pimodule/error")[1]
            assert "not your subscription" in err[1]
            assert ("127.0.0.1", port) in server.subscribers
            owner.send("/pimodule/status/unsubscribe", port)
            deadline = time.monotonic() + 5
            while ("127.0.0.1", port) in server.subscribers and time.monotonic() < deadline:
                time.sleep(0.02)
            assert ("127.0.0.1", port) not in server.subscribers


@pytest.mark.parametrize(
    "name",
    ["../violin", "/etc/passwd", "violin.onnx", "evil\n", "Violin", "-x", "a" * 65, "", "vi olin"],
)
@pytest.mark.parametrize("address", ["/pimodule/model/load", "/pimodule/fx/model"])
def test_models_are_named_never_paths(client, ctl, address, name):
    err = client.request(address, name, expect="/pimodule/error")[1]
    assert err[0] == address and "models are named" in err[1]
    assert ctl.model == "violin" and ctl.fx_model == "fx"


def test_names_that_follow_the_rule_reach_the_controller(client, ctl):
    assert client.request("/pimodule/fx/model", "fx-dry", expect="/pimodule/fx/loading")[1] == ["fx-dry"]
    assert ctl.fx_model == "fx-dry"
    err = client.request("/pimodule/model/load", "ghost_2", expect="/pimodule/error")[1]
    assert "no model 'ghost_2'" in err[1]


class _SlowLoader(MemoryController):
    """A controller whose load_model takes 1.5 s (a daemon that reads and checks files)."""

    def __init__(self):
        super().__init__(DDSP_CONTROLS, models={f"m{i}": DDSP_CONTROLS for i in range(30)})
        self.loads: list[str] = []

    def load_model(self, name: str) -> None:
        time.sleep(1.5)
        self.loads.append(name)
        super().load_model(name)


def test_loads_run_off_the_osc_thread_latest_wins():
    ctl = _SlowLoader()
    srv = OscServer(ctl, OscConfig(port=0))
    srv.start()
    try:
        with OscClient("127.0.0.1", srv.port) as c:
            c.request("/pimodule/ping", expect="/pimodule/pong")
            for i in range(30):
                c.send("/pimodule/model/load", f"m{i}")
            t0 = time.monotonic()
            c.request("/pimodule/ping", 2, expect="/pimodule/pong", timeout_s=1.0)
            assert time.monotonic() - t0 < 1.0  # the OSC thread did not wait for the loads
            assert srv.wait_requests(10.0)
            deadline = time.monotonic() + 5
            while ctl.model != "m29" and time.monotonic() < deadline:
                time.sleep(0.05)
        assert ctl.model == "m29"  # the last request won
        assert len(ctl.loads) <= 3 and srv.counters.superseded >= 27  # the rest were coalesced
    finally:
        srv.stop()


def test_external_cv_values_are_clamped_and_named(client, ctl):
    assert client.request("/pimodule/cv/pot3", -99, expect="/pimodule/cv/pot3")[1] == [-10.0]
    err = client.request("/pimodule/cv/../cv1", 1.0, expect="/pimodule/error")[1]
    assert "no CV input" in err[1] and ctl.cv["pot3"] == -10.0


def test_log_limiter_sums_up_what_it_dropped(caplog):
    import logging

    from pimodule.device.io.osc import LogLimiter

    now = [0.0]
    limiter = LogLimiter(logging.getLogger("test.limiter"), interval_s=10.0, burst=3, clock=lambda: now[0])
    with caplog.at_level(logging.INFO, logger="test.limiter"):
        for i in range(5000):
            try:
                raise RuntimeError(f"bug {i}")
            except RuntimeError as err:
                limiter.log(logging.ERROR, "RuntimeError", "failed", exc=err)
        now[0] = 11.0
        limiter.flush()
    lines = caplog.records
    assert len(lines) == 4  # three logged (one traceback: the first of its kind), one summary
    assert caplog.text.count("Traceback") == 1
    assert "4997 more log lines dropped" in lines[-1].getMessage() and "RuntimeError x4997" in lines[-1].getMessage()
