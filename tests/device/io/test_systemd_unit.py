"""systemd/pimodule.service passes `systemd-analyze verify` and carries the settings the daemon needs."""

from __future__ import annotations

import ast
import configparser
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

UNIT = Path(__file__).resolve().parents[3] / "systemd" / "pimodule.service"
EXEC_START = "/opt/pimodule/venv/bin/pimodule run --config /etc/pimodule/config.toml"


def _unit() -> configparser.ConfigParser:
    cp = configparser.ConfigParser(strict=False, interpolation=None)
    cp.optionxform = str  # keys are case sensitive
    cp.read(UNIT)
    return cp


def test_unit_settings():
    svc = _unit()["Service"]
    assert svc["Type"] == "notify"
    assert svc["ExecStart"] == EXEC_START
    assert svc["Restart"] == "on-failure"
    assert svc["User"] == "pimodule"
    assert set(svc["SupplementaryGroups"].split()) == {"audio", "spi", "gpio", "dialout"}
    assert svc["WatchdogSec"].rstrip("s").isdigit()
    assert int(svc["LimitRTPRIO"]) > 0 and svc["LimitMEMLOCK"] == "infinity"
    assert svc["StandardOutput"] == "journal"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="needs systemd-analyze")
def test_systemd_analyze_verify(tmp_path):
    # The venv path does not exist here: point ExecStart at a real executable, keep the rest.
    text = UNIT.read_text().replace(EXEC_START, f"{shutil.which('true')} run --config /etc/pimodule/config.toml")
    unit = tmp_path / "pimodule.service"
    unit.write_text(text)
    out = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60)
    ours = [ln for ln in (out.stdout + out.stderr).splitlines() if "pimodule.service" in ln]
    assert out.returncode == 0, out.stderr
    assert ours == [], ours


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="needs systemd-analyze")
def test_verify_catches_a_broken_unit(tmp_path):
    unit = tmp_path / "pimodule.service"
    unit.write_text(UNIT.read_text().replace("Type=notify", "Type=notfiy"))
    out = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert "notfiy" in out.stdout + out.stderr  # the same check that passes above does see errors


# -- hardening -------------------------------------------------------------------------------------
def _runnable_copy(tmp_path: Path) -> Path:
    unit = tmp_path / "pimodule.service"
    unit.write_text(
        UNIT.read_text().replace(EXEC_START, f"{shutil.which('true')} run --config /etc/pimodule/config.toml")
    )
    return unit


def _values(key: str) -> list[str]:
    """Every value of a key in [Service] (configparser keeps only the last of repeated keys)."""
    section, out = None, []
    for line in UNIT.read_text().splitlines():
        line = line.strip()
        if line.startswith("["):
            section = line
        elif section == "[Service]" and line.startswith(f"{key}="):
            out.append(line.split("=", 1)[1])
    return out


def test_the_sandbox_keeps_what_the_daemon_needs():
    svc = _unit()["Service"]
    assert svc["ProtectSystem"] == "strict" and svc["PrivateTmp"] == "yes" and svc["NoNewPrivileges"] == "yes"
    assert svc["CapabilityBoundingSet"] == "" and svc["AmbientCapabilities"] == ""  # RLIMIT_RTPRIO instead
    assert svc["RestrictRealtime"] == "no"  # the audio thread's SCHED_FIFO
    assert svc["MemoryDenyWriteExecute"] == "no"  # numba's JIT (see test_numba_needs_executable_memory)
    assert svc["StateDirectory"] == "pimodule" and svc["CacheDirectory"] == "pimodule"
    assert "NUMBA_CACHE_DIR=/var/cache/pimodule/numba" in _values("Environment")
    assert svc["MemoryMax"] == "600M" and svc["DevicePolicy"] == "closed"
    allowed = {v.split()[0] for v in _values("DeviceAllow")}
    assert {"char-alsa", "/dev/spidev0.1", "/dev/gpiomem", "char-gpiochip", "char-ttyGS"} <= allowed
    filters = _values("SystemCallFilter")
    assert filters[0].split()[0] == "@system-service" and "sched_setscheduler" in filters[0]
    assert set(svc["RestrictAddressFamilies"].split()) == {"AF_UNIX", "AF_INET", "AF_INET6"}


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="needs systemd-analyze")
def test_the_units_filter_lets_the_daemon_pin_the_audio_core_and_ask_for_sched_fifo():
    """[audio] cpus pins processes (sched_setaffinity) and the audio thread asks for SCHED_FIFO;
    the filter must allow both, and still refuse what the unit denies."""
    allowed = set(_seccomp_spec()["allow"])
    assert {"sched_setaffinity", "sched_setscheduler", "sched_getaffinity"} <= allowed
    assert not {"mount", "reboot", "init_module", "ptrace"} & allowed


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="needs systemd-analyze")
def test_systemd_analyze_security_rates_it_ok(tmp_path):
    out = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", str(_runnable_copy(tmp_path))],
        capture_output=True,
        text=True,
        timeout=120,
    )
    match = re.search(r"Overall exposure level for pimodule.service: ([0-9.]+)", out.stdout)
    assert match, out.stdout[-2000:] + out.stderr
    assert float(match.group(1)) <= 2.5, out.stdout


def test_numba_needs_executable_memory():
    """Why MemoryDenyWriteExecute stays off: under the kernel's equivalent (prctl PR_SET_MDWE,
    Linux 6.3+) numba cannot compile; onnxruntime and ctypes callbacks can."""
    code = (
        "import ctypes, sys\n"
        "libc = ctypes.CDLL('libc.so.6', use_errno=True)\n"
        "if libc.prctl(65, 1, 0, 0, 0) != 0: sys.exit(77)\n"
        "try:\n"
        "    import numba\n"
        "    numba.njit(lambda x: x * 2.0)(1.0)\n"
        "except Exception as err:\n"
        "    print(err); sys.exit(3)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    if proc.returncode == 77:
        pytest.skip("kernel without PR_SET_MDWE (Linux < 6.3)")
    assert proc.returncode == 3 and "executable memory" in proc.stdout, proc.stdout + proc.stderr


# -- the daemon under the unit's sandbox (bubblewrap + seccomp: systemd is not PID 1 here) ----------
SECCOMP_LAUNCHER = """
import errno, json, os, socket, sys
import seccomp
spec = json.load(open(sys.argv[1]))
f = seccomp.SyscallFilter(defaction=seccomp.ERRNO(errno.EPERM))  # SystemCallErrorNumber=EPERM
for name in spec["allow"]:
    if name == "socket":
        continue
    try:
        f.add_rule(seccomp.ALLOW, name)
    except (RuntimeError, ValueError, OSError):
        pass  # not a system call of this architecture
for family in spec["families"]:  # RestrictAddressFamilies
    f.add_rule(seccomp.ALLOW, "socket", seccomp.Arg(0, seccomp.EQ, getattr(socket, family)))
f.load()
os.execv(sys.argv[2], sys.argv[2:])
"""

PROBE = """
import errno, os, socket, sys
from pathlib import Path
results = {}
def attempt(name, fn):
    try:
        fn()
        results[name] = "allowed"
    except OSError as err:
        results[name] = errno.errorcode.get(err.errno, str(err.errno))
attempt("write /opt", lambda: Path("/opt/evil").write_text("x"))
attempt("write /etc", lambda: Path("/etc/evil").write_text("x"))
attempt("write state", lambda: Path("/var/lib/pimodule/ok").write_text("x"))
attempt("write cache", lambda: Path("/var/cache/pimodule/ok").write_text("x"))
attempt("write tmp", lambda: Path("/tmp/ok").write_text("x"))
attempt("packet socket", lambda: socket.socket(socket.AF_PACKET, socket.SOCK_RAW))
attempt("netlink socket", lambda: socket.socket(socket.AF_NETLINK, socket.SOCK_RAW))
attempt("udp socket", lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM).close())
attempt("setuid 0", lambda: os.setuid(0))
attempt("sched_fifo", lambda: os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(10)))
attempt("mlockall", lambda: __import__("ctypes").CDLL(None, use_errno=True).mlockall(1) == 0 or (_ for _ in ()).throw(OSError(__import__("ctypes").get_errno(), "mlockall")))
print(results)
import numba
print("numba", numba.njit(cache=True)(lambda x: x + 1.0)(1.0))
from pimodule.device.validate import validate
report = validate(sys.argv[1], "ddsp")
print("validate", report.ok, report.reason)
"""


def _groups() -> dict[str, list[str]]:
    out = subprocess.run(["systemd-analyze", "syscall-filter"], capture_output=True, text=True, timeout=60).stdout
    groups, current = {}, None
    for line in out.splitlines():
        if line.startswith("@"):
            current = groups.setdefault(line.strip(), [])
        elif current is not None and line.strip() and not line.strip().startswith("#"):
            current.append(line.strip())
    return groups


def _expand(names: list[str], groups: dict[str, list[str]]) -> set[str]:
    out: set[str] = set()
    for name in names:
        out |= _expand(groups.get(name, []), groups) if name.startswith("@") else {name}
    return out


def _seccomp_spec() -> dict:
    groups = _groups()
    allow_line, deny_line = _values("SystemCallFilter")
    allowed = _expand(allow_line.split(), groups) - _expand(deny_line.lstrip("~").split(), groups)
    return {"allow": sorted(allowed), "families": _unit()["Service"]["RestrictAddressFamilies"].split()}


@pytest.mark.timeout(1200)
@pytest.mark.skipif(
    not all(shutil.which(t) for t in ("bwrap", "setpriv", "prlimit", "systemd-analyze"))
    or subprocess.run(["/usr/bin/python3", "-c", "import seccomp"], capture_output=True).returncode != 0,
    reason="needs bubblewrap, util-linux, systemd-analyze and python3-seccomp (apt-packages.txt)",
)
def test_the_daemon_plays_inside_the_units_sandbox(tmp_path, model_dir):
    """ProtectSystem=strict (all read-only), StateDirectory/CacheDirectory (the only writable
    places), PrivateTmp, ProtectHome (the interpreter's own folder only), a private /dev, PID,
    IPC and network namespaces, an unprivileged user with no capabilities and NoNewPrivileges,
    LimitRTPRIO/LimitMEMLOCK, and the unit's SystemCallFilter + RestrictAddressFamilies as a
    seccomp filter (EPERM, as SystemCallErrorNumber says): the daemon plays, a model validates
    in its limited child, numba compiles into the cache; writes elsewhere, raw sockets and
    setuid are refused."""
    state, cache, conf = tmp_path / "state", tmp_path / "cache", tmp_path / "conf"
    for d in (state / "models", cache, conf):
        d.mkdir(parents=True)
    shutil.copy(model_dir / "voice_a.onnx", state / "models" / "violin.onnx")
    (conf / "config.toml").write_text(
        '[models]\ndir = "/var/lib/pimodule/models"\ndefault = "violin"\n[cv]\nbackend = "simulated"\n'
        '[fx]\nmodel = ""\n[osc]\nport = 0\n[flash]\nport = 0\n'
    )
    (conf / "launcher.py").write_text(SECCOMP_LAUNCHER)
    (conf / "probe.py").write_text(PROBE)
    (conf / "seccomp.json").write_text(json.dumps(_seccomp_spec()))
    for path in (state, state / "models", state / "models" / "violin.onnx", cache):
        os.chown(path, 65534, 65534)
    python = Path(sys.executable)
    prefix = Path(sys.base_prefix)
    limits = ["prlimit", "--rtprio=95", "--memlock=unlimited", "--nofile=1024", "--"]  # the unit's Limit*
    if subprocess.run([*limits, "true"], capture_output=True).returncode != 0:  # a container without
        limits = ["prlimit", "--nofile=1024", "--"]  # CAP_SYS_RESOURCE cannot raise them: the host's apply
    sandbox = list(limits)
    sandbox += [
        "bwrap",
        "--ro-bind",
        "/",
        "/",
        "--perms",
        "1777",
        "--tmpfs",
        "/tmp",
        "--tmpfs",
        "/home",
        "--tmpfs",
        "/root",
    ]
    if str(prefix).startswith(("/root", "/home")):  # the interpreter lives in a home: only its folder
        top = Path(*prefix.parts[:3])  # e.g. /root/.pyenv (bwrap makes missing parents 0700)
        sandbox += ["--ro-bind", str(top), str(top)]
    repo = Path(__file__).resolve().parents[3]
    if str(repo).startswith(("/root", "/home")):
        sandbox += ["--ro-bind", str(repo), str(repo)]
    sandbox += [
        "--dev",
        "/dev",
        "--perms",
        "1777",
        "--tmpfs",
        "/dev/shm",
        "--proc",
        "/proc",
        "--tmpfs",
        "/var/lib",
        "--tmpfs",
        "/var/cache",
    ]
    sandbox += ["--bind", str(state), "/var/lib/pimodule", "--bind", str(cache), "/var/cache/pimodule"]
    sandbox += ["--ro-bind", str(conf), "/srv", "--chdir", "/var/lib/pimodule"]
    sandbox += ["--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-net", "--unshare-cgroup-try"]
    sandbox += ["--new-session", "--die-with-parent", "--setenv", "NUMBA_CACHE_DIR", "/var/cache/pimodule/numba"]
    sandbox += ["--setenv", "PYTHONDONTWRITEBYTECODE", "1", "--setenv", "HOME", "/var/lib/pimodule", "--"]
    sandbox += ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all"]
    sandbox += ["--bounding-set=-all", "--no-new-privs", "--"]
    sandbox += ["/usr/bin/python3", "/srv/launcher.py", "/srv/seccomp.json"]

    probe = subprocess.run(
        [*sandbox, str(python), "/srv/probe.py", "/var/lib/pimodule/models/violin.onnx"],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert probe.returncode == 0, probe.stderr[-3000:]
    results = ast.literal_eval(probe.stdout.splitlines()[0])
    assert results["write state"] == results["write cache"] == results["write tmp"] == "allowed", results
    assert results["write /opt"] == results["write /etc"] == "EROFS", results
    assert results["packet socket"] == results["netlink socket"] == "EPERM" and results["udp socket"] == "allowed"
    assert results["setuid 0"] == "EPERM" and results["mlockall"] in ("allowed", "ENOMEM"), results  # not filtered
    assert results["sched_fifo"] in ("allowed", "EPERM"), results  # EPERM only where the host forbids RT
    assert "numba 2.0" in probe.stdout and "validate True" in probe.stdout, probe.stdout + probe.stderr[-2000:]
    assert list((cache / "numba").rglob("*.nbi")), "numba wrote no cache"

    run = subprocess.run(
        [*sandbox, str(python.with_name("pimodule")), "run", "--config", "/srv/config.toml", "--offline"]
        + ["--duration", "2"],
        capture_output=True,
        text=True,
        timeout=900,  # a cold numba cache: the voice kernel compiles first (minutes on a busy machine)
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert "played on" in run.stdout and "exceptions 0" in run.stdout, run.stdout + run.stderr[-2000:]
    assert "Operation not permitted" not in run.stderr and "Read-only file system" not in run.stderr, run.stderr
