"""Seeded, bounded fuzzing of the OSC server's parser and dispatch: random bytes, random messages
with every OSC type and extreme values, mutations of valid packets and of signed envelopes, and
bundles. Nothing may escape the server, every reply must be valid OSC, the log stays small and
the controller's state stays finite and inside its specs."""

from __future__ import annotations

import logging
import math
import random
import struct
import time

import pytest

from pimodule.core.controls import DDSP_CONTROLS, GAIN_SPEC
from pimodule.core.params import ParamSpec, ParamTable
from pimodule.device.io.controller import MemoryController
from pimodule.device.io.osc import OscConfig, OscServer
from pimodule.device.io.osc_client import Signer, decode, encode, encode_bundle, load_key, make_key

ADDRESSES = [
    "/pimodule/ping",
    "/pimodule/control/noise_gain_db",
    "/pimodule/control/pitch_shift_semitones",
    "/pimodule/control/nope",
    "/pimodule/cv/cv1",
    "/pimodule/cv/pot3",
    "/pimodule/cv/zz",
    "/pimodule/gain",
    "/pimodule/mute",
    "/pimodule/mode",
    "/pimodule/model/load",
    "/pimodule/model/list",
    "/pimodule/controls",
    "/pimodule/reply/port",
    "/pimodule/status/subscribe",
    "/pimodule/status/unsubscribe",
    "/pimodule/auth",
    "/pimodule/auth/nonce",
    "/pimodule/fx/match",
    "/pimodule/fx/model",
    "/pimodule/fx/list",
    "/pimodule/fx/estimate",
    "/pimodule/fx/hold",
    "/pimodule/fx/set",
    "/pimodule/fx/matched",
    "/pimodule/",
    "/other",
]
EXTREMES = [0, 1, -1, 2**31 - 1, -(2**31), 2**40, -(2**63), 1e300, -1e300, float("nan"), float("inf"), 1e-320, 3.5e38]
STRINGS = ["", "fx", "synth", "violin", "../../etc/passwd", "evil\n", "x" * 300, "é☃", "distortion", "mode", "hard"]


class _Sink:
    """Stands in for the server's socket: keeps every reply (the packets are checked after)."""

    def __init__(self):
        self.replies: list[bytes] = []

    def sendto(self, data: bytes, addr) -> int:
        if len(self.replies) < 200_000:
            self.replies.append(data)
        return len(data)

    def close(self) -> None:
        pass


def _arg(rng: random.Random) -> tuple[str, bytes]:
    kind = rng.choice("ifhdsbTFN[")
    if kind == "i":
        return "i", struct.pack(
            ">i", rng.choice([0, 1, -1, 9001, 2**31 - 1, -(2**31), rng.randint(-(2**31), 2**31 - 1)])
        )
    if kind == "h":
        return "h", struct.pack(">q", rng.choice([2**40, -(2**63), 7, rng.randint(-(2**63), 2**63 - 1)]))
    if kind == "f":
        return "f", struct.pack(
            ">f", rng.choice([0.5, -60.0, 1e30, float("nan"), float("inf"), rng.uniform(-100, 100)])
        )
    if kind == "d":
        return "d", struct.pack(">d", rng.choice(EXTREMES[6:] + [rng.uniform(-1e6, 1e6)]))
    if kind == "s":
        raw = rng.choice(STRINGS).encode()
        return "s", raw + b"\x00" * (4 - len(raw) % 4)
    if kind == "b":
        blob = rng.randbytes(rng.randint(0, 40))
        return "b", struct.pack(">i", len(blob)) + blob + b"\x00" * (-len(blob) % 4)
    if kind == "[":
        inner = [_arg(rng) for _ in range(rng.randint(0, 3))]
        inner = [(t, b) for t, b in inner if t != "["]
        return "[" + "".join(t for t, _ in inner) + "]", b"".join(b for _, b in inner)
    return kind, b""


def _message(rng: random.Random) -> bytes:
    address = rng.choice(ADDRESSES).encode()
    args = [_arg(rng) for _ in range(rng.choice([0, 1, 1, 1, 2, 3, 5]))]
    tags = ("," + "".join(t for t, _ in args)).encode()
    pad = lambda b: b + b"\x00" * (4 - len(b) % 4)  # noqa: E731
    return pad(address) + pad(tags) + b"".join(b for _, b in args)


def _valid(rng: random.Random) -> bytes:
    address = rng.choice(ADDRESSES)
    n = rng.choice([0, 1, 1, 2, 3])
    pool = [*EXTREMES, *STRINGS]
    args = []
    for _ in range(n):
        a = rng.choice(pool)
        if isinstance(a, int) and not -(2**31) <= a < 2**31:
            continue
        if isinstance(a, float) and math.isfinite(a) and abs(a) > 3.4e38:
            continue
        args.append(a)
    return encode(address, *args)


def _mutate(rng: random.Random, data: bytes) -> bytes:
    b = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(5)
        if op == 0 and b:
            b[rng.randrange(len(b))] ^= 1 << rng.randrange(8)
        elif op == 1 and b:
            del b[rng.randrange(len(b)) :]
        elif op == 2:
            b[rng.randrange(len(b) + 1) : 0] = rng.randbytes(rng.choice([1, 4, 8]))
        elif op == 3 and len(b) > 8:
            i = rng.randrange(len(b) - 4)
            b[i : i + 4] = struct.pack(">i", rng.choice([-1, 0, 2**31 - 1, 4096, 3]))
        elif op == 4:
            tags = b",ifsbhdtTFNcmr[]x"
            i = bytes(b).find(b",")
            if i >= 0 and i + 1 < len(b):
                b[i + 1] = rng.choice(tags)
    return bytes(b)


def _bundle(rng: random.Random, signer: Signer) -> bytes:
    parts = [rng.choice([_valid(rng), _message(rng), signer.wrap(_valid(rng))]) for _ in range(rng.randint(1, 4))]
    if rng.random() < 0.3:
        parts = [encode_bundle(*parts)]
    return encode_bundle(*parts)


@pytest.mark.parametrize("seed", [1, 2])
def test_fuzzed_packets_never_escape_and_replies_are_valid(tmp_path, caplog, seed):
    rng = random.Random(seed)
    key_file = make_key(tmp_path / "osc.key")
    other = ParamTable([ParamSpec("drive_db", "dB", 0.0, 30.0, 6.0)])
    ctl = MemoryController(DDSP_CONTROLS, models={"violin": DDSP_CONTROLS, "crusher": other})
    cfg = OscConfig(
        host="0.0.0.0",
        port=0,
        allow_hosts=("192.0.2.7",),
        key_file=str(key_file),
        max_packet_bytes=1024,
        error_replies_per_s=1e6,  # every error reply is built and checked, none rate limited away
    )
    srv = OscServer(ctl, cfg)
    srv.sock.close()
    sink = srv.sock = _Sink()
    srv._slow.start()  # the request thread alone: packets are handed to handle_packet here
    signer = Signer(load_key(key_file))
    signer.nonce = srv.nonce
    sources = [("127.0.0.1", 40000), ("127.0.0.1", 40001), ("192.0.2.7", 5555), ("198.51.100.1", 7)]
    n_packets = 25_000
    t0 = time.monotonic()
    with caplog.at_level(logging.DEBUG):
        for i in range(n_packets):
            r = rng.random()
            if r < 0.15:
                data = rng.randbytes(rng.choice([0, 3, 4, 8, 16, 64, 200, 1100]))
            elif r < 0.45:
                data = _message(rng)
            elif r < 0.60:
                data = _valid(rng)
            elif r < 0.80:
                data = _mutate(rng, rng.choice([_valid(rng), _message(rng)]))
            elif r < 0.92:
                data = signer.wrap(_valid(rng))
                if rng.random() < 0.5:
                    data = _mutate(rng, data)
            else:
                data = _bundle(rng, signer)
            srv.handle_packet(data, rng.choice(sources))
            if i % 2000 == 0:
                srv._send_status_if_due()
        srv.wait_requests(10.0)
    elapsed = time.monotonic() - t0
    srv._slow.stop(5)
    assert elapsed < 60  # a few seconds here; bounded even on a loaded machine
    assert srv.counters.packets == n_packets
    assert srv.counters.internal == 0 and srv.counters.unencodable == 0
    for reply in sink.replies:  # every reply is an OSC message the server's own parser accepts
        (address, _), *_ = decode(reply)
        assert address.startswith("/pimodule/")
    assert len(sink.replies) > 15_000 and srv.counters.errors_suppressed == 0
    assert len(caplog.text) < 20_000, caplog.text[-2000:]  # the log stays small
    assert "Traceback" not in caplog.text
    for name, value in ctl.values.items():
        spec = ctl.controls()[name]
        assert math.isfinite(value) and spec.min <= value <= spec.max
    assert GAIN_SPEC.min <= ctl.gain_db <= GAIN_SPEC.max
    assert all(math.isfinite(v) and -10 <= v <= 10 for v in ctl.cv.values())
    assert len(srv.subscribers) <= srv.config.max_subscribers
    assert srv.counters.auth_ok > 100 and srv.counters.refused_host > 100


def test_decoder_on_random_bytes_only_raises_its_own_error():
    from pimodule.device.io.osc_client import OscDecodeError

    rng = random.Random(7)
    seeds = [encode("/pimodule/ping", 1, 2.5, "x", b"blob"), encode_bundle(encode("/pimodule/mode", "fx"))]
    for _ in range(20_000):
        data = _mutate(rng, rng.choice(seeds)) if rng.random() < 0.7 else rng.randbytes(rng.randint(0, 64))
        try:
            decode(data)
        except OscDecodeError:
            pass
