"""Screenshots of the panels in Pd's GUI under Xvfb (``python -m pimodule.device.io.pd_gen
--screenshots DIR``), and reading slider positions back from them (a test compares them with
what the module shows)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np

from pimodule.core.controls import DDSP_CONTROLS
from pimodule.core.fx_specs import SPECS as FX_SPECS
from pimodule.device.io.controller import MemoryController
from pimodule.device.io.osc import OscConfig, OscServer
from pimodule.device.io.pd_canvas import (
    FX_H,
    FX_W,
    HEADER,
    PANEL_H,
    PANEL_W,
    PATCH_DIR,
)
from pimodule.device.io.pd_rig import PdRig, free_udp_port
from pimodule.device.jackdummy import stop_process

TEDIUM_STUBS = PATCH_DIR.parents[1] / "tests" / "device" / "io" / "pd_stubs"


SHOT_TOOLS = ("Xvfb", "xdotool", "import")  # apt: xvfb xdotool imagemagick, and puredata-gui for Pd's GUI


def shot_tools_missing() -> list[str]:
    """What the screenshots need and this machine lacks (Pd's GUI: puredata-gui)."""
    missing = [t for t in ("pd", *SHOT_TOOLS) if shutil.which(t) is None]
    if not Path("/usr/lib/puredata/tcl/pd-gui.tcl").is_file() and shutil.which("pd-gui") is None:
        missing.append("pd-gui (puredata-gui)")
    return missing


class Xvfb:
    """A virtual X display (``Xvfb :N``) on the first free display number from 91."""

    def __init__(self, size: str = "1600x1000x24"):
        for n in range(91, 200):
            if not Path(f"/tmp/.X11-unix/X{n}").exists() and not Path(f"/tmp/.X{n}-lock").exists():
                break
        self.display = f":{n}"
        self.proc = subprocess.Popen(
            ["Xvfb", self.display, "-screen", "0", size, "-nolisten", "tcp"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        end = time.monotonic() + 10
        while not Path(f"/tmp/.X11-unix/X{n}").exists():
            if time.monotonic() > end or self.proc.poll() is not None:
                self.close()
                raise RuntimeError(f"Xvfb {self.display} did not start")
            time.sleep(0.05)

    def close(self) -> None:
        stop_process(self.proc)

    def window(self, name: str, timeout_s: float = 20.0) -> str:
        """The id of the window whose title contains ``name``."""
        end = time.monotonic() + timeout_s
        env = {**os.environ, "DISPLAY": self.display}
        while time.monotonic() < end:
            out = subprocess.run(["xdotool", "search", "--name", name], capture_output=True, text=True, env=env)
            ids = out.stdout.split()
            if ids:
                return ids[-1]
            time.sleep(0.2)
        raise TimeoutError(f"no window named {name!r} on {self.display}")

    def grab(self, window: str, path: Path | None = None, crop: tuple[int, int, int, int] | None = None):
        """A window's pixels: saved as ``path`` (PNG, cropped to ``(x, y, w, h)``), or returned as an
        ``(height, width, 3)`` uint8 array."""
        env = {**os.environ, "DISPLAY": self.display}
        cmd = ["import", "-silent", "-window", window]
        if path is not None:
            if crop is not None:
                cmd += ["-crop", f"{crop[2]}x{crop[3]}+{crop[0]}+{crop[1]}", "+repage"]
            subprocess.run([*cmd, "-strip", f"png:{path}"], check=True, env=env, timeout=30)
            return path
        ppm = subprocess.run(
            [*cmd, "-depth", "8", "ppm:-"], check=True, capture_output=True, env=env, timeout=30
        ).stdout
        m = re.match(rb"P6\s+(\d+)\s+(\d+)\s+255\s", ppm)
        if m is None:
            raise ValueError("import did not write an 8-bit PPM")
        w, h = int(m.group(1)), int(m.group(2))
        return np.frombuffer(ppm[m.end() : m.end() + w * h * 3], np.uint8).reshape(h, w, 3)


def _rgb(hex_color: str) -> tuple[int, int, int]:
    return tuple(int(hex_color[k : k + 2], 16) for k in (1, 3, 5))


def find_panel(img, width: int) -> tuple[int, int]:
    """Top-left corner of a panel in a screenshot: the first run of ``width`` header pixels."""
    header = np.all(img == _rgb(HEADER), axis=2)
    for y in range(header.shape[0]):
        row = np.concatenate(([0], header[y].astype(np.int8), [0]))
        edges = np.flatnonzero(np.diff(row))
        for start, stop in zip(edges[::2], edges[1::2]):
            if stop - start >= width - 2:
                return int(start), y
    raise LookupError("no panel header in the screenshot")


def knob_x(img, origin: tuple[int, int], x: int, y: int, w: int, h: int) -> float:
    """Where a horizontal slider's knob is drawn, in pixels from the slider's left edge: the
    centre of the dark columns inside its frame (the frame's own columns excluded)."""
    ox, oy = origin
    band = img[oy + y + 3 : oy + y + h - 2, ox + x + 2 : ox + x + w - 1].astype(int).sum(axis=2)
    dark = np.flatnonzero((band < 200).all(axis=0))
    if dark.size == 0:
        raise LookupError("no knob drawn")
    return float(dark.mean()) + 2


def expected_knob_x(value: float, lo: float, hi: float, w: int) -> float:
    """Pd draws an hsl's knob at (value - min) / (max - min) * (width - 1) from its left edge."""
    return (value - lo) / (hi - lo) * (w - 1)


SHOWN = {  # what the screenshots show (in the in-memory controller and the fx estimate)
    "values": {
        "pitch_shift_semitones": 7.0,
        "loudness_offset_db": -5.0,
        "harmonic_gain_db": -6.0,
        "noise_gain_db": -18.0,
    },
    "gain_db": -6.0,
    "mode": "transfer",
    "cv": {"cv1": 1.25, "cv2": 3.5, "cv3": 0.0, "pot1": 0.4, "pot2": 2.1, "pot3": -1.0},
    "status": {
        "cpu_percent": 23.4,
        "callback_p99_us": 812.0,
        "xruns": 0,
        "late_blocks": 2,
        "callback_wake_p99_us": 96.0,
        "callback_work_p99_us": 705.0,
        "late_at_wake": 1,
        "fx_inputs": "L wet, R input",  # the blind estimator in use
    },
    "fx": {
        "eq": (0, 0.12, {"low_shelf_gain_db": 0.0, "peak2_gain_db": 1.5}),
        "compressor": (1, 0.93, {"threshold_db": -24.0, "ratio": 4.0, "attack_ms": 8.0, "release_ms": 120.0}),
        "distortion": (1, 0.81, {"drive_db": 18.0, "output_gain_db": -9.0}),
        "reverb": (1, 0.66, {"decay_s": 0.8, "damping_pct": 40.0, "mix_pct": 25.0}),
        "gain": (1, 1.0, {"gain_db": -3.0}),
    },
    # the words and sizes beside the boxes (a blind model's calibrated estimate)
    "words": {"eq": "off, sure", "compressor": "on, sure", "distortion": "on, probably", "reverb": "on, probably"},
    "strength": {"reverb": 0.25},
}


def make_screenshots(outdir: Path, work: Path) -> dict:
    """Screenshots of the panels as a Pd user sees them, with values set in a daemon (the in-memory
    server): ``panel.png``, ``fx.png`` (the graph-on-parent areas of ``pimodule.pd``'s two boxes) and
    ``tedium.png`` (``pimodule_tedium.pd`` opened, stand-ins for its externals). Returns what the
    checks need: the window's pixels and where the panels are."""
    outdir.mkdir(parents=True, exist_ok=True)
    work.mkdir(parents=True, exist_ok=True)
    ctl = MemoryController(
        DDSP_CONTROLS, models={"violin": DDSP_CONTROLS, "cello": DDSP_CONTROLS, "flute": DDSP_CONTROLS}
    )
    ctl.load_model("violin")
    for name, value in SHOWN["values"].items():
        ctl.set_control(name, value)
    ctl.set_gain_db(SHOWN["gain_db"])
    ctl.set_mode(SHOWN["mode"])
    ctl.cv.update(SHOWN["cv"])
    ctl.extra_status = dict(SHOWN["status"])
    ctl.set_fx_match(True)
    srv = OscServer(ctl, OscConfig(port=0))
    srv.start()
    x = Xvfb()
    rig = None
    out: dict = {}
    try:
        objects = [
            f"#X obj 10 10 pimodule_panel 127.0.0.1 {srv.port} {free_udp_port()};",
            f"#X obj {PANEL_W + 30} 10 pimodule_fx 127.0.0.1 {srv.port} {free_udp_port()};",
        ]
        rig = PdRig(work, objects, display=x.display, name="screens.pd")
        win = x.window("screens.pd")
        rig.wait_shown(
            lambda s: abs(float(s["slider 3"][1]) - SHOWN["values"]["noise_gain_db"]) < 0.05 and s["model"] == ["2"],
            timeout_s=30,
        )
        rig.drive("pm-model ghost", lambda: rig.saw("pm-in pimodule error"))
        messages = [(f"/pimodule/fx/{e}/active", a) for e, (a, _, _) in SHOWN["fx"].items()]
        messages += [(f"/pimodule/fx/{e}/probability", p) for e, (_, p, _) in SHOWN["fx"].items()]
        messages += [  # every parameter, as the daemon sends them: the ones not set at their defaults
            (f"/pimodule/fx/{e}/{spec.name}", ps.get(spec.name, spec.default))
            for e, (_, _, ps) in SHOWN["fx"].items()
            for spec in FX_SPECS[e]
        ]
        messages.append(("/pimodule/fx/distortion/mode", "soft"))
        messages += [(f"/pimodule/fx/{e}/confidence", w) for e, w in SHOWN["words"].items()]
        messages += [(f"/pimodule/fx/{e}/strength", v) for e, v in SHOWN["strength"].items()]

        def fx_shown(s):
            for address, value in messages:
                srv.broadcast(address, value)
            return (
                abs(float(s["distortion drive_db"][0]) - 18.0) < 0.1
                and s["match"] == ["1"]
                and " ".join(s.get("inputs", [])).replace("\\", "") == SHOWN["status"]["fx_inputs"]
            )

        rig.wait_shown(fx_shown, tap="pm-fx-shown", dump="pm-fx-dump", timeout_s=30)
        time.sleep(1.0)  # the GUI draws what Pd sent it
        img = x.grab(win)
        panel_at = find_panel(img, PANEL_W)
        fx_at = find_panel(img[:, panel_at[0] + PANEL_W :], FX_W)
        fx_at = (fx_at[0] + panel_at[0] + PANEL_W, fx_at[1])
        x.grab(win, outdir / "panel.png", (*panel_at, PANEL_W, PANEL_H))
        x.grab(win, outdir / "fx.png", (*fx_at, FX_W, FX_H))
        out.update(img=img, panel_at=panel_at, fx_at=fx_at, pd_errors=rig.pd_errors())
        rig.close()
        rig = None
        # the Tedium patch itself, as someone opening it sees it (stand-ins for its externals)
        tedium_proc = subprocess.Popen(
            [
                "pd",
                "-nosound",
                "-nomidi",
                "-nrt",
                "-stderr",
                "-path",
                str(PATCH_DIR),
                "-path",
                str(TEDIUM_STUBS),
                "-open",
                str(PATCH_DIR / "pimodule_tedium.pd"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env={**os.environ, "DISPLAY": x.display},
        )
        try:
            tw = x.window("pimodule_tedium.pd")
            time.sleep(1.0)
            x.grab(tw, outdir / "tedium.png")
        finally:
            stop_process(tedium_proc)
    finally:
        if rig is not None:
            rig.close()
        x.close()
        srv.stop()
    return out
