"""Flashing over SSH against a real sshd on 127.0.0.1 (openssh-server started here with generated
host and user keys, stopped by its PID) and a real daemon playing: `pimodule flash MODEL --to
HOST` runs `ssh HOST pimodule flash-receive`, which relays to the daemon's loopback flash port.
The flashed voice is swapped in; a refused model's reason arrives over SSH; no key, no daemon,
no pimodule on the host and no sshd each end with a line that says what to do."""

from __future__ import annotations

import getpass
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from pimodule.cli import main as cli
from pimodule.device import daemon as daemon_mod
from pimodule.device.config import parse_config
from pimodule.device.jackdummy import stop_process

pytestmark = [
    pytest.mark.timeout(400),
    pytest.mark.skipif(shutil.which("sshd") is None and not Path("/usr/sbin/sshd").exists(), reason="needs sshd"),
]
SSHD = shutil.which("sshd") or "/usr/sbin/sshd"
PIMODULE = Path(sys.executable).with_name("pimodule")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _keygen(path: Path) -> Path:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True, timeout=30)
    return path


class Sshd:
    """openssh-server on 127.0.0.1:<free port>: one authorized user key, host key pinned."""

    def __init__(self, root: Path):
        self.root = root
        self.port = _free_port()
        host_key = _keygen(root / "host_key")
        self.key = _keygen(root / "user_key")
        self.stranger = _keygen(root / "stranger_key")  # a key the module does not know
        (root / "authorized_keys").write_text(Path(f"{self.key}.pub").read_text())
        (root / "known_hosts").write_text(f"[127.0.0.1]:{self.port} {Path(f'{host_key}.pub').read_text()}")
        (root / "sshd_config").write_text(
            f"Port {self.port}\nListenAddress 127.0.0.1\nHostKey {host_key}\n"
            f"AuthorizedKeysFile {root / 'authorized_keys'}\nPidFile {root / 'sshd.pid'}\n"
            "PasswordAuthentication no\nKbdInteractiveAuthentication no\nPubkeyAuthentication yes\n"
            f"StrictModes no\nUsePAM no\nPermitRootLogin prohibit-password\nAllowUsers {getpass.getuser()}\n"
            "LogLevel ERROR\n"
        )
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation directory
        self.log = open(root / "sshd.log", "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [SSHD, "-D", "-e", "-f", str(root / "sshd_config")], stdout=self.log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + 15
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    pytest.fail(f"sshd did not start: {(root / 'sshd.log').read_text()}")
                time.sleep(0.05)

    def client_config(self, key: Path | None = None, port: int | None = None) -> Path:
        path = self.root / f"ssh_config_{(key or self.key).name}_{port or self.port}"
        path.write_text(
            f"Host pimodule-test\n  HostName 127.0.0.1\n  Port {port or self.port}\n  User {getpass.getuser()}\n"
            f"  IdentityFile {key or self.key}\n  IdentitiesOnly yes\n  UserKnownHostsFile {self.root / 'known_hosts'}\n"
            "  StrictHostKeyChecking yes\n  LogLevel ERROR\n"
        )
        return path

    def stop(self) -> None:
        stop_process(self.proc)
        self.log.close()


@pytest.fixture(scope="module")
def sshd(tmp_path_factory):
    server = Sshd(tmp_path_factory.mktemp("sshd"))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def playing(tmp_path_factory, model_dir):
    """A daemon playing voice_a on the simulated clock, flash port on loopback."""
    store = tmp_path_factory.mktemp("ssh-models")
    shutil.copy(model_dir / "voice_a.onnx", store / "voice_a.onnx")
    cfg = parse_config(
        {
            "osc": {"enabled": False},
            "flash": {"port": 0},
            "fx": {"model": ""},
            "models": {"dir": str(store), "default": "voice_a"},
            "cv": {"backend": "simulated"},
        },
        "test",
    )
    d = daemon_mod.build(cfg, record_s=60.0)
    thread = threading.Thread(target=daemon_mod.run, kwargs=dict(d=d, offline=True, duration_s=None))
    thread.start()
    try:
        yield d, store
    finally:
        d.stop_event.set()
        thread.join(20)
        d.close()


def _remote(port: int, program: Path = PIMODULE) -> str:
    return f"{program} flash-receive --port {port}"


def _flash(*args: str) -> int:
    return cli(["flash", *args, "--quiet"])


def _wait_for_model(d, name: str, timeout_s: float = 120.0) -> None:  # a cold numba cache compiles first
    deadline = time.monotonic() + timeout_s
    while d.controller.status()["model"] != name:
        assert time.monotonic() < deadline, f"model {name} is not playing"
        time.sleep(0.02)


def test_flash_over_ssh_to_a_playing_daemon(sshd, playing, model_dir, capsys):
    d, store = playing
    port = d.flash[0].port
    ssh = ["--to", "pimodule-test", "--ssh-config", str(sshd.client_config()), "--remote-command", _remote(port)]
    assert cli(["flash", "--ping", *ssh]) == 0
    assert "PONG pimodule-flash 1" in capsys.readouterr().out
    _wait_for_model(d, "voice_a")
    assert _flash(str(model_dir / "voice_b.onnx"), "--name", "flashed", *ssh) == 0, capsys.readouterr().err
    assert '"name": "flashed"' in capsys.readouterr().out
    _wait_for_model(d, "flashed")  # voice_b is playing, flashed over SSH
    swapped_at = d.engine.n_samples
    # a model the module refuses: the reason arrives over SSH, nothing changes
    before = (store / "flashed.onnx").read_bytes()
    assert _flash(str(model_dir / "bad_nan.onnx"), "--name", "flashed", *ssh) == 1
    err = capsys.readouterr().err
    assert "the module refused" in err and "NaN" in err and "nothing installed" in err
    assert (store / "flashed.onnx").read_bytes() == before
    time.sleep(0.3)
    assert d.controller.status()["model"] == "flashed"
    y = d.runner.recorder.audio[swapped_at:]
    assert np.all(np.isfinite(y)) and np.max(np.abs(y)) <= 1.0 and np.sqrt(np.mean(y.astype(np.float64) ** 2)) > 1e-4


def test_a_key_the_module_does_not_know(sshd, playing, model_dir, capsys):
    d, _ = playing
    config = sshd.client_config(key=sshd.stranger)
    rc = _flash(str(model_dir / "voice_b.onnx"), "--to", "pimodule-test", "--ssh-config", str(config))
    err = capsys.readouterr().err
    assert rc == 1 and "refused the SSH login" in err and "ssh-copy-id pimodule-test" in err, err


def test_the_daemon_is_not_running(sshd, model_dir, capsys):
    port = _free_port()  # nothing listens there
    ssh = ["--to", "pimodule-test", "--ssh-config", str(sshd.client_config()), "--remote-command", _remote(port)]
    rc = _flash(str(model_dir / "voice_b.onnx"), *ssh)
    err = capsys.readouterr().err
    assert rc == 1 and f"the pimodule daemon is not running on {socket.gethostname()}" in err, err
    assert "systemctl status pimodule" in err


def test_pimodule_missing_on_the_host(sshd, playing, model_dir, capsys):
    config = str(sshd.client_config())
    rc = _flash(
        str(model_dir / "voice_b.onnx"),
        "--to",
        "pimodule-test",
        "--ssh-config",
        config,
        "--remote-command",
        "/nope/pimodule flash-receive",
    )
    err = capsys.readouterr().err
    assert rc == 1 and "/nope/pimodule not found on pimodule-test" in err and "--remote-command" in err, err


def test_no_sshd_and_no_such_host(sshd, model_dir, capsys):
    config = sshd.client_config(port=_free_port())  # nothing listens: no sshd there
    assert _flash(str(model_dir / "voice_b.onnx"), "--to", "pimodule-test", "--ssh-config", str(config)) == 1
    assert "refuses SSH connections" in capsys.readouterr().err
    assert _flash(str(model_dir / "voice_b.onnx"), "--to", "no-such-module.invalid") == 1
    err = capsys.readouterr().err
    assert "cannot find no-such-module.invalid" in err or "cannot reach no-such-module.invalid" in err, err
    assert _flash(str(model_dir / "voice_b.onnx"), "--to", "-oProxyCommand=touch /tmp/x") == 1
    assert "not an SSH destination" in capsys.readouterr().err


def test_tcp_is_for_this_machine_only(model_dir, capsys):
    assert _flash(str(model_dir / "voice_b.onnx"), "--to", "192.0.2.7:9100") == 1
    assert "flash over SSH: --to [user@]192.0.2.7" in capsys.readouterr().err
    assert _flash(str(model_dir / "voice_b.onnx"), "--to", "127.0.0.1:1") == 1
    assert "nothing listens on 127.0.0.1:1" in capsys.readouterr().err
    assert _flash(str(model_dir / "voice_b.onnx"), "--to", "127.0.0.1:1", "--name", "flute.v2") == 1
    assert "bad model name 'flute.v2'" in capsys.readouterr().err
