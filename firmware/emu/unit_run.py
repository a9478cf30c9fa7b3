"""Start the daemon the way systemd starts pimodule.service, where systemd cannot run (make pi-check).

``python3 unit_run.py [--unit /etc/systemd/system/pimodule.service] [--timeout S] [--log FILE]
[--env NAME=VALUE] -- EXTRA-ARGS...`` (as root, inside the emulated Pi, with the system's python3; standard library
only).

It reads the *installed* unit and applies what it says: ``ExecStart`` (plus EXTRA-ARGS, which are
test-harness options only: ``--offline --duration --record --mode --cv simulated --osc-port
--flash-port``; ``--env`` adds to the environment, and is reported apart), ``User``/``Group``/``SupplementaryGroups`` (dropped to with ``setpriv``, with
``NoNewPrivileges`` and an empty capability bounding set as ``CapabilityBoundingSet=`` says),
``WorkingDirectory``, ``Environment``, ``UMask``, ``Nice`` and the ``Limit*`` resource limits;
it creates ``StateDirectory``/``CacheDirectory`` owned by the user and expects
``ConfigurationDirectory``. The environment is systemd's for a system service (``PATH``, ``HOME``,
``USER``, ``LOGNAME``, ``SHELL``, ``LANG``) plus ``NOTIFY_SOCKET``: a datagram socket this
script listens on, so READY=1 / WATCHDOG=1 / STOPPING=1 and their times are seen as systemd would
see them (``TimeoutStartSec`` is reported against, not enforced). The sandboxing settings
(``ProtectSystem``, ``SystemCallFilter``, ``DevicePolicy``, ``MemoryMax``, ...) need systemd as
PID 1 and are not applied: tests/device/io/test_systemd_unit.py reproduces them with bubblewrap.

Prints one JSON line: the command line run, the exit status, the notifications with their times
(seconds after the start), and which unit settings were applied or not.
"""

from __future__ import annotations

import argparse
import grp
import json
import os
import pwd
import resource
import shlex
import socket
import subprocess
import sys
import threading
import time

APPLIED = (
    "ExecStart",
    "User",
    "Group",
    "SupplementaryGroups",
    "WorkingDirectory",
    "Environment",
    "UMask",
    "Nice",
    "LimitRTPRIO",
    "LimitRTTIME",
    "LimitMEMLOCK",
    "LimitNICE",
    "LimitNOFILE",
    "NoNewPrivileges",
    "CapabilityBoundingSet",
    "AmbientCapabilities",
    "StateDirectory",
    "CacheDirectory",
    "ConfigurationDirectory",
    "Type",
    "NotifyAccess",
)
LIMITS = {
    "LimitRTPRIO": "RLIMIT_RTPRIO",
    "LimitRTTIME": "RLIMIT_RTTIME",
    "LimitMEMLOCK": "RLIMIT_MEMLOCK",
    "LimitNICE": "RLIMIT_NICE",
    "LimitNOFILE": "RLIMIT_NOFILE",
}


def parse_unit(path: str) -> dict[str, list[str]]:
    """[Service] settings of a unit file: key -> values in order (continuation lines joined)."""
    section, out, pending = None, {}, ""
    with open(path) as f:
        for raw in f:
            line = pending + raw.rstrip("\n")
            pending = ""
            if line.endswith("\\"):
                pending = line[:-1] + " "
                continue
            s = line.strip()
            if not s or s[0] in "#;":
                continue
            if s.startswith("[") and s.endswith("]"):
                section = s[1:-1]
                continue
            if section == "Service" and "=" in s:
                k, v = s.split("=", 1)
                out.setdefault(k.strip(), []).append(v.strip())
    return out


def _limit(value: str, key: str) -> int:
    if value == "infinity":
        return resource.RLIM_INFINITY
    if key == "LimitNICE" and value.startswith("-"):  # systemd: a nice value -> 20 - nice
        return 20 - int(value)
    return int(value)


def _notify_listener(path: str, events: list, t0: float, stop: threading.Event) -> threading.Thread:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    if os.path.exists(path):
        os.unlink(path)
    sock.bind(path)
    os.chmod(path, 0o666)
    sock.settimeout(0.2)

    def run():
        while not stop.is_set():
            try:
                data = sock.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            for item in data.decode(errors="replace").splitlines():
                events.append((round(time.monotonic() - t0, 2), item[:200]))
        sock.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="unit_run.py", description=__doc__.splitlines()[0])
    p.add_argument("--unit", default="/etc/systemd/system/pimodule.service")
    p.add_argument("--timeout", type=float, default=3600.0, help="kill the daemon after this many seconds")
    p.add_argument("--log", help="the daemon's stdout and stderr (the journal) go here")
    p.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="added to the unit's environment (a test harness's; reported as such)",
    )
    p.add_argument("extra", nargs="*", help="test-harness options appended to ExecStart")
    args = p.parse_args(argv)

    unit = parse_unit(args.unit)
    exec_start = shlex.split(unit["ExecStart"][-1])
    user = unit.get("User", ["root"])[-1]
    group = unit.get("Group", [user])[-1]
    groups = " ".join(unit.get("SupplementaryGroups", [])).split()
    pw = pwd.getpwnam(user)
    uid, gid = pw.pw_uid, grp.getgrnam(group).gr_gid

    # StateDirectory= and CacheDirectory= exist and belong to the user; ConfigurationDirectory= exists
    made = {}
    for key, base in (("StateDirectory", "/var/lib"), ("CacheDirectory", "/var/cache")):
        for name in " ".join(unit.get(key, [])).split():
            d = os.path.join(base, name)
            os.makedirs(d, exist_ok=True)
            os.chown(d, uid, gid)
            made[key] = d
    for name in " ".join(unit.get("ConfigurationDirectory", [])).split():
        if not os.path.isdir(os.path.join("/etc", name)):
            raise SystemExit(f"ConfigurationDirectory /etc/{name} is missing")

    run_dir = "/run/pi-check"
    os.makedirs(run_dir, exist_ok=True)
    os.chmod(run_dir, 0o755)
    notify_path = os.path.join(run_dir, "notify")
    env = {
        "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin",
        "LANG": "C.UTF-8",
        "HOME": pw.pw_dir,
        "USER": user,
        "LOGNAME": user,
        "SHELL": pw.pw_shell,
        "NOTIFY_SOCKET": notify_path,
    }
    for line in unit.get("Environment", []):
        for item in shlex.split(line):
            k, _, v = item.partition("=")
            env[k] = v
    for k in ("QEMU_CPU", "PIMODULE_EMU"):  # the emulated core (qemu reads it), and that this is a Pi emulation
        if k in os.environ:
            env[k] = os.environ[k]
    harness_env = dict(item.split("=", 1) for item in args.env)
    env.update(harness_env)
    if "WatchdogSec" in unit:
        sec = unit["WatchdogSec"][-1].rstrip("s")
        env["WATCHDOG_USEC"] = str(int(float(sec) * 1_000_000))

    umask = int(unit.get("UMask", ["0022"])[-1], 8)
    nice = int(unit.get("Nice", ["0"])[-1])
    limits = {LIMITS[k]: _limit(unit[k][-1], k) for k in LIMITS if k in unit}
    limit_errors = []
    # set here and inherited by the daemon (this script is only its parent)
    os.umask(umask)
    for name, value in limits.items():
        try:
            resource.setrlimit(getattr(resource, name), (value, value))
        except (ValueError, OSError) as err:
            limit_errors.append(f"{name}: {err}")
    if nice:
        try:
            os.nice(nice)
        except OSError as err:
            limit_errors.append(f"Nice: {err}")

    setpriv = ["setpriv", f"--reuid={uid}", f"--regid={gid}"]
    setpriv += [f"--groups={','.join(str(grp.getgrnam(g).gr_gid) for g in groups)}"] if groups else ["--clear-groups"]
    if unit.get("NoNewPrivileges", ["no"])[-1] in ("yes", "true", "1"):
        setpriv.append("--no-new-privs")
    if unit.get("CapabilityBoundingSet", ["x"])[-1] == "":
        setpriv += ["--bounding-set=-all", "--inh-caps=-all"]
    cmd = exec_start + list(args.extra)
    full = setpriv + ["--", "/usr/bin/env", "-i"] + [f"{k}={v}" for k, v in env.items()] + cmd

    events: list = []
    stop = threading.Event()
    t0 = time.monotonic()
    listener = _notify_listener(notify_path, events, t0, stop)
    log = open(args.log, "w") if args.log else None  # noqa: SIM115
    workdir = unit.get("WorkingDirectory", ["/"])[-1]
    proc = subprocess.Popen(
        full, cwd=workdir, stdout=log or None, stderr=subprocess.STDOUT if log else None, start_new_session=True
    )
    try:
        rc = proc.wait(args.timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)
        rc = proc.wait()
    elapsed = time.monotonic() - t0
    time.sleep(0.3)
    stop.set()
    listener.join(2)
    if log:
        log.close()
    ready = [t for t, e in events if e == "READY=1"]
    timeout_start = unit.get("TimeoutStartSec", ["90s"])[-1].rstrip("s")
    print(
        json.dumps(
            {
                "command": shlex.join(cmd),
                "user": user,
                "groups": groups,
                "workdir": workdir,
                "environment": {k: v for k, v in env.items() if k != "PATH" and k not in harness_env},
                "harness_environment": harness_env,
                "exit_code": rc,
                "seconds": round(elapsed, 1),
                "ready_after_s": ready[0] if ready else None,
                "timeout_start_s": float(timeout_start),
                "watchdog_pings": sum(1 for _, e in events if e == "WATCHDOG=1"),
                "notifications": [[t, e] for t, e in events if e != "WATCHDOG=1"][:20],
                "limit_errors": limit_errors,
                "applied": [k for k in APPLIED if k in unit],
                "not_applied": sorted(k for k in unit if k not in APPLIED),
                "directories": made,
            }
        )
    )
    return 0 if rc == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
