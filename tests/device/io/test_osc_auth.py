"""Signed OSC from other hosts (docs/osc.md "Authentication"): HMAC-SHA256 envelopes with the
module's nonce and a per-client counter; accepted, refused (no key, wrong key, stale nonce,
tampered), replayed; the relay Pd uses on a laptop, over real UDP."""

from __future__ import annotations

import threading

import pytest

from pimodule.core.controls import DDSP_CONTROLS
from pimodule.device.io.controller import MemoryController
from pimodule.device.io.osc import OscConfig, OscServer
from pimodule.device.io.osc_client import AUTH_ADDRESS, OscClient, Signer, decode, encode, load_key, make_key
from pimodule.device.io.osc_tool import Relay

REMOTE = ("192.0.2.7", 5555)  # an allow-listed LAN host (TEST-NET-1: packets handed in, not sent)


class _Capture:
    """The server's replies, captured instead of sent (the remote host does not exist)."""

    def __init__(self, srv: OscServer):
        self.sent: list[tuple[tuple[str, int], str, tuple]] = []
        srv._send = self._send

    def _send(self, addr, address, *args):
        encode(address, *args)  # every reply must be encodable
        self.sent.append((addr, address, args))
        return True

    def errors(self) -> list[str]:
        return [args[1] for _, address, args in self.sent if address == "/pimodule/error"]


@pytest.fixture()
def keyed(tmp_path):
    key_file = make_key(tmp_path / "osc.key")
    ctl = MemoryController(DDSP_CONTROLS, models={"violin": DDSP_CONTROLS, "cello": DDSP_CONTROLS})
    srv = OscServer(ctl, OscConfig(host="0.0.0.0", port=0, allow_hosts=(REMOTE[0],), key_file=str(key_file)))
    cap = _Capture(srv)
    signer = Signer(load_key(key_file))
    signer.nonce = srv.nonce
    yield srv, ctl, cap, signer, key_file
    srv.stop()


def test_key_file_is_made_private_and_long_enough(tmp_path):
    path = make_key(tmp_path / "k" / "osc.key")
    assert path.stat().st_mode & 0o777 == 0o600 and len(load_key(path)) == 64
    (tmp_path / "short.key").write_text("tooshort\n")
    with pytest.raises(ValueError, match="at least 16 bytes"):
        load_key(tmp_path / "short.key")


def test_signed_request_from_another_host_is_accepted(keyed):
    srv, ctl, cap, signer, _ = keyed
    srv.handle_packet(signer.wrap(encode("/pimodule/mode", "fx")), REMOTE)
    srv.handle_packet(signer.wrap(encode("/pimodule/control/noise_gain_db", -9.0)), REMOTE)
    assert ctl.mode == "fx" and ctl.values["noise_gain_db"] == -9.0
    assert (REMOTE, "/pimodule/mode", ("fx",)) in cap.sent
    assert srv.counters.auth_ok == 2 and cap.errors() == []


def test_unsigned_and_badly_signed_requests_are_refused(keyed, tmp_path):
    srv, ctl, cap, signer, _ = keyed
    srv.handle_packet(encode("/pimodule/mode", "fx"), REMOTE)
    other = Signer(load_key(make_key(tmp_path / "other.key")))  # someone with another key
    other.nonce = srv.nonce
    srv.handle_packet(other.wrap(encode("/pimodule/mode", "fx")), REMOTE)
    # a signed packet whose content was changed on the way
    data = bytearray(signer.wrap(encode("/pimodule/mode", "fx")))
    i = data.index(b"fx\x00")
    data[i : i + 2] = b"tr"
    srv.handle_packet(bytes(data), REMOTE)
    # the right key, but the nonce of an earlier run of the module
    old = Signer(signer.key)
    old.nonce = "0" * 32
    srv.handle_packet(old.wrap(encode("/pimodule/mode", "fx")), REMOTE)
    assert ctl.mode == "synth"
    errors = cap.errors()
    assert "must be signed" in errors[0]
    assert "bad signature" in errors[1] and "bad signature" in errors[2]
    assert "stale nonce" in errors[3]
    assert srv.counters.auth_refused == 3 and srv.counters.unsigned_remote == 1


def test_replayed_and_reordered_counters(keyed):
    srv, ctl, cap, signer, _ = keyed
    first = signer.wrap(encode("/pimodule/gain", -6.0))
    later = [signer.wrap(encode("/pimodule/gain", float(-k))) for k in range(1, 5)]
    srv.handle_packet(later[0], REMOTE)  # counters 2 and 5 arrive before 1: UDP reorders
    srv.handle_packet(later[3], REMOTE)
    srv.handle_packet(first, REMOTE)
    assert ctl.gain_db == -6.0 and cap.errors() == []
    srv.handle_packet(first, REMOTE)  # replayed: refused, nothing changes
    srv.handle_packet(later[3], REMOTE)
    assert ctl.gain_db == -6.0
    assert [e for e in cap.errors()] == ["replayed or too old (counter already used)"] * 2
    for _ in range(70):  # counter 2..4 are now more than 64 behind the highest
        signer.wrap(b"")
    srv.handle_packet(signer.wrap(encode("/pimodule/gain", -1.0)), REMOTE)
    srv.handle_packet(later[1], REMOTE)
    assert ctl.gain_db == -1.0 and cap.errors()[-1] == "replayed or too old (counter already used)"


def test_loopback_needs_no_key_and_a_module_without_key_refuses_remote(tmp_path):
    ctl = MemoryController()
    srv = OscServer(ctl, OscConfig(host="0.0.0.0", port=0, allow_hosts=(REMOTE[0],)))
    cap = _Capture(srv)
    try:
        srv.handle_packet(encode("/pimodule/mode", "fx"), ("127.0.0.1", 40000))
        assert ctl.mode == "fx"
        signer = Signer(b"k" * 32)
        signer.nonce = srv.nonce
        srv.handle_packet(signer.wrap(encode("/pimodule/mode", "synth")), REMOTE)
        assert ctl.mode == "fx" and "has no OSC key" in cap.errors()[-1]
    finally:
        srv.stop()


def test_nested_envelope_and_garbage_envelopes(keyed):
    srv, ctl, cap, signer, _ = keyed
    inner = signer.wrap(encode("/pimodule/mode", "fx"))
    srv.handle_packet(signer.wrap(inner), REMOTE)
    for args in ([], ["x"], [srv.nonce, "c", 1, b"", b""], [srv.nonce, "bad id!", 1, b"", b"x" * 32]):
        srv.handle_packet(encode(AUTH_ADDRESS, *args), REMOTE)
    assert ctl.mode == "synth"
    assert "cannot hold another" in cap.errors()[0] and len(cap.errors()) == 5


def test_relay_signs_pd_traffic_for_a_remote_module(tmp_path):
    """The relay on a laptop: a plain client (as Pd) talks to it on loopback; every packet the
    module gets from the relay is a signed envelope (or the unsigned nonce request)."""
    key_file = make_key(tmp_path / "osc.key")
    ctl = MemoryController(DDSP_CONTROLS, models={"violin": DDSP_CONTROLS})
    srv = OscServer(ctl, OscConfig(port=0, key_file=str(key_file)))
    real_handle = srv.handle_packet
    seen_unsigned = []

    def as_remote(data, src):
        if decode(data)[0][0] not in (AUTH_ADDRESS, "/pimodule/auth/nonce"):
            seen_unsigned.append(data)
        real_handle(data, src)

    srv.handle_packet = as_remote
    srv.start()
    relay = Relay(("127.0.0.1", 0), ("127.0.0.1", srv.port), load_key(key_file))
    thread = threading.Thread(target=relay.run, kwargs={"duration_s": 30.0}, daemon=True)
    thread.start()
    try:
        with OscClient("127.0.0.1", relay.port) as pd_like:
            assert pd_like.request("/pimodule/mode", "transfer", expect="/pimodule/mode")[1] == ["transfer"]
            assert pd_like.request("/pimodule/ping", 3, expect="/pimodule/pong")[1] == [3]
        assert ctl.mode == "transfer" and seen_unsigned == [] and srv.counters.auth_ok >= 2
        # the module restarts (new nonce): the relay notices, asks again and goes on
        srv.auth.nonce = "f" * 32
        with OscClient("127.0.0.1", relay.port) as pd_like:
            assert pd_like.request("/pimodule/mode", "fx", expect="/pimodule/mode", timeout_s=10)[1] == ["fx"]
        assert relay.signer.nonce == "f" * 32
    finally:
        relay.stop()
        thread.join(5)
        srv.stop()


def test_signed_client_over_real_udp_with_the_key(tmp_path):
    key_file = make_key(tmp_path / "osc.key")
    ctl = MemoryController()
    srv = OscServer(ctl, OscConfig(port=0, key_file=str(key_file)))
    srv.start()
    try:
        with OscClient("127.0.0.1", srv.port, key=load_key(key_file)) as c:
            assert c.request("/pimodule/ping", 5, expect="/pimodule/pong")[1] == [5]
            c.send("/pimodule/gain", -3.0)
            assert c.request("/pimodule/ping", 6, expect="/pimodule/pong")[1] == [6]
        assert ctl.gain_db == -3.0
        assert srv.counters.auth_ok >= 1 and srv.counters.auth_refused == 0
    finally:
        srv.stop()
