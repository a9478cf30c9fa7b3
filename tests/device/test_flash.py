"""Flashing model files into the module: over real TCP and a real serial pty pair (pyserial), the
module validating with onnxruntime, installing atomically, refusing bad input with nothing lost."""

from __future__ import annotations

import hashlib
import shutil
import socket
import threading
import time
from pathlib import Path

import pytest

from pimodule.device.engine import VoiceEngine
from pimodule.device.flash import (
    FlashReceiver,
    FlashServer,
    SerialFlashListener,
    clean_partials,
    daemon_validator,
    partial_path,
)
from pimodule.device.io import flashlink
from pimodule.device.io.flashlink import FlashError, SerialLink, SocketLink

pytestmark = pytest.mark.timeout(120)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class Module:
    """A receiver as the daemon builds it (real validation against a real engine), recording
    activations and events, with a TCP server on a free port."""

    def __init__(self, store: Path, **kwargs):
        self.store = store
        self.engine = VoiceEngine(device_rate_hz=48000, max_block=128)
        self.activated: list[tuple[str, str]] = []
        self.events: list[tuple[str, str]] = []
        self.receiver = FlashReceiver(
            store,
            daemon_validator(self.engine),
            activate=lambda n, k: self.activated.append((n, k)) or True,
            on_event=lambda k, m: self.events.append((k, m)),
            **kwargs,
        )
        self.server = FlashServer(self.receiver, "127.0.0.1", 0)
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
    return not list(store.glob(".*.partial"))


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
        ("bad_corrupt", "onnxruntime cannot load it"),
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
    assert sorted(p.name for p in module.store.iterdir()) == ["keep.onnx"]
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
    assert sorted(p.name for p in module.store.iterdir()) == ["keep.onnx"]


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


def test_remote_flashing_needs_an_allow_list(tmp_path):
    receiver = FlashReceiver(tmp_path, lambda p: "ddsp")
    with pytest.raises(ValueError, match="allow_hosts"):
        FlashServer(receiver, "0.0.0.0", 0)


def test_connections_from_hosts_outside_the_allow_list_are_dropped(tmp_path):
    try:  # a non-loopback address of this machine, to connect from
        probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        probe.connect(("192.0.2.1", 9))
        own = probe.getsockname()[0]
        probe.close()
    except OSError:
        own = ""
    if not own or own.startswith("127."):
        pytest.skip("no non-loopback address on this machine")
    server = FlashServer(FlashReceiver(tmp_path, lambda p: "ddsp"), "0.0.0.0", 0, ("192.0.2.77",))
    server.start()
    try:
        sock = socket.create_connection((own, server.port), timeout=5)
        link = SocketLink(sock)
        with pytest.raises(flashlink.LinkClosed):
            link.send_line("PING")
            link.read_line(5)
        link.close()
        assert server.n_refused_hosts == 1
    finally:
        server.stop()


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
