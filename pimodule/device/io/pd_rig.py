"""Running the patches in a real, headless Pd: a harness around them driven over FUDI, with taps
that report what the patch shows (tests, screenshots)."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path

from pimodule.device.io.pd_canvas import PATCH_DIR
from pimodule.device.jackdummy import stop_process

TAPS = ("pm-in", "pm-shown", "pm-fx-in", "pm-fx-shown", "pm-fx")

HARNESS_TAIL = """#X obj 10 800 netreceive -u {ctrl};
#X obj 10 820 t a a;
#X obj 100 840 list split 1;
#X obj 10 860 list split 1;
#X obj 10 880 s;
"""


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def harness(objects: list[str], ctrl: int, fwd: int) -> str:
    """A harness patch: ``objects`` (``#X obj ...;`` lines, first), the FUDI driver, the taps."""
    lines = ["#N canvas 0 0 1180 640 10;", *objects]
    n = len(objects)
    lines += HARNESS_TAIL.format(ctrl=ctrl).splitlines()
    conns = [(n, 0, n + 1, 0), (n + 1, 1, n + 2, 0), (n + 2, 0, n + 4, 1), (n + 1, 0, n + 3, 0), (n + 3, 1, n + 4, 0)]
    k = n + 5
    lines.append("#X obj 600 900 netsend -u;")
    netsend = k
    k += 1
    lines.append("#X obj 600 860 loadbang;")
    lines.append(f"#X msg 600 880 connect 127.0.0.1 {fwd};")
    conns += [(k, 0, k + 1, 0), (k + 1, 0, netsend, 0)]
    k += 2
    for j, tap in enumerate(TAPS):
        lines += [f"#X obj {700 + 90 * j} 800 r {tap};", f"#X obj {700 + 90 * j} 820 list prepend {tap};"]
        lines += [f"#X obj {700 + 90 * j} 840 list prepend send;", f"#X obj {700 + 90 * j} 860 list trim;"]
        conns += [(k, 0, k + 1, 0), (k + 1, 0, k + 2, 0), (k + 2, 0, k + 3, 0), (k + 3, 0, netsend, 0)]
        k += 4
    lines += [f"#X connect {a} {o} {b} {i};" for a, o, b, i in conns]
    return "\n".join(lines) + "\n"


class PdRig:
    """Pd (headless, or with its GUI on ``display``) running a harness in ``tmp_path``."""

    def __init__(
        self,
        tmp_path: Path,
        objects: list[str],
        display: str | None = None,
        name: str = "harness.pd",
        stubs: Path | None = None,
    ):
        self.fwd = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.fwd.bind(("127.0.0.1", 0))
        self.fwd.settimeout(0.05)
        self.ctrl_port = free_udp_port()
        self.ctrl = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.lines: list[str] = []
        path = tmp_path / name
        path.write_text(harness(objects, self.ctrl_port, self.fwd.getsockname()[1]))
        self.log_path = tmp_path / (name + ".log")
        self.log = self.log_path.open("w")
        cmd = ["pd", "-nosound", "-nomidi", "-nrt", "-sleepgrain", "0.5", "-stderr"]
        cmd += [] if display else ["-nogui"]
        cmd += ["-path", str(PATCH_DIR), *(["-path", str(stubs)] if stubs else []), "-open", str(path)]
        env = {**os.environ, "DISPLAY": display} if display else None
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, env=env)

    def close(self) -> None:
        stop_process(self.proc)
        self.fwd.close()
        self.ctrl.close()
        self.log.close()

    def pump(self) -> None:
        try:
            while True:
                data = self.fwd.recvfrom(65536)[0].decode()
                self.lines += [ln.strip() for ln in data.split(";") if ln.strip()]
        except TimeoutError:
            pass

    def send(self, fudi: str) -> None:
        self.ctrl.sendto((fudi + ";\n").encode(), ("127.0.0.1", self.ctrl_port))

    def drive(self, fudi: str, until, timeout_s: float = 20.0, resend_s: float = 0.25) -> None:
        """Send ``fudi`` (``<receive name> <message>``) every ``resend_s`` until ``until()``."""
        end = time.monotonic() + timeout_s
        next_send = 0.0
        while time.monotonic() < end:
            if fudi and time.monotonic() >= next_send:
                self.send(fudi)
                next_send = time.monotonic() + resend_s
            self.pump()
            if until():
                return
            time.sleep(0.05)
        raise AssertionError(f"timed out on {fudi!r}; Pd forwarded {self.lines[-12:]}")

    def saw(self, prefix: str) -> bool:
        return any(ln.startswith(prefix) for ln in self.lines)

    def shown(self, tap: str = "pm-shown", dump: str = "pm-dump", settle_s: float = 0.3) -> dict[str, list[str]]:
        """Ask the panel what it shows (``dump``); ``{"slider 0": [label, value], ...}``."""
        self.lines = [ln for ln in self.lines if not ln.startswith(tap)]
        self.send(dump)
        end = time.monotonic() + settle_s
        while time.monotonic() < end:
            self.pump()
            time.sleep(0.02)
        out: dict[str, list[str]] = {}
        for ln in self.lines:
            if ln.startswith(tap + " "):
                words = ln.split()[1:]
                if words and words[0] in ("slider", "range", "menu"):
                    out[" ".join(words[:2])] = words[2:]
                elif (
                    len(words) >= 3
                    and tap == "pm-fx-shown"
                    and words[0] not in ("match", "hold", "estimator", "error", "inputs")
                ):
                    out[" ".join(words[:2])] = words[2:]
                else:
                    out[words[0]] = words[1:]
        return out

    def wait_shown(self, check, timeout_s: float = 20.0, **kw) -> dict[str, list[str]]:
        end = time.monotonic() + timeout_s
        last: dict = {}
        while time.monotonic() < end:
            last = self.shown(**kw)
            try:
                if check(last):
                    return last
            except (KeyError, IndexError, ValueError):
                pass
        raise AssertionError(f"the panel did not come to show it; it shows {last}")

    def pd_errors(self) -> list[str]:
        text = self.log_path.read_text()
        return [ln for ln in text.splitlines() if "error" in ln or "couldn't" in ln or "failed" in ln]


def near(words: list[str], value: float, tol: float) -> bool:
    return abs(float(words[-1]) - value) <= tol
