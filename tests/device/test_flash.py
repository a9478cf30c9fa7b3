"""Flashing model files into the module: over real TCP and a real serial pty pair (pyserial), the
module validating in a child process (real onnxruntime, real rlimits), installing atomically,
refusing bad input with nothing lost; the limits (session deadline, NAKs that do not hold the
lock, a connection cap, bounded headers) and the kind rules against a hostile sender."""

from __future__ import annotations

import hashlib
import logging
import secrets
import shutil
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from pimodule.device.flash import FlashReceiver, clean_partials, partial_path
from pimodule.device.flash_listen import FlashServer, SerialFlashListener, daemon_validator
from pimodule.device.io import flashlink
from pimodule.device.io.flash_links import SerialLink, SocketLink
from pimodule.device.io.flashlink import FlashError
from pimodule.device.ort_engine import VoiceEngine
from pimodule.device.store import ModelStore

pytestmark = pytest.mark.timeout(120)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class Module:
    """A receiver as the daemon builds it (real validation against a real engine), recording
    activations and events, with a TCP server on a free port."""

    def __init__(self, store: Path, server: dict | None = None, **kwargs):
        server = server or {}
        self.store = store
        self.engine = VoiceEngine(device_rate_hz=48000, max_block=128)
        self.activated: list[tuple[str, str]] = []
        self.events: list[tuple[str, str]] = []
        self.receiver = FlashReceiver(
            ModelStore(store),
            daemon_validator(self.engine),
            activate=lambda n, k: self.activated.append((n, k)) or True,
            on_event=lambda k, m: self.events.append((k, m)),
            **kwargs,
        )
        self.server = FlashServer(self.receiver, "127.0.0.1", 0, **server)
        self.server.start()

    def link(self) -> SocketLink:
        return SocketLink.connect("127.0.0.1", self.server.port)

    def flash(self, path: Path, **kwargs) -> dict:
        link = self.link()
        try:
            return flashlink.flash_file(path, link, **kwargs)
        finally:
            link.close()

    def wait_for(self, predicate, timeout_s: float = 10.0) -> None:
        deadline = time.monotonic() + timeout_s
        while not predicate():
            assert time.monotonic() < deadline, "timed out"
            time.sleep(0.01)


@pytest.fixture()
def module(tmp_path, model_dir):
    store = tmp_path / "models"
    store.mkdir()
    shutil.copy(model_dir / "voice_b.onnx", store / "keep.onnx")  # an installed model to protect
    m = Module(store, line_timeout_s=1.0)
    yield m
    m.server.stop()


def _no_partials(store: Path) -> bool:
    return not list(store.glob(".*.partial")) and not list(store.glob(".previous/.*"))


def _installed(store: Path) -> list[str]:
    return sorted(p.name for p in store.iterdir() if p.name != ".previous")


def test_flash_over_tcp_installs_and_activates(module, model_dir):
    src = model_dir / "voice_a.onnx"
    record = module.flash(src, name="newvoice")
    installed = module.store / "newvoice.onnx"
    assert record["name"] == "newvoice" and record["kind"] == "ddsp" and record["activated"]
    assert record["bytes"] == src.stat().st_size and _sha(installed) == _sha(src)
    assert module.activated == [("newvoice", "ddsp")]
    assert module.events == [("installed", "newvoice ddsp")]
    assert _no_partials(module.store)
    # again, over the same name and without activation: replaced in place
    record = module.flash(model_dir / "voice_b.onnx", name="newvoice", activate=False)
    assert not record["activated"] and _sha(installed) == _sha(model_dir / "voice_b.onnx")
    assert module.activated == [("newvoice", "ddsp")]
    assert record["previous"] and _sha(module.store / ".previous" / "newvoice.onnx") == _sha(src)


def test_ping(module):
    link = module.link()
    try:
        assert flashlink.ping(link) == "PONG pimodule-flash 1"
    finally:
        link.close()


def test_flash_over_a_serial_line(tmp_path, model_dir, pty_pair):
    store = tmp_path / "models"
    m = Module(store)
    listener = SerialFlashListener(m.receiver, pty_pair[0])
    listener.start()
    laptop = SerialLink.open(pty_pair[1])
    try:
        assert flashlink.ping(laptop).startswith("PONG")
        record = flashlink.flash_file(model_dir / "voice_a.onnx", laptop, name="serialvoice")
    finally:
        laptop.close()
        listener.stop()
        m.server.stop()
    assert record["kind"] == "ddsp" and m.activated == [("serialvoice", "ddsp")]
    assert _sha(store / "serialvoice.onnx") == _sha(model_dir / "voice_a.onnx")


@pytest.mark.parametrize(
    "bad, reason",
    [
        ("bad_corrupt", "not an ONNX model"),
        ("bad_rate", "22050 Hz"),
        ("bad_kind", "estimator"),
        ("bad_nan", "NaN"),
    ],
)
def test_unplayable_files_are_refused_and_nothing_is_lost(module, model_dir, bad, reason):
    keep = module.store / "keep.onnx"
    before = _sha(keep)
    with pytest.raises(FlashError, match=reason):
        module.flash(model_dir / f"{bad}.onnx", name="keep")  # would replace an installed model
    assert _sha(keep) == before and _no_partials(module.store)
    assert _installed(module.store) == ["keep.onnx"]
    assert module.activated == [] and module.events[-1][0] == "error" and reason in module.events[-1][1]
    assert module.receiver.n_refused == 1


def _raw_session(module, n_chunks: int, close: bool = True):
    """A sender that announces a whole file, sends ``n_chunks`` of it, then vanishes or stalls."""
    data = (module.store / "keep.onnx").read_bytes()
    sock = socket.create_connection(("127.0.0.1", module.server.port), timeout=5)
    link = SocketLink(sock)
    link.send_line(
        flashlink.header_line({"name": "halfway", "size": len(data), "sha256": hashlib.sha256(data).hexdigest()})
    )
    assert link.read_line(5).startswith("READY")
    for seq in range(n_chunks):
        link.send_line(flashlink.data_line(seq, data[seq * 3072 : (seq + 1) * 3072]))
        assert link.read_line(5) == f"ACK {seq}"
    module.wait_for(lambda: partial_path(module.store, "halfway").exists())
    if close:
        link.close()
    return link


@pytest.mark.parametrize("how", ("disconnect", "stall"))
def test_an_interrupted_flash_installs_nothing(module, how):
    link = _raw_session(module, 3, close=how == "disconnect")
    module.wait_for(lambda: module.receiver.n_refused == 1)
    if how == "stall":  # the module gave up after line_timeout_s and said so
        assert link.read_line(5).startswith("ERROR flash interrupted: nothing for")
        link.close()
    assert "interrupted" in module.receiver.last_error
    assert not (module.store / "halfway.onnx").exists() and _no_partials(module.store)
    assert module.activated == []


class _DamageFirstChunk:
    """A link that flips one character of the first DATA line it sends (a noisy cable)."""

    def __init__(self, link):
        self.link, self.damaged = link, False

    def send_line(self, text):
        if text.startswith("DATA") and not self.damaged:
            self.damaged = True
            text = text[:-5] + ("A" if text[-5] != "A" else "B") + text[-4:]
        self.link.send_line(text)

    def read_line(self, timeout_s):
        return self.link.read_line(timeout_s)

    def close(self):
        self.link.close()


def test_a_damaged_chunk_is_sent_again(module, model_dir):
    src = model_dir / "voice_a.onnx"
    link = _DamageFirstChunk(module.link())
    try:
        record = flashlink.flash_file(src, link, name="noisy")
    finally:
        link.close()
    assert link.damaged and _sha(module.store / "noisy.onnx") == _sha(src) == record["sha256"]


@pytest.mark.parametrize(
    "meta, reason",
    [
        ({"name": "../etc/evil"}, "bad model name"),
        ({"name": ".hidden"}, "bad model name"),
        ({"name": "flute.v2"}, "bad model name 'flute.v2': a name is 1-64 characters of a-z 0-9 _ -"),
        ({"name": "evil\n"}, "bad model name"),
        ({"name": "Violin"}, "bad model name"),
        ({"name": ["violin"]}, "bad model name"),
        ({"activate": "yes"}, "activate must be true or false"),
        ({"size": 10**9}, "size"),
        ({"size": 0}, "size"),
        ({"sha256": "XYZ"}, "sha256"),
    ],
)
def test_bad_headers_are_refused(module, meta, reason):
    full = {"name": "ok", "size": 10, "sha256": "0" * 64} | meta
    link = module.link()
    try:
        link.send_line(flashlink.header_line(full))
        reply = link.read_line(5)
    finally:
        link.close()
    assert reply.startswith("ERROR") and reason in reply
    assert _installed(module.store) == ["keep.onnx"]


@pytest.mark.parametrize(
    "line, reason",
    [
        ("PIMODULE-FLASH 1 " + "[" * 5000, "header longer than 2048 bytes"),
        ("PIMODULE-FLASH 1 " + "[" * 1000, "nests too deep"),
        ('PIMODULE-FLASH 1 {"name": "' + "[" * 5000 + '"}', "header longer than"),
        ('PIMODULE-FLASH 1 {"name": "fl\\u00fcte", "size": 10, "sha256": "' + "0" * 64 + '"}', "bad model name"),
        ('PIMODULE-FLASH 1 {"name": "fl\u00fcte"}', "not ASCII"),
        ('PIMODULE-FLASH 1 {"a": {"b": {"c": 1}}}', "nests too deep"),
        ("PIMODULE-FLASH 9 {}", "protocol version '9'"),
    ],
    ids=[
        "5000-brackets",
        "1000-brackets",
        "5000-in-a-string",
        "escaped-non-ascii",
        "raw-non-ascii",
        "nested",
        "version",
    ],
)
def test_hostile_headers_get_an_error_line_not_a_traceback(module, line, reason, caplog):
    caplog.set_level(logging.DEBUG)
    sock = socket.create_connection(("127.0.0.1", module.server.port), timeout=5)
    link = SocketLink(sock)
    try:
        sock.sendall(line.encode("utf-8") + b"\n")
        reply = link.read_line(5)
        assert flashlink.ping(link).startswith("PONG")  # the connection is still served
    finally:
        link.close()
    assert reply is not None and reply.startswith("ERROR") and reason in reply, reply
    assert reply.isascii() and "Traceback" not in caplog.text
    assert _installed(module.store) == ["keep.onnx"]


def test_damaged_transfer_is_caught_by_the_checksum(module, model_dir):
    src = model_dir / "voice_a.onnx"

    class WrongDigest(SocketLink):  # announces the digest of other bytes
        def send_line(self, text):
            if text.startswith(flashlink.PROTOCOL):
                meta = flashlink.parse_header(text)
                meta["sha256"] = hashlib.sha256(b"other bytes").hexdigest()
                text = flashlink.header_line(meta)
            super().send_line(text)

    link = WrongDigest(socket.create_connection(("127.0.0.1", module.server.port), timeout=5))
    try:
        with pytest.raises(FlashError, match="sha256 mismatch"):
            flashlink.flash_file(src, link, name="damaged")
    finally:
        link.close()
    assert not (module.store / "damaged.onnx").exists() and _no_partials(module.store)


def test_one_flash_at_a_time(module, model_dir):
    assert module.receiver._busy.acquire()
    try:
        with pytest.raises(FlashError, match="busy"):
            module.flash(model_dir / "voice_a.onnx")
    finally:
        module.receiver._busy.release()


def test_partials_of_a_power_cut_are_removed(tmp_path):
    (tmp_path / ".violin.onnx.partial").write_bytes(b"half a model")
    (tmp_path / "violin.onnx").write_bytes(b"installed")
    removed = clean_partials(tmp_path)
    assert [p.name for p in removed] == [".violin.onnx.partial"]
    assert [p.name for p in tmp_path.iterdir()] == ["violin.onnx"]


def test_the_tcp_listener_is_loopback_only(tmp_path):
    receiver = FlashReceiver(tmp_path, lambda p: "ddsp")
    for host in ("0.0.0.0", "192.168.1.30", "::"):
        with pytest.raises(ValueError, match="loopback only; from another host flash over SSH"):
            FlashServer(receiver, host, 0)


def test_concurrent_pings_while_a_flash_runs(module, model_dir):
    """A second connection is answered while a first one uploads (a thread per connection)."""
    done = {}

    def upload():
        done["record"] = module.flash(model_dir / "voice_a.onnx", name="parallel")

    t = threading.Thread(target=upload)
    t.start()
    link = module.link()
    try:
        assert flashlink.ping(link).startswith("PONG")
    finally:
        link.close()
    t.join(30)
    assert done["record"]["name"] == "parallel"


def _header(link, name="stuck", data=b"x" * 10000):
    link.send_line(flashlink.header_line({"name": name, "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}))
    assert link.read_line(5).startswith("READY")


def test_naks_do_not_hold_the_lock(module, model_dir):
    """A sender that only sends garbage after the header is NAKed and loses the session after
    line_timeout_s (1 s here) of no progress, however often it sends."""
    link = module.link()
    t0 = time.monotonic()
    try:
        _header(link)
        replies = []
        while time.monotonic() - t0 < 8:
            link.send_line("\n")  # an empty line, as the attack did with a newline every 5 s
            link.send_line("DATA 0 00000000 AAAA")
            reply = link.read_line(0.2)
            replies.append(reply)
            if reply and reply.startswith("ERROR"):
                break
    finally:
        link.close()
    assert replies[-1].startswith("ERROR flash interrupted: nothing for 1 s"), replies[-3:]
    assert time.monotonic() - t0 < 4
    assert module.flash(model_dir / "voice_a.onnx", name="after")["name"] == "after"  # the lock is free


def test_a_session_has_a_deadline(tmp_path, model_dir):
    """Progress one chunk at a time, but slower than the session's deadline allows."""
    store = tmp_path / "models"
    m = Module(store, line_timeout_s=5.0, session_timeout_s=1.0, min_bytes_per_s=1e9)
    link = m.link()
    data = (model_dir / "voice_a.onnx").read_bytes()
    try:
        link.send_line(flashlink.header_line({"name": "slow", "size": len(data), "sha256": _sha_bytes(data)}))
        assert link.read_line(5).startswith("READY")
        reply = None
        for seq in range(20):
            link.send_line(flashlink.data_line(seq, data[seq * 3072 : (seq + 1) * 3072]))
            reply = link.read_line(5)
            if reply.startswith("ERROR"):
                break
            time.sleep(0.3)
    finally:
        link.close()
        m.server.stop()
    assert reply.startswith("ERROR flash took too long"), reply
    assert not store.exists() or _installed(store) == []


def _sha_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_connections_are_capped_without_a_thread_each(tmp_path):
    m = Module(tmp_path / "models", server={"max_connections": 4, "idle_timeout_s": 30})
    held, refused = [], []
    try:
        for _ in range(4):
            held.append(m.link())
            assert flashlink.ping(held[-1]).startswith("PONG")
        threads = threading.active_count()
        for _ in range(60):
            link = m.link()
            refused.append(link.read_line(5))
            link.close()
        assert threading.active_count() <= threads + 1  # no thread per refused connection
        assert set(refused) == {"ERROR busy: 4 flash connections are open; try again later"}
        assert m.server.n_refused_busy == 60 and m.server.n_open == 4
        held.pop().close()
        m.wait_for(lambda: m.server.n_open == 3)
        link = m.link()
        assert flashlink.ping(link).startswith("PONG")  # a slot again
        link.close()
    finally:
        for link in held:
            link.close()
        m.server.stop()


def test_a_connection_sending_noise_is_closed_when_idle(tmp_path):
    m = Module(tmp_path / "models", server={"idle_timeout_s": 1.0})
    link = m.link()
    try:
        with pytest.raises(flashlink.LinkClosed):
            for _ in range(50):  # noise is not activity
                link.send_line("HELLO")
                link.read_line(0.2)
    finally:
        link.close()
        m.server.stop()


def test_a_model_keeps_its_kind_and_the_default_voice_stays_a_voice(tmp_path, model_dir):
    fx = Path(__file__).resolve().parents[2] / "export" / "fx.onnx"
    store = tmp_path / "models"
    store.mkdir()
    shutil.copy(model_dir / "voice_a.onnx", store / "violin.onnx")
    shutil.copy(model_dir / "voice_b.onnx", store / "cello.onnx")
    m = Module(store, default_voice="violin")
    try:
        with pytest.raises(FlashError, match="cello is installed as a voice .ddsp. and this file is an effect"):
            m.flash(fx, name="cello")
        with pytest.raises(FlashError, match="violin is the module's default voice"):
            m.flash(fx, name="violin", replace_kind=True)  # never, even on purpose
        assert _sha(store / "violin.onnx") == _sha(model_dir / "voice_a.onnx")
        assert _sha(store / "cello.onnx") == _sha(model_dir / "voice_b.onnx")
        assert m.activated == [] and _no_partials(store)
        record = m.flash(fx, name="cello", replace_kind=True, activate=False)
        assert record["kind"] == "fx" and record["previous"]  # on purpose; the voice is kept as previous
    finally:
        m.server.stop()


def test_a_model_reading_files_outside_itself_is_refused_and_nothing_leaks(tmp_path, synthetic_voice, caplog, module):
    """The attack that returned /etc/passwd: an initializer whose data lives in another file."""
    import onnx
    from onnx import TensorProto, external_data_helper, helper, numpy_helper

    caplog.set_level(logging.DEBUG)
    secret = f"CANARY-{secrets.token_hex(16)}".encode()
    (tmp_path / "secret.txt").write_bytes(secret * 16)
    model = onnx.load(str(synthetic_voice(tmp_path / "leak.onnx")))
    leak = numpy_helper.from_array(np.zeros(64, np.uint8), "leak")
    external_data_helper.set_external_data(leak, location=str(tmp_path / "secret.txt"), offset=0, length=64)
    leak.data_location = TensorProto.EXTERNAL
    leak.ClearField("raw_data")
    model.graph.initializer.append(leak)
    model.graph.node.append(helper.make_node("Cast", ["leak"], ["leaked"], to=TensorProto.FLOAT))
    model.graph.output.append(helper.make_tensor_value_info("leaked", TensorProto.FLOAT, [64]))
    path = tmp_path / "leak.onnx"
    path.write_bytes(model.SerializeToString())
    with pytest.raises(FlashError, match="keeps its data outside the file") as err:
        module.flash(path, name="keep")
    seen = str(err.value) + caplog.text + repr(module.events)
    assert secret.decode() not in seen and module.activated == []
    assert _installed(module.store) == ["keep.onnx"] and _no_partials(module.store)


def _fuzz_lines(rng, data: bytes) -> list[bytes]:
    """Valid lines of a session, mutated: bytes flipped, cut, repeated, replaced by noise."""
    meta = {"name": "fuzz", "size": len(data), "sha256": _sha_bytes(data)}
    good = [flashlink.header_line(meta).encode()]
    good += [flashlink.data_line(i, data[i * 3072 : (i + 1) * 3072]).encode() for i in range(3)]
    good += [b"END", b"PING", b"ABORT"]
    out = []
    for _ in range(60):
        line = bytearray(good[rng.integers(len(good))])
        how = rng.integers(6)
        if how == 0 and line:
            for _ in range(rng.integers(1, 8)):
                line[rng.integers(len(line))] = rng.integers(256)
        elif how == 1:
            line = line[: rng.integers(len(line) + 1)]
        elif how == 2:
            line = bytearray(rng.integers(0, 256, rng.integers(1, 200), dtype=np.uint8).tobytes())
        elif how == 3:
            line = bytearray(b"PIMODULE-FLASH 1 " + b"[" * int(rng.integers(1, 3000)))
        elif how == 4:
            line = line + line
        out.append(bytes(line).replace(b"\n", b" "))
    return out


@pytest.mark.parametrize("seed", range(4))
def test_fuzzed_sessions_install_nothing_and_leave_the_receiver_working(module, seed, caplog):
    caplog.set_level(logging.DEBUG)
    rng = np.random.default_rng(seed)
    keep = _sha(module.store / "keep.onnx")
    data = (module.store / "keep.onnx").read_bytes()[:9000]
    sock = socket.create_connection(("127.0.0.1", module.server.port), timeout=5)
    try:
        for line in _fuzz_lines(rng, data):
            sock.sendall(line + b"\n")
        sock.shutdown(socket.SHUT_WR)
        sock.settimeout(10)
        while sock.recv(65536):  # every answer, until the module closes the connection
            pass
    except OSError:
        pass
    finally:
        sock.close()
    module.wait_for(lambda: module.receiver._busy.acquire(blocking=False))  # the lock is free again
    module.receiver._busy.release()
    assert _sha(module.store / "keep.onnx") == keep and _no_partials(module.store)
    assert not (module.store / "fuzz.onnx").exists() and module.activated == []
    assert "Traceback" not in caplog.text
    link = module.link()
    try:
        assert flashlink.ping(link).startswith("PONG")
    finally:
        link.close()
