"""The flash link's framing and its two links (a real socket pair, a real pty pair from socat)."""

from __future__ import annotations

import base64
import socket

import pytest

from pimodule.device.io import flashlink
from pimodule.device.io.flash_links import SerialLink, SocketLink, SshLink
from pimodule.device.io.flashlink import LinkClosed


@pytest.mark.parametrize("n", (0, 1, 3, 3072))
def test_data_lines_round_trip(n):
    payload = bytes(range(256)) * 13
    payload = payload[:n]
    line = flashlink.data_line(7, payload)
    assert "\n" not in line and len(line) < flashlink.MAX_LINE_BYTES
    assert flashlink.parse_data(line) == (7, payload)


def test_damaged_data_lines_are_refused_with_a_reason():
    line = flashlink.data_line(3, b"model bytes")
    seq, crc, b64 = line.split(" ")[1:]
    flipped = base64.b64encode(b"model bytez").decode()
    with pytest.raises(ValueError, match="crc"):
        flashlink.parse_data(f"DATA {seq} {crc} {flipped}")
    with pytest.raises(ValueError, match="undecodable"):
        flashlink.parse_data(f"DATA {seq} {crc} !!{b64[2:]}")
    with pytest.raises(ValueError, match="undecodable"):
        flashlink.parse_data(f"DATA x {crc} {b64}")
    with pytest.raises(ValueError, match="malformed"):
        flashlink.parse_data(f"DATA {seq} {b64}")


def test_headers():
    meta = {"name": "violin", "size": 10, "sha256": "0" * 64, "activate": True}
    assert flashlink.parse_header(flashlink.header_line(meta)) == meta
    with pytest.raises(ValueError, match="version"):
        flashlink.parse_header("PIMODULE-FLASH 2 {}")
    with pytest.raises(ValueError, match="JSON"):
        flashlink.parse_header("PIMODULE-FLASH 1 {nope")
    with pytest.raises(ValueError, match="object"):
        flashlink.parse_header("PIMODULE-FLASH 1 [1, 2]")
    with pytest.raises(ValueError, match="not a flash header"):
        flashlink.parse_header("HELLO 1 {}")


def test_socket_link_lines_timeouts_and_close():
    a, b = socket.socketpair()
    la, lb = SocketLink(a), SocketLink(b)
    la.send_line("PING")
    la.send_line("second")
    assert lb.read_line(1.0) == "PING" and lb.read_line(1.0) == "second"
    assert lb.read_line(0.05) is None  # nothing more: a timeout, not an error
    a.sendall(b"x" * (flashlink.MAX_LINE_BYTES + 10))  # garbage without a newline
    assert lb.read_line(1.0) == "\x00overlong"
    la.close()
    with pytest.raises(LinkClosed):
        lb.read_line(1.0)
    lb.close()


def test_serial_link_over_a_pty_pair(pty_pair):
    la, lb = SerialLink.open(pty_pair[0]), SerialLink.open(pty_pair[1])
    try:
        line = flashlink.data_line(0, bytes(3072))
        la.send_line(line)
        la.send_line("END")
        assert lb.read_line(5.0) == line
        assert lb.read_line(5.0) == "END"
        assert lb.read_line(0.05) is None
    finally:
        la.close()
        lb.close()


def test_serial_link_refuses_a_missing_port(tmp_path):
    with pytest.raises(OSError, match="cannot open serial port"):
        SerialLink.open(str(tmp_path / "no-such-tty"))


def test_headers_are_bounded_before_they_are_parsed():
    with pytest.raises(ValueError, match="longer than 2048"):
        flashlink.parse_header("PIMODULE-FLASH 1 " + "[" * 5000)
    with pytest.raises(ValueError, match="nests too deep"):
        flashlink.parse_header("PIMODULE-FLASH 1 " + "[" * 1000 + "]" * 1000)
    with pytest.raises(ValueError, match="not ASCII"):
        flashlink.parse_header('PIMODULE-FLASH 1 {"name": "fl\u00fcte"}')
    with pytest.raises(ValueError, match="not ASCII"):
        flashlink.parse_header('PIMODULE-FLASH 1 {"name": "fl\ufffdte"}')  # what undecodable bytes become
    meta = {"name": "violin", "size": 10, "sha256": "0" * 64, "activate": True, "replace_kind": True}
    assert flashlink.parse_header(flashlink.header_line(meta)) == meta


def test_lines_on_the_wire_are_ascii_and_single():
    a, b = socket.socketpair()
    la, lb = SocketLink(a), SocketLink(b)
    try:
        la.send_line("ERROR bad model name 'fl\u00fcte'\ninjected line")
        line = lb.read_line(1.0)
        assert line == "ERROR bad model name 'fl\\xfcte' injected line" and lb.read_line(0.05) is None
    finally:
        la.close()
        lb.close()


@pytest.mark.parametrize("target", ["-oProxyCommand=touch /tmp/x", "host;rm -rf /", "a b", "", "x" * 300])
def test_ssh_destinations_are_checked_before_ssh_runs(target):
    with pytest.raises(ValueError, match="not an SSH destination"):
        SshLink.open(target)
