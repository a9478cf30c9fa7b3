"""The PureData patches in firmware/pd_patches/, written by this module::

    python -m pimodule.device.io.pd_gen            # rewrites pimodule_panel.pd, pimodule_fx.pd, pimodule.pd
    python -m pimodule.device.io.pd_gen --check    # exit 1 if the committed files differ (a test runs this)

Why generated: a panel that shows only controls (graph-on-parent), follows the daemon's status
and relabels itself from the model's control table needs many small, repetitive objects per
slider row and per model-menu row; written by hand they drift. Generated, every row is the same,
and the fixed tables come from the one place they are defined:

- ``pimodule_panel.pd``: the model's controls are **asked of the daemon** (``/pimodule/controls``
  → one ``spec`` reply per control) and asked again whenever status shows another model or a
  swap, because a user's model may have other controls than the DDSP voice. Fixed here: only the
  number of rows (:data:`N_ROWS`), the modes and the output gain's range (``GAIN_SPEC``).
- ``pimodule_fx.pd``: the effect chain is the module's own (``pimodule/core/fx_specs.py``, shared
  by the estimator and the twins): its sliders are generated from ``SPECS``.
- ``pimodule.pd``: both, as graph-on-parent boxes, connected to 127.0.0.1:9000.

``pimodule_tedium.pd`` is written by hand (no GUI).

Pd vanilla ≥ 0.51 objects only (``oscparse``, ``oscformat``, ``netsend -u -b``, ``netreceive -u
-b``, ``pdcontrol``, ``list``, IEM GUIs). ``$0`` appears in objects only (Pd 0.53's message boxes
do not expand it).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pimodule.core.controls import CV_NAMES, DDSP_CONTROLS, GAIN_SPEC, MODES
from pimodule.core.fx_specs import SPECS
from pimodule.device.io.controller import MemoryController
from pimodule.device.io.osc import OscConfig, OscServer
from pimodule.device.jackdummy import stop_process

PATCH_DIR = Path(__file__).resolve().parents[3] / "firmware" / "pd_patches"
N_ROWS = 6  # control sliders shown (a model with more controls: the first six)
N_MODELS = 8  # model menu entries shown
N_FX_MODELS = 4  # estimator menu entries shown
BG = "#e4e9ee"  # panel background
HEADER = "#2f3b45"
ROW_OFF = "#c9ced3"  # an unused slider row
PLAYING = "#9fd89f"  # the menu row that plays
CONNECTED, LOST = "#9fd89f", "#f0a0a0"
FONT = 10
FX_RED = "#fcfcfc"

# Geometry (pixels from the top-left corner of the graph-on-parent area); the screenshot test
# reads slider positions from these.
PANEL_W, PANEL_H = 470, 420
ROW_X, ROW_Y0, ROW_DY, ROW_W, ROW_H = 8, 58, 34, 200, 14
MODE_X, MODE_Y = 318, 42
GAIN_X, GAIN_Y, GAIN_W = 318, 112, 100
MODEL_X, MODEL_Y, CELL = 318, 170, 15
STATUS_Y = 262
FX_W, FX_H = 630, 546
FX_COLS = {"eq": (6, 112), "compressor": (216, 112), "gain": (216, 346), "distortion": (426, 112), "reverb": (426, 236)}
FX_SL_W, FX_DY = 120, 26


def hsl_y(row: int) -> int:
    """Top of slider row ``row`` in the panel."""
    return ROW_Y0 + ROW_DY * row


@dataclass
class Canvas:
    """A Pd canvas being written: objects get their index in creation order."""

    x: int = 0
    y: int = 50
    w: int = 700
    h: int = 500
    name: str | None = None  # a subpatch's name
    lines: list[str] = field(default_factory=list)
    conns: list[tuple[int, int, int, int]] = field(default_factory=list)
    coords: str | None = None
    restore_at: tuple[int, int] = (0, 0)

    def _add(self, line: str) -> int:
        self.lines.append(line)
        return len(self.lines) - 1

    def obj(self, x: int, y: int, text: str) -> int:
        return self._add(f"#X obj {x} {y} {text};")

    def msg(self, x: int, y: int, text: str) -> int:
        return self._add(f"#X msg {x} {y} {text};")

    def text(self, x: int, y: int, text: str) -> int:
        return self._add(f"#X text {x} {y} {text};")

    def floatatom(self, x: int, y: int, width: int, label: str = "-", receive: str = "-", send: str = "-") -> int:
        pos = 2 if label != "-" else 0  # label above
        return self._add(f"#X floatatom {x} {y} {width} 0 0 {pos} {label} {receive} {send} 0;")

    def symbolatom(self, x: int, y: int, width: int, label: str = "-", receive: str = "-") -> int:
        pos = 2 if label != "-" else 0
        return self._add(f"#X symbolatom {x} {y} {width} 0 0 {pos} {label} {receive} - 0;")

    def hsl(self, x, y, w, h, lo, hi, send="empty", receive="empty", label="empty", log=False) -> int:
        return self.obj(
            x,
            y,
            f"hsl {w} {h} {lo:g} {hi:g} {int(log)} 0 {send} {receive} {label} 0 -7 0 {FONT} "
            "#fcfcfc #000000 #000000 0 1",
        )

    def tgl(self, x, y, size=15, send="empty", receive="empty", label="empty") -> int:
        return self.obj(
            x, y, f"tgl {size} 0 {send} {receive} {label} {size + 4} {size // 2} 0 {FONT} #fcfcfc #000000 #000000 0 1"
        )

    def bng(self, x, y, size=15, send="empty", receive="empty", label="empty") -> int:
        return self.obj(
            x,
            y,
            f"bng {size} 250 50 0 {send} {receive} {label} {size + 4} {size // 2} 0 {FONT} #fcfcfc #000000 #000000",
        )

    def vradio(self, x, y, n, send="empty", receive="empty") -> int:
        return self.obj(x, y, f"vradio {CELL} 1 0 {n} {send} {receive} empty 0 -8 0 {FONT} #fcfcfc #000000 #000000 0")

    def cnv(self, x, y, w, h, bg=BG, receive="empty", label="empty", lx=4, ly=None, size=FONT, fg="#202020") -> int:
        ly = h // 2 if ly is None else ly
        return self.obj(x, y, f"cnv 1 {w} {h} empty {receive} {label} {lx} {ly} 0 {size} {bg} {fg} 0")

    def connect(self, a: int, outlet: int, b: int, inlet: int = 0) -> None:
        self.conns.append((a, outlet, b, inlet))

    def chain(self, *ids: int) -> int:
        for a, b in zip(ids, ids[1:]):
            self.connect(a, 0, b, 0)
        return ids[-1]

    def send_to(self, src: int, outlet: int, x: int, y: int, name: str) -> None:
        self.connect(src, outlet, self.obj(x, y, f"s {name}"))

    def subpatch(self, sub: Canvas, x: int, y: int) -> int:
        sub.restore_at = (x, y)
        return self._add(sub.render())

    def render(self) -> str:
        head = f"#N canvas {self.x} {self.y} {self.w} {self.h} {self.name or FONT};"
        body = [head, *self.lines]
        if self.coords:
            body.append(self.coords)
        body += [f"#X connect {a} {o} {b} {i};" for a, o, b, i in self.conns]
        if self.name:
            body.append(f"#X restore {self.restore_at[0]} {self.restore_at[1]} pd {self.name};")
        return "\n".join(body)


# -- shared pieces ---------------------------------------------------------------------------------
def _connection(g: Canvas, listen_default: int, rate_hz: float, connect_name: str, inbox: str) -> int:
    """Creation arguments ``[host] [port] [listen]`` (defaults 127.0.0.1 9000 ``listen_default``;
    a first argument that is a number is the port, as in earlier versions), netsend/netreceive,
    and every 2 s ``reply/port`` then ``status/subscribe``. Returns the [list trim] after oscparse."""
    lb = g.obj(10, 10, "loadbang")
    tb = g.obj(10, 30, "t b b b")
    g.connect(lb, 0, tb)
    args = g.msg(120, 50, "args")
    g.connect(tb, 2, args)
    split = g.chain(args, g.obj(120, 70, "pdcontrol"), g.obj(120, 90, "list split 1"))
    rest = g.obj(260, 130, "list")
    typ = g.obj(120, 110, "route float symbol")
    as_ports = g.obj(120, 150, "list append")
    hosttrig = g.obj(220, 150, "t b s")
    host = g.obj(220, 190, "symbol 127.0.0.1")
    ports = g.obj(120, 230, "list append 0 0")
    g.connect(split, 1, rest, 1)
    g.connect(split, 1, as_ports, 1)  # the old form: every argument is a port
    g.connect(split, 0, typ)
    g.connect(split, 2, ports)  # no arguments: the defaults
    g.connect(typ, 0, as_ports)
    g.connect(as_ports, 0, ports)
    g.connect(typ, 1, hosttrig)
    g.connect(hosttrig, 1, host, 1)
    g.connect(hosttrig, 0, rest)
    g.connect(rest, 0, ports)
    unpack = g.chain(ports, g.obj(120, 250, "unpack f f"))
    sel_p, sel_l = g.obj(120, 270, "sel 0"), g.obj(220, 270, "sel 0")
    port = g.obj(120, 310, "f")
    tl = g.obj(220, 310, "t f f")  # [v] only stores: the listen message gets its own copy
    vlisten = g.obj(220, 330, r"v \$0-listen")
    g.connect(unpack, 0, sel_p)
    g.connect(unpack, 1, sel_l)
    g.connect(sel_p, 1, port)
    g.connect(g.chain(sel_p, g.msg(120, 290, "9000")), 0, port)
    g.connect(sel_l, 1, tl)
    g.connect(g.chain(sel_l, g.msg(220, 290, str(listen_default))), 0, tl)
    g.connect(tl, 1, vlisten)
    listen = g.msg(320, 330, r"listen \$1")
    g.connect(tl, 0, listen)
    # connect (also [s pm-connect] / [s pm-fx-connect] host port)
    pk = g.obj(10, 420, "pack s f")
    g.connect(port, 0, pk, 1)
    g.connect(tb, 1, host)  # the host (kept in [symbol]'s right inlet) with the port: connect
    g.connect(host, 0, pk)
    conn_msg = g.msg(10, 440, r"disconnect \, connect \$1 \$2")
    g.connect(pk, 0, conn_msg)
    g.connect(g.obj(160, 420, f"r {connect_name}"), 0, conn_msg)
    ns = g.obj(10, 560, "netsend -u -b")
    g.chain(g.obj(10, 480, r"r \$0-out"), g.obj(10, 500, "list prepend send"), g.obj(10, 520, "list trim"), ns)
    g.connect(conn_msg, 0, ns)
    nr = g.obj(320, 360, "netreceive -u -b")
    g.connect(listen, 0, nr)
    tr = g.chain(nr, g.obj(320, 380, "oscparse"), g.obj(320, 400, "list trim"))
    g.send_to(tr, 0, 440, 420, inbox)
    # keep-alive: the reply port, then (re)subscribe; at once, then every 2 s
    tk = g.chain(g.obj(500, 10, "metro 2000"), g.obj(500, 30, "t b b"))
    g.connect(tb, 0, tk - 1)
    fmt_reply = g.obj(500, 100, "oscformat pimodule reply port")
    fmt_sub = g.obj(660, 100, "oscformat pimodule status subscribe")
    v_reply = g.obj(500, 60, r"v \$0-listen")
    g.connect(tk, 1, v_reply)
    g.connect(v_reply, 0, fmt_reply)
    v_sub = g.obj(660, 60, r"v \$0-listen")
    g.connect(tk, 0, v_sub)
    g.chain(v_sub, g.msg(660, 80, rf"\$1 {rate_hz:g}"), fmt_sub)
    g.send_to(fmt_reply, 0, 500, 130, r"\$0-out")
    g.send_to(fmt_sub, 0, 660, 130, r"\$0-out")
    return tr


def _indicator(g: Canvas, src: int, outlet: int, x: int, y: int) -> None:
    """The header's connection box: green ("connected") while status comes, red after 3 s without."""
    t = g.obj(x, y, "t b b")
    g.connect(src, outlet, t)
    gate = g.obj(x, y + 20, "spigot 1")  # recolour once per change, not per message
    g.connect(t, 1, gate)
    ok = g.msg(x, y + 40, f"color {CONNECTED} #000000 \\, label connected")
    g.connect(gate, 0, ok)
    close = g.msg(x + 60, y + 20, "0")
    g.connect(ok, 0, close)
    g.connect(close, 0, gate, 1)
    dly = g.obj(x + 150, y, "delay 3000")
    g.connect(t, 0, dly)
    lost = g.msg(x + 150, y + 40, f"color {LOST} #000000 \\, label no_reply")
    g.connect(dly, 0, lost)
    g.connect(g.chain(dly, g.msg(x + 230, y + 20, "1")), 0, gate, 1)
    s = g.obj(x, y + 70, r"s \$0-conn")
    g.connect(ok, 0, s)
    g.connect(lost, 0, s)


def _hold(g: Canvas, src: int, outlet: int, hold: str, x: int, y: int) -> None:
    """Close ``hold`` at once, open it 0.75 s after the last move: status then takes over again."""
    t = g.obj(x, y, "t b b")
    g.connect(src, outlet, t)
    s = g.obj(x, y + 60, f"s {hold}")
    g.connect(g.chain(t, g.obj(x, y + 20, "delay 750"), g.msg(x, y + 40, "1")), 0, s)
    g.connect(t, 1, g.msg(x + 80, y + 20, "0"))
    g.connect(len(g.lines) - 1, 0, s)


def _follow(g: Canvas, src: int, outlet: int, target: str, hold: str, x: int, y: int) -> None:
    """A status value → ``set`` to ``target`` unless ``hold`` is closed (the user moves it)."""
    gate = g.obj(x, y, "spigot 1")
    g.connect(src, outlet, gate)
    g.connect(g.obj(x + 60, y - 20, f"r {hold}"), 0, gate, 1)
    g.send_to(g.chain(gate, g.msg(x, y + 20, r"set \$1")), 0, x, y + 40, target)


def _user_input(g: Canvas, sends: tuple[str, ...], key: str, x: int, y: int) -> int:
    """What a widget sends (its send names) while it is not being read back (``pm-dump`` bangs
    widgets: their output then goes to [s $0-shown-<key>] only). Returns the user-side gate."""
    gate = g.obj(x, y + 20, "spigot 1")
    back = g.obj(x + 70, y + 20, "spigot 0")
    for k, name in enumerate(sends):
        r = g.obj(x + 70 * k, y, f"r {name}")
        g.connect(r, 0, gate)
        if k == 0:
            g.connect(r, 0, back)
    flag = g.obj(x + 140, y, rf"r \$0-rb-{key}")
    g.connect(flag, 0, back, 1)
    g.connect(g.chain(flag, g.obj(x + 140, y + 20, "== 0")), 0, gate, 1)
    g.send_to(back, 0, x + 70, y + 40, rf"\$0-shown-{key}")
    return gate


def _readback(g: Canvas, src: int, outlet: int, key: str, receive: str, x: int, y: int) -> None:
    """Bang the widget behind ``receive`` with its output diverted to [s $0-shown-<key>]."""
    t = g.obj(x, y, "t b b b")
    g.connect(src, outlet, t)
    flag = g.obj(x, y + 60, rf"s \$0-rb-{key}")
    g.connect(g.chain(t, g.msg(x, y + 20, "0")), 0, flag)
    g.connect(t, 2, g.msg(x + 60, y + 20, "1"))
    g.connect(len(g.lines) - 1, 0, flag)
    g.connect(t, 1, g.msg(x + 30, y + 40, "bang"))
    g.send_to(len(g.lines) - 1, 0, x + 30, y + 80, receive)


def _join_label(g: Canvas, src: int, outlet: int, target: str, x: int, y: int, max_chars: int = 90) -> None:
    """A list of words → one symbol, words joined by spaces (vanilla: each word's character
    codes, a space after it, then [list tosymbol]) → ``label`` to ``target``."""
    t0 = g.obj(x, y, "t a b")
    g.connect(src, outlet, t0)
    acc = g.obj(x + 200, y + 140, "list prepend")
    hold = g.obj(x + 200, y + 200, "list")
    clear = g.obj(x + 120, y + 20, "list")  # bang: an empty list clears the accumulator
    g.connect(t0, 1, clear)
    g.connect(clear, 0, acc, 1)
    g.connect(clear, 0, hold, 1)
    drip = g.obj(x, y + 40, "list split 1")
    g.connect(t0, 0, drip)
    rest = g.obj(x + 100, y + 80, "list")
    g.connect(drip, 1, rest, 1)
    t1 = g.obj(x, y + 60, "t b a")
    g.connect(drip, 0, t1)
    kind = g.obj(x, y + 80, "route float symbol")
    g.connect(t1, 1, kind)
    num = g.obj(x, y + 100, "makefilename %g")
    g.connect(kind, 0, num)
    codes = g.obj(x + 40, y + 120, "list fromsymbol")
    g.connect(num, 0, codes)
    g.connect(kind, 1, codes)
    g.connect(g.chain(codes, g.obj(x + 40, y + 140, "list append 32")), 0, acc)
    ta = g.obj(x + 200, y + 160, "t a a")
    g.connect(acc, 0, ta)
    g.connect(ta, 0, acc, 1)
    g.connect(ta, 1, hold, 1)
    g.connect(t1, 0, rest)
    g.connect(rest, 0, drip)
    g.connect(drip, 2, hold)  # nothing left: out with it
    trim = g.obj(x + 200, y + 220, f"list split {max_chars}")
    g.connect(hold, 0, trim)
    tosym = g.obj(x + 200, y + 240, "list tosymbol")
    g.connect(trim, 0, tosym)
    g.connect(trim, 2, tosym)
    g.send_to(g.chain(tosym, g.msg(x + 200, y + 260, r"label \$1")), 0, x + 200, y + 280, target)


def _menu(g: Canvas, prefix: str, n: int, models_in: str, playing_in: str, pick: str, radio: str, load: str, x, y):
    """A model menu: ``n`` rows labelled from the list sent to ``models_in``; the row whose name
    comes to ``playing_in`` turns green and the radio shows it; a click on a row that has a model
    sends its name to ``load``."""
    rm = g.obj(x, y, f"r {models_in}")
    store = g.obj(x + 600, y + 300, "list store")
    g.connect(rm, 0, store, 1)
    count = g.obj(x + 700, y + 20, "list length")
    g.connect(rm, 0, count)
    for k in range(n):
        xx = x + 130 * k
        sp = g.obj(xx, y + 20, f"list split {k}")
        g.connect(rm, 0, sp)
        first = g.obj(xx, y + 40, "list split 1")
        g.connect(sp, 1, first)
        name = g.obj(xx, y + 60, "symbol")
        g.connect(first, 0, name)
        none = g.msg(xx + 50, y + 60, "symbol -none-")
        g.connect(sp, 2, none)  # fewer than k + 1 models: this row is empty
        tn = g.obj(xx, y + 80, "t s s")
        g.connect(name, 0, tn)
        g.connect(none, 0, tn)
        target = g.obj(xx, y + 160, rf"s \$0-{prefix}{k}")
        lab = g.obj(xx, y + 100, "sel -none-")
        g.connect(tn, 0, lab)
        g.connect(g.chain(lab, g.msg(xx, y + 120, "label empty")), 0, target)
        g.connect(lab, 1, g.msg(xx + 50, y + 120, r"label \$1"))
        g.connect(len(g.lines) - 1, 0, target)
        mark = g.obj(xx, y + 200, "sel -none-")
        g.connect(tn, 1, mark, 1)
        g.connect(g.obj(xx + 60, y + 180, f"r {playing_in}"), 0, mark)
        on = g.obj(xx, y + 220, "t b b")
        g.connect(mark, 0, on)
        g.connect(on, 1, g.msg(xx, y + 240, f"color {PLAYING} #000000"))
        g.connect(len(g.lines) - 1, 0, target)
        g.connect(on, 0, g.msg(xx + 50, y + 260, f"set {k}"))
        g.send_to(len(g.lines) - 1, 0, xx + 50, y + 280, radio)
        g.connect(mark, 1, g.msg(xx + 60, y + 240, f"color {BG} #000000"))
        g.connect(len(g.lines) - 1, 0, target)
    gate = _user_input(g, (pick,), f"{prefix}menu", x, y + 320)
    mo = g.obj(x, y + 380, "moses")
    g.connect(gate, 0, mo)
    g.connect(count, 0, mo, 1)
    g.connect(g.chain(mo, g.msg(x, y + 400, r"get \$1 1")), 0, store)
    g.send_to(g.chain(store, g.obj(x + 600, y + 320, "symbol")), 0, x + 600, y + 340, load)


# -- pimodule_panel.pd -----------------------------------------------------------------------------
def panel() -> str:
    top = Canvas(60, 60, 760, 600)
    top.cnv(0, 0, PANEL_W, PANEL_H, BG)
    top.cnv(0, 0, PANEL_W, 24, HEADER, label="pimodule", fg="#ffffff", size=14, lx=6, ly=12)
    top.cnv(PANEL_W - 120, 4, 114, 16, LOST, receive=r"\$0-conn", label="no_reply", lx=4, ly=8)
    top.text(ROW_X - 2, 26, "controls of the model (its table)")
    for i in range(N_ROWS):
        y = hsl_y(i)
        top.hsl(ROW_X, y, ROW_W, ROW_H, 0, 1, rf"\$0-s{i}", rf"\$0-r{i}", "-")
        top.floatatom(ROW_X + ROW_W + 8, y - 1, 8, receive=rf"\$0-a{i}", send=rf"\$0-n{i}")
        top.cnv(ROW_X + ROW_W + 70, y - 1, 30, 16, BG, receive=rf"\$0-u{i}", lx=0, ly=8)
    top.text(MODE_X - 2, 26, "mode")
    top.vradio(MODE_X, MODE_Y, len(MODES), r"\$0-mode-pick", r"\$0-mode-set")
    for k, mode in enumerate(MODES):
        top.cnv(MODE_X + CELL + 3, MODE_Y + CELL * k, 70, CELL, BG, label=mode, lx=2, ly=7)
    top.hsl(GAIN_X, GAIN_Y, GAIN_W, ROW_H, GAIN_SPEC.min, GAIN_SPEC.max, r"\$0-gain-s", r"\$0-gain-r", "gain_dB")
    top.floatatom(GAIN_X + GAIN_W + 6, GAIN_Y - 1, 5, receive=r"\$0-gain-a", send=r"\$0-gain-n")
    top.tgl(GAIN_X, GAIN_Y + 22, 15, r"\$0-mute-s", r"\$0-mute-r", "mute")
    top.text(MODEL_X - 2, MODEL_Y - 16, "model (green: playing)")
    top.vradio(MODEL_X, MODEL_Y, N_MODELS, r"\$0-model-pick", r"\$0-model-set")
    for k in range(N_MODELS):
        top.cnv(MODEL_X + CELL + 3, MODEL_Y + CELL * k, 128, CELL - 1, BG, receive=rf"\$0-m{k}", lx=3, ly=7)
    top.text(ROW_X - 2, STATUS_Y, "status")
    for k, (label, name) in enumerate(
        (("cpu_%", "cpu"), ("p99_us", "p99"), ("xruns", "xruns"), ("late", "late"), ("errors", "errors"))
    ):
        top.floatatom(ROW_X + 62 * k, STATUS_Y + 34, 7, label=label, receive=rf"\$0-st-{name}")
    top.symbolatom(ROW_X + 312, STATUS_Y + 34, 16, label="playing", receive=r"\$0-st-model")
    for k, cv in enumerate(CV_NAMES):
        top.floatatom(ROW_X + 52 * k, STATUS_Y + 74, 6, label=cv, receive=rf"\$0-cv-{cv}")
    top.symbolatom(ROW_X + 312, STATUS_Y + 74, 10, label="mode", receive=r"\$0-st-mode")
    top.cnv(0, PANEL_H - 24, PANEL_W, 22, "#f4f0e0", receive=r"\$0-err", label="no_errors", lx=6, ly=11)
    top.coords = f"#X coords 0 -1 1 1 {PANEL_W} {PANEL_H} 2 0 0;"
    top.text(0, PANEL_H + 10, "[pimodule_panel host port listen]: defaults 127.0.0.1 9000 9001. README.md")
    g = Canvas(100, 100, 1500, 900, name="guts")
    _panel_guts(g)
    top.subpatch(g, 0, PANEL_H + 40)
    return top.render() + "\n"


def _panel_guts(g: Canvas) -> None:
    tr = _connection(g, 9001, 4, "pm-connect", "pm-in")
    r = g.chain(
        g.obj(320, 600, "route pimodule"), g.obj(320, 620, "route status controls models model control gain error")
    )
    g.connect(tr, 0, r - 1)
    st = g.obj(
        20,
        660,
        "route cpu_percent callback_p99_us xruns late_blocks errors model mode gain_db mute cv control models swaps",
    )
    g.connect(r, 0, st)
    _indicator(g, r, 0, 1100, 560)
    for k, name in enumerate(("cpu", "p99", "xruns", "late", "errors")):
        g.send_to(st, k, 20 + 70 * k, 700, rf"\$0-st-{name}")
    # the playing model: shown, marked in the menu; another one → ask for its control table
    tm = g.chain(g.obj(380, 700, "symbol"), g.obj(380, 720, "t s s s"))
    g.connect(st, 5, tm - 1)
    g.send_to(tm, 2, 380, 800, r"\$0-st-model")
    g.send_to(tm, 1, 430, 800, r"\$0-playing")
    changed = g.obj(480, 760, "sel -none-")
    g.connect(tm, 1, changed, 1)  # the new name is remembered after the comparison (right first)
    g.connect(tm, 2, changed)
    getc = g.obj(540, 800, r"s \$0-getcontrols")
    g.connect(changed, 1, g.obj(540, 780, "t b"))
    g.connect(len(g.lines) - 1, 0, getc)
    tmode = g.chain(g.obj(600, 700, "symbol"), g.obj(600, 720, "t s s"))
    g.connect(st, 6, tmode - 1)
    g.send_to(tmode, 1, 660, 740, r"\$0-st-mode")
    msel = g.obj(600, 740, "sel " + " ".join(MODES))
    g.connect(tmode, 0, msel)
    for k in range(len(MODES)):
        g.connect(msel, k, g.msg(600 + 50 * k, 760, f"set {k}"))
        g.send_to(len(g.lines) - 1, 0, 600 + 50 * k, 780, r"\$0-mode-set")
    _follow(g, st, 7, r"\$0-gain-set", r"\$0-gain-hold", 800, 700)
    _follow(g, st, 8, r"\$0-mute-r", r"\$0-mute-hold", 900, 700)
    cvr = g.obj(1000, 700, "route " + " ".join(CV_NAMES))
    g.connect(st, 9, cvr)
    for k, cv in enumerate(CV_NAMES):
        g.send_to(cvr, k, 1000 + 60 * k, 730, rf"\$0-cv-{cv}")
    g.send_to(st, 10, 20, 740, r"\$0-ctlstat")
    g.send_to(st, 11, 120, 740, r"\$0-models")
    g.connect(g.chain(g.obj(220, 740, "change -1"), g.obj(220, 760, "t b")), 0, getc)
    g.connect(st, 12, len(g.lines) - 2)
    # replies ------------------------------------------------------------------------------------
    _controls_table(g, r, 1)
    g.send_to(r, 2, 120, 640, r"\$0-models")  # /pimodule/models (the reply to model/list)
    ml = g.obj(200, 640, "route loading installed")
    g.connect(r, 3, ml)
    g.connect(g.chain(ml, g.obj(200, 660, "t b")), 0, getc)
    g.send_to(g.chain(g.obj(280, 660, "t b")), 0, 280, 680, "pm-list-models")
    g.connect(ml, 1, len(g.lines) - 2)
    g.send_to(r, 4, 1100, 640, r"\$0-ctlstat")  # a clamped echo: the value applied
    g.send_to(g.chain(g.obj(1200, 640, "t f"), g.msg(1200, 660, r"set \$1")), 0, 1200, 680, r"\$0-gain-set")
    g.connect(r, 5, len(g.lines) - 3)
    _join_label(g, r, 6, r"\$0-err", 1300, 640)
    # requests -----------------------------------------------------------------------------------
    _menu(g, "m", N_MODELS, r"\$0-models", r"\$0-playing", r"\$0-model-pick", r"\$0-model-set", "pm-model", 20, 1000)
    g.send_to(g.obj(900, 1000, "r pm-pick"), 0, 900, 1020, r"\$0-model-set")
    fmt = g.chain(
        g.obj(1100, 1000, "r pm-model"), g.obj(1100, 1020, "symbol"), g.obj(1100, 1040, "oscformat pimodule model load")
    )
    g.send_to(fmt, 0, 1100, 1060, r"\$0-out")
    _mode_gain_mute(g)
    both = g.chain(g.obj(700, 1400, r"r \$0-gain-set"), g.obj(700, 1420, "t a a"))
    g.send_to(both, 0, 700, 1440, r"\$0-gain-r")
    g.send_to(both, 1, 780, 1440, r"\$0-gain-a")
    for i in range(N_ROWS):
        _row(g, i)
    _panel_dump(g)
    g.connect(g.obj(1200, 10, "r pm-controls"), 0, getc)
    tget = g.chain(g.obj(1200, 40, r"r \$0-getcontrols"), g.obj(1200, 60, "t b b"))
    g.send_to(g.chain(tget, g.obj(1200, 100, "oscformat pimodule controls")), 0, 1200, 120, r"\$0-out")
    g.connect(tget, 1, g.msg(1300, 80, "0"))
    g.send_to(len(g.lines) - 1, 0, 1300, 100, r"\$0-spec-reset")
    fl = g.chain(g.obj(1400, 10, "r pm-list-models"), g.obj(1400, 40, "oscformat pimodule model list"))
    g.send_to(fl, 0, 1400, 60, r"\$0-out")


def _controls_table(g: Canvas, r: int, outlet: int) -> None:
    """``spec name unit min max default scale`` → row k (counted from the request); ``end n``
    → rows from n on are unused."""
    cr = g.obj(20, 820, "route spec end")
    g.connect(r, outlet, cr)
    t = g.obj(20, 840, "t a b")
    g.connect(cr, 0, t)
    cnt = g.obj(120, 880, "f")
    inc = g.obj(160, 880, "+ 1")
    pre = g.obj(20, 900, "list prepend")
    g.connect(t, 1, cnt)  # the row number first (b), then the spec (a)
    g.connect(cnt, 0, pre, 1)
    g.connect(cnt, 0, inc)
    g.connect(inc, 0, cnt, 1)
    g.connect(g.obj(200, 860, r"r \$0-spec-reset"), 0, cnt, 1)
    g.connect(t, 0, pre)
    rows = g.obj(20, 920, "route " + " ".join(str(i) for i in range(N_ROWS)))
    g.connect(pre, 0, rows)
    for i in range(N_ROWS):
        g.send_to(rows, i, 20 + 70 * i, 940, rf"\$0-spec{i}")
    endn = g.obj(500, 860, "t f")
    g.connect(cr, 1, endn)
    for i in range(N_ROWS):
        m = g.obj(500 + 70 * i, 880, f"moses {i + 1}")
        g.connect(endn, 0, m)
        g.send_to(m, 0, 500 + 70 * i, 900, rf"\$0-off{i}")


def _mode_gain_mute(g: Canvas) -> None:
    x, y = 20, 1500
    gate = _user_input(g, (r"\$0-mode-pick",), "mode", x, y)
    sel = g.obj(x, y + 60, "sel 0 1 2")
    g.connect(gate, 0, sel)
    fmt = g.obj(x, y + 120, "oscformat pimodule mode")
    for k, mode in enumerate(MODES):
        g.connect(sel, k, g.msg(x + 70 * k, y + 90, f"symbol {mode}"))
        g.connect(len(g.lines) - 1, 0, fmt)
    g.connect(g.chain(g.obj(x + 220, y + 60, "r pm-mode"), g.obj(x + 220, y + 80, "symbol")), 0, fmt)
    g.send_to(fmt, 0, x, y + 140, r"\$0-out")
    g.send_to(g.obj(x + 300, y + 60, "r pm-mode-pick"), 0, x + 300, y + 80, r"\$0-mode-set")
    # gain: its slider, its number box or [s pm-gain]
    gx = x + 420
    gate = _user_input(g, (r"\$0-gain-s", r"\$0-gain-n", "pm-gain"), "gain", gx, y)
    tg = g.obj(gx, y + 60, "t f f b")
    g.connect(gate, 0, tg)
    _hold(g, tg, 2, r"\$0-gain-hold", gx + 160, y + 80)
    g.send_to(
        g.chain(g.obj(gx + 60, y + 80, "t f"), g.msg(gx + 60, y + 100, r"set \$1")),
        0,
        gx + 60,
        y + 120,
        r"\$0-gain-set",
    )
    g.connect(tg, 1, len(g.lines) - 3)
    g.send_to(
        g.chain(g.obj(gx, y + 140, "t f"), g.obj(gx, y + 160, "oscformat pimodule gain")), 0, gx, y + 180, r"\$0-out"
    )
    g.connect(tg, 0, len(g.lines) - 3)
    # mute: the toggle or [s pm-mute]; what it shows is kept for pm-dump (a toggle has no "get")
    mx = x + 800
    gate = _user_input(g, (r"\$0-mute-s", "pm-mute"), "mute", mx, y)
    tm = g.obj(mx, y + 60, "t f f b")
    g.connect(gate, 0, tm)
    _hold(g, tm, 2, r"\$0-mute-hold", mx + 160, y + 80)
    g.send_to(tm, 1, mx + 60, y + 80, r"\$0-mute-shown")
    g.send_to(
        g.chain(g.obj(mx, y + 100, "t f"), g.obj(mx, y + 120, "oscformat pimodule mute")), 0, mx, y + 140, r"\$0-out"
    )
    g.connect(tm, 0, len(g.lines) - 3)
    shown = g.obj(mx + 200, y + 140, r"v \$0-mute-value")
    g.connect(g.obj(mx + 200, y + 100, r"r \$0-mute-shown"), 0, shown)
    g.connect(g.chain(g.obj(mx + 300, y + 80, r"r \$0-mute-r"), g.obj(mx + 300, y + 100, "route set")), 0, shown)


def _row(g: Canvas, i: int) -> None:
    """A slider row: named, labelled and ranged by its spec, follows status, sends when moved."""
    x, y = 20 + 260 * i, 1800
    sr = rf"\$0-r{i}"  # the slider; values ("set v") go to both slider and number box: $0-set<i>
    sv = rf"\$0-set{i}"
    both = g.chain(g.obj(x + 160, y + 700, rf"r {sv}"), g.obj(x + 160, y + 720, "t a a"))
    g.send_to(both, 0, x + 160, y + 740, sr)
    g.send_to(both, 1, x + 220, y + 740, rf"\$0-a{i}")
    # spec: name unit min max default scale; right to left: name, scale, range, default, on
    # ([route] passes "name unit ..." on as a message named after the control: [list] makes it a list)
    t = g.chain(g.obj(x, y, rf"r \$0-spec{i}"), g.obj(x + 80, y, "list"), g.obj(x, y + 20, "t b a a a a"))
    un = g.obj(x, y + 50, "unpack s s f f f s")
    g.connect(t, 4, un)
    tname = g.obj(x, y + 80, "t s s s")
    g.connect(un, 0, tname)
    g.send_to(tname, 2, x + 120, y + 100, rf"\$0-name{i}")
    fmt = g.obj(x, y + 300, "oscformat pimodule control -none-")
    g.connect(tname, 1, g.msg(x, y + 100, r"set pimodule control \$1"))
    g.connect(len(g.lines) - 1, 0, fmt)
    g.connect(tname, 0, g.msg(x + 60, y + 120, r"label \$1"))
    g.send_to(len(g.lines) - 1, 0, x + 60, y + 140, sr)
    g.send_to(tname, 0, x + 180, y + 100, rf"\$0-label{i}")
    g.connect(un, 1, g.msg(x + 120, y + 120, r"label \$1"))
    g.send_to(len(g.lines) - 1, 0, x + 120, y + 140, rf"\$0-u{i}")
    scr = g.chain(g.obj(x + 200, y + 40, "list split 5"), g.obj(x + 200, y + 60, "list trim"))
    g.connect(t, 3, scr - 1)
    g.connect(scr - 1, 1, scr)
    route = g.obj(x + 200, y + 80, "route lin log")
    g.connect(scr, 0, route)
    g.connect(route, 0, g.msg(x + 200, y + 100, "lin"))
    g.send_to(len(g.lines) - 1, 0, x + 200, y + 120, sr)
    g.connect(route, 1, g.msg(x + 240, y + 100, "log"))
    g.send_to(len(g.lines) - 1, 0, x + 240, y + 120, sr)
    g.connect(t, 2, g.msg(x + 60, y + 170, r"range \$3 \$4 \, color #fcfcfc #000000 #000000"))
    g.send_to(len(g.lines) - 1, 0, x + 60, y + 190, sr)
    g.connect(t, 2, g.msg(x + 120, y + 210, r"\$3 \$4"))
    g.send_to(len(g.lines) - 1, 0, x + 120, y + 230, rf"\$0-rng{i}")
    g.connect(t, 1, g.msg(x + 180, y + 190, r"set \$5"))
    g.send_to(len(g.lines) - 1, 0, x + 180, y + 210, sv)
    active = g.obj(x, y + 280, "spigot 0")  # an unused row sends nothing
    g.connect(t, 0, g.msg(x + 240, y + 170, "1"))
    g.connect(len(g.lines) - 1, 0, active, 1)
    # unused: grey, unnamed, silent
    toff = g.chain(g.obj(x + 200, y + 240, rf"r \$0-off{i}"), g.obj(x + 200, y + 260, "t b b b b"))
    off = f"label - \\, range 0 1 \\, lin \\, set 0 \\, color {ROW_OFF} {ROW_OFF} #808080"
    g.connect(toff, 0, g.msg(x + 200, y + 280, off))
    g.send_to(len(g.lines) - 1, 0, x + 200, y + 300, sr)
    g.connect(toff, 0, g.msg(x + 160, y + 280, "set 0"))
    g.send_to(len(g.lines) - 1, 0, x + 160, y + 300, rf"\$0-a{i}")
    g.connect(toff, 1, g.msg(x + 230, y + 320, "label empty"))
    g.send_to(len(g.lines) - 1, 0, x + 230, y + 340, rf"\$0-u{i}")
    g.connect(toff, 2, g.msg(x + 250, y + 280, "0"))
    g.connect(len(g.lines) - 1, 0, active, 1)
    g.connect(toff, 3, g.msg(x + 280, y + 300, "symbol -none-"))
    none = len(g.lines) - 1
    g.send_to(none, 0, x + 280, y + 320, rf"\$0-name{i}")
    g.send_to(none, 0, x + 280, y + 340, rf"\$0-label{i}")
    # status "control <name> <value>" → this row when the name is its own
    split = g.chain(g.obj(x, y + 360, r"r \$0-ctlstat"), g.obj(x, y + 380, "list split 1"))
    val = g.obj(x + 80, y + 420, "f")
    g.connect(split, 1, val, 1)
    match = g.obj(x, y + 400, "sel -none-")
    g.connect(split, 0, match)
    g.connect(g.obj(x + 100, y + 380, rf"r \$0-name{i}"), 0, match, 1)
    g.connect(match, 0, val)
    gate = g.obj(x + 80, y + 440, "spigot 1")
    g.connect(val, 0, gate)
    g.connect(g.obj(x + 140, y + 420, rf"r \$0-hold{i}"), 0, gate, 1)
    g.send_to(g.chain(gate, g.msg(x + 80, y + 460, r"set \$1")), 0, x + 80, y + 480, sv)
    # moved by the user (slider or number box) or by [s pm-slider <row> <value>]
    user = _user_input(g, (rf"\$0-s{i}", rf"\$0-n{i}"), f"row{i}", x, y + 520)
    tin = g.obj(x, y + 580, "t f f b")
    g.connect(user, 0, tin)
    _hold(g, tin, 2, rf"\$0-hold{i}", x + 150, y + 600)
    g.connect(tin, 1, g.msg(x + 60, y + 600, r"set \$1"))
    g.send_to(len(g.lines) - 1, 0, x + 60, y + 620, sv)
    g.chain(tin, active, fmt)
    g.send_to(fmt, 0, x, y + 320, r"\$0-out")


def _panel_dump(g: Canvas) -> None:
    """[s pm-dump] (bang) → what the panel shows, to [r pm-shown], one list per widget, read back
    from the widgets themselves where Pd allows it (an IEM slider or radio outputs its value on a
    bang): ``slider <row> <label> <value>``, ``range <row> <min> <max>``, ``gain <v>``, ``mode <i>``,
    ``model <i>``; ``mute <v>`` (what the toggle was set to: a bang would flip it)."""
    x, y = 20, 2600
    widgets = [(f"row{i}", rf"\$0-r{i}") for i in range(N_ROWS)] + [
        ("gain", r"\$0-gain-r"),
        ("mode", r"\$0-mode-set"),
        ("mmenu", r"\$0-model-set"),
    ]
    t = g.chain(g.obj(x, y, "r pm-dump"), g.obj(x, y + 20, "t " + " ".join(["b"] * (len(widgets) + 1))))
    out = g.obj(x, y + 400, "s pm-shown")
    for k, (key, receive) in enumerate(widgets):
        _readback(g, t, len(widgets) - k, key, receive, x + 140 * k, y + 60)
    for i in range(N_ROWS):
        xx = x + 140 * i
        tv = g.obj(xx, y + 200, "t b f")
        g.connect(g.obj(xx, y + 180, rf"r \$0-shown-row{i}"), 0, tv)
        pk = g.obj(xx, y + 240, "pack s f")
        g.connect(tv, 1, pk, 1)
        label = g.obj(xx, y + 220, "symbol -")
        g.connect(g.obj(xx + 60, y + 200, rf"r \$0-label{i}"), 0, label, 1)
        g.connect(g.chain(tv, label), 0, pk)
        g.connect(g.chain(pk, g.msg(xx, y + 260, f"slider {i} \\$1 \\$2")), 0, out)
        keep = g.obj(xx, y + 300, "list")
        g.connect(g.obj(xx + 60, y + 280, rf"r \$0-rng{i}"), 0, keep, 1)
        g.connect(tv, 0, keep)
        g.connect(g.chain(keep, g.msg(xx, y + 320, f"range {i} \\$1 \\$2")), 0, out)
    for k, (key, word) in enumerate((("gain", "gain"), ("mode", "mode"), ("mmenu", "model"))):
        xx = x + 140 * (N_ROWS + k)
        g.connect(g.chain(g.obj(xx, y + 200, rf"r \$0-shown-{key}"), g.msg(xx, y + 220, f"{word} \\$1")), 0, out)
    g.connect(g.chain(g.obj(x + 1400, y + 180, r"v \$0-mute-value"), g.msg(x + 1400, y + 200, r"mute \$1")), 0, out)
    g.connect(t, 0, len(g.lines) - 2)
    # [s pm-slider <row> <value>]: move a row's slider as a hand would (tests, other patches)
    rs = g.obj(x + 1600, y, "r pm-slider")
    rt = g.obj(x + 1600, y + 20, "route " + " ".join(str(i) for i in range(N_ROWS)))
    g.connect(rs, 0, rt)
    for i in range(N_ROWS):
        g.send_to(rt, i, x + 1600 + 70 * i, y + 40, rf"\$0-r{i}")
    pc = g.chain(g.obj(x + 2100, y, "r pm-control"), g.obj(x + 2100, y + 20, "t a a"))  # name value
    setc = g.obj(x + 2100, y + 100, "oscformat pimodule control -none-")
    name = g.obj(x + 2200, y + 40, "list split 1")
    g.connect(pc, 1, name)  # the address first, then the value
    g.connect(g.chain(name, g.msg(x + 2200, y + 60, r"set pimodule control \$1")), 0, setc)
    value = g.obj(x + 2100, y + 60, "list split 1")
    g.connect(pc, 0, value)
    g.connect(value, 1, setc)
    g.send_to(setc, 0, x + 2100, y + 120, r"\$0-out")


# -- pimodule_fx.pd --------------------------------------------------------------------------------
def fx_panel() -> str:
    top = Canvas(60, 60, 800, 700)
    top.cnv(0, 0, FX_W, FX_H, BG)
    top.cnv(0, 0, FX_W, 24, HEADER, label="pimodule_fx", fg="#ffffff", size=14, lx=6, ly=12)
    top.cnv(FX_W - 120, 4, 114, 16, LOST, receive=r"\$0-conn", label="no_reply", lx=4, ly=8)
    top.tgl(8, 32, 15, r"\$0-match-s", r"\$0-match-r", "match_(R_through_the_chain)")
    top.tgl(8, 52, 15, r"\$0-hold-s", r"\$0-hold-r", "hold")
    top.bng(8, 72, 15, r"\$0-est-s", "empty", "estimate_now")
    top.floatatom(216, 44, 7, label="estimates", receive=r"\$0-st-n")
    top.floatatom(276, 44, 7, label="last_ms", receive=r"\$0-st-ms")
    top.symbolatom(336, 44, 8, label="mode", receive=r"\$0-st-mode")
    top.text(424, 26, "estimator (green: in use)")
    top.vradio(426, 42, N_FX_MODELS, r"\$0-fxm-pick", r"\$0-fxm-set")
    for k in range(N_FX_MODELS):
        top.cnv(426 + CELL + 3, 42 + CELL * k, 120, CELL - 1, BG, receive=rf"\$0-f{k}", lx=3, ly=7)
    for effect, (x0, y0) in FX_COLS.items():
        top.cnv(x0, y0, 200, 18, "#cfd8e0", label=effect, lx=4, ly=9, size=12)
        top.tgl(x0, y0 + 22, 14, "empty", rf"\$0-{effect}-active", "on")
        top.hsl(x0 + 54, y0 + 24, 80, 10, 0, 1, rf"\$0-o-{effect}-probability", rf"\$0-{effect}-probability", "p")
        top.floatatom(x0 + 140, y0 + 22, 5, receive=rf"\$0-{effect}-probability")
        y = y0 + 54
        if effect == "distortion":
            top.symbolatom(x0 + 140, y0 + 1, 6, receive=r"\$0-distortion-mode")
        for spec in SPECS[effect]:
            top.hsl(
                x0,
                y,
                FX_SL_W,
                10,
                spec.min,
                spec.max,
                send=rf"\$0-o-{effect}-{spec.name}",
                receive=rf"\$0-{effect}-{spec.name}",
                label=spec.name,
                log=spec.scale == "log",
            )
            top.floatatom(x0 + FX_SL_W + 6, y - 3, 7, receive=rf"\$0-{effect}-{spec.name}")
            y += FX_DY
    top.cnv(0, FX_H - 24, FX_W, 22, "#f4f0e0", receive=r"\$0-err", label="no_errors", lx=6, ly=11)
    top.coords = f"#X coords 0 -1 1 1 {FX_W} {FX_H} 2 0 0;"
    top.text(0, FX_H + 10, "[pimodule_fx host port listen]: defaults 127.0.0.1 9000 9002. README.md")
    g = Canvas(100, 100, 1500, 900, name="guts")
    _fx_guts(g)
    top.subpatch(g, 0, FX_H + 40)
    return top.render() + "\n"


def _fx_guts(g: Canvas) -> None:
    tr = _connection(g, 9002, 1, "pm-fx-connect", "pm-fx-in")
    r = g.chain(g.obj(320, 600, "route pimodule"), g.obj(320, 620, "route status fx error"))
    g.connect(tr, 0, r - 1)
    _indicator(g, r, 0, 1100, 560)
    st = g.obj(20, 660, "route fx_estimates fx_estimate_ms mode fx_model fx_match fx_hold")
    g.connect(r, 0, st)
    g.send_to(st, 0, 20, 680, r"\$0-st-n")
    g.send_to(st, 1, 100, 680, r"\$0-st-ms")
    g.send_to(g.chain(g.obj(180, 680, "symbol")), 0, 180, 700, r"\$0-st-mode")
    g.connect(st, 2, len(g.lines) - 2)
    g.send_to(g.chain(g.obj(260, 680, "symbol")), 0, 260, 700, r"\$0-fxm-playing")
    g.connect(st, 3, len(g.lines) - 2)
    _follow(g, st, 4, r"\$0-match-r", r"\$0-match-hold", 360, 700)
    _follow(g, st, 5, r"\$0-hold-r", r"\$0-hold-hold", 460, 700)
    fx = g.obj(20, 760, "route models loading match hold " + " ".join(SPECS))
    g.connect(r, 1, fx)
    g.send_to(fx, 0, 20, 780, r"\$0-fxmodels")
    out = g.obj(20, 1200, "s pm-fx")
    for k, effect in enumerate(SPECS):
        x = 20 + 200 * k
        t = g.obj(x, 800, "t a a")
        g.connect(fx, 4 + k, t)
        g.connect(g.chain(g.obj(x + 60, 820, f"list prepend {effect}"), g.obj(x + 60, 840, "list trim")), 0, out)
        g.connect(t, 1, len(g.lines) - 2)
        names = ["active", "probability", "mode", *SPECS[effect].names]
        rr = g.obj(x, 880, "route " + " ".join(names))
        g.connect(t, 0, rr)
        for j, name in enumerate(names):
            if name == "mode":
                g.send_to(g.chain(g.obj(x, 900 + 20 * j, "symbol")), 0, x + 60, 900 + 20 * j, r"\$0-distortion-mode")
                g.connect(rr, j, len(g.lines) - 2)
                continue
            g.connect(rr, j, g.msg(x, 900 + 20 * j, r"set \$1"))
            g.send_to(len(g.lines) - 1, 0, x + 60, 900 + 20 * j, rf"\$0-{effect}-{name}")
    _join_label(g, r, 2, r"\$0-err", 1300, 640)
    _menu(
        g,
        "f",
        N_FX_MODELS,
        r"\$0-fxmodels",
        r"\$0-fxm-playing",
        r"\$0-fxm-pick",
        r"\$0-fxm-set",
        "pm-fx-model",
        20,
        1300,
    )
    # requests: match, hold, estimate now, estimator, set by hand; every 10 s: the estimator list
    x, y = 20, 1800
    for k, (name, path) in enumerate((("match", "match"), ("hold", "hold"))):
        gate = _user_input(g, (rf"\$0-{name}-s", f"pm-fx-{name}"), name, x + 300 * k, y)
        t = g.obj(x + 300 * k, y + 60, "t f f b")
        g.connect(gate, 0, t)
        _hold(g, t, 2, rf"\$0-{name}-hold", x + 300 * k + 120, y + 80)
        g.connect(t, 1, g.msg(x + 300 * k + 60, y + 80, r"set \$1"))
        g.send_to(len(g.lines) - 1, 0, x + 300 * k + 60, y + 100, rf"\$0-{name}-r")
        g.send_to(t, 1, x + 300 * k + 60, y + 120, rf"\$0-{name}-value")
        fmt = g.obj(x + 300 * k, y + 140, f"oscformat pimodule fx {path}")
        g.connect(t, 0, fmt)
        g.send_to(fmt, 0, x + 300 * k, y + 160, r"\$0-out")
        g.connect(
            g.chain(
                g.obj(x + 300 * k + 200, y + 100, f"r \\$0-{name}-r"), g.obj(x + 300 * k + 200, y + 120, "route set")
            ),
            0,
            g.obj(x + 300 * k + 200, y + 140, rf"v \$0-{name}-value"),
        )
    est = g.chain(g.obj(x + 600, y, r"r \$0-est-s"), g.obj(x + 600, y + 40, "oscformat pimodule fx estimate"))
    g.send_to(est, 0, x + 600, y + 60, r"\$0-out")
    model = g.chain(
        g.obj(x + 800, y, "r pm-fx-model"),
        g.obj(x + 800, y + 20, "symbol"),
        g.obj(x + 800, y + 40, "oscformat pimodule fx model"),
    )
    g.send_to(model, 0, x + 800, y + 60, r"\$0-out")
    fset = g.chain(
        g.obj(x + 1000, y, "r pm-fx-set"),
        g.obj(x + 1000, y + 20, "list"),
        g.obj(x + 1000, y + 40, "oscformat pimodule fx set"),
    )
    g.send_to(fset, 0, x + 1000, y + 60, r"\$0-out")
    lst = g.chain(
        g.obj(x + 1200, y, "loadbang"),
        g.obj(x + 1200, y + 20, "metro 10000"),
        g.obj(x + 1200, y + 40, "oscformat pimodule fx list"),
    )
    g.send_to(lst, 0, x + 1200, y + 60, r"\$0-out")
    _fx_dump(g)


def _fx_dump(g: Canvas) -> None:
    """[s pm-fx-dump] (bang) → [r pm-fx-shown]: ``<effect> <param> <value>`` for every slider,
    read back from the slider itself (banged, its output caught), ``<effect> active <v>`` (what
    the toggle was set to: a bang would flip it), ``match <v>``, ``hold <v>``, ``estimator <i>``."""
    x, y = 20, 2200
    t = g.chain(g.obj(x, y, "r pm-fx-dump"), g.obj(x, y + 20, "t b b b b b"))
    out = g.obj(x, y + 400, "s pm-fx-shown")
    flag = g.obj(x + 300, y + 60, r"s \$0-rb-fx")
    g.connect(t, 4, g.msg(x + 300, y + 40, "1"))
    g.connect(len(g.lines) - 1, 0, flag)
    g.connect(t, 2, g.msg(x + 360, y + 40, "0"))
    g.connect(len(g.lines) - 1, 0, flag)
    k = 0
    for effect in SPECS:
        for name in ("probability", *SPECS[effect].names):
            xx, yy = x + 110 * (k % 14), y + 100 + 100 * (k // 14)
            g.connect(t, 3, g.msg(xx, yy, "bang"))
            g.send_to(len(g.lines) - 1, 0, xx, yy + 20, rf"\$0-{effect}-{name}")
            gate = g.obj(xx, yy + 60, "spigot 0")
            g.connect(g.obj(xx, yy + 40, rf"r \$0-o-{effect}-{name}"), 0, gate)
            g.connect(g.obj(xx + 50, yy + 40, r"r \$0-rb-fx"), 0, gate, 1)
            g.connect(g.chain(gate, g.msg(xx, yy + 80, f"{effect} {name} \\$1")), 0, out)
            k += 1
    for j, effect in enumerate(SPECS):
        xx = x + 110 * j
        v = g.obj(xx, y + 420, rf"v \$0-v-{effect}-active")
        g.connect(g.chain(g.obj(xx, y + 380, rf"r \$0-{effect}-active"), g.obj(xx, y + 400, "route set")), 0, v)
        g.connect(t, 1, v)
        g.connect(g.chain(v, g.msg(xx, y + 440, f"{effect} active \\$1")), 0, out)
    for j, word in enumerate(("match", "hold")):
        v = g.obj(x + 600 + 80 * j, y + 420, rf"v \$0-{word}-value")
        g.connect(t, 1, v)
        g.connect(g.chain(v, g.msg(x + 600 + 80 * j, y + 440, f"{word} \\$1")), 0, out)
    _readback(g, t, 0, "fmenu", r"\$0-fxm-set", x + 800, y + 380)
    g.connect(g.chain(g.obj(x + 800, y + 480, r"r \$0-shown-fmenu"), g.msg(x + 800, y + 500, r"estimator \$1")), 0, out)


# -- pimodule.pd -----------------------------------------------------------------------------------
def main_patch() -> str:
    top = Canvas(20, 40, PANEL_W + FX_W + 60, max(PANEL_H, FX_H) + 90)
    top.obj(10, 30, "pimodule_panel 127.0.0.1 9000 9001")
    top.obj(PANEL_W + 30, 30, "pimodule_fx 127.0.0.1 9000 9002")
    top.text(10, 6, "pimodule: the module's panel and its fx estimates. A module elsewhere: edit the boxes' host")
    return top.render() + "\n"


# -- running the patches: a harness around them, driven over FUDI (tests, screenshots) -------------
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
                elif len(words) >= 3 and tap == "pm-fx-shown" and words[0] not in ("match", "hold", "estimator"):
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


# -- screenshots (Pd's GUI under Xvfb) ---------------------------------------------------------------
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
    "status": {"cpu_percent": 23.4, "callback_p99_us": 812.0, "xruns": 0, "late_blocks": 2},
    "fx": {
        "eq": (0, 0.12, {"low_shelf_gain_db": 0.0, "peak2_gain_db": 1.5}),
        "compressor": (1, 0.93, {"threshold_db": -24.0, "ratio": 4.0, "attack_ms": 8.0, "release_ms": 120.0}),
        "distortion": (1, 0.81, {"drive_db": 18.0, "output_gain_db": -9.0}),
        "reverb": (1, 0.66, {"decay_s": 0.8, "damping_pct": 40.0, "mix_pct": 25.0}),
        "gain": (1, 1.0, {"gain_db": -3.0}),
    },
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
        messages += [(f"/pimodule/fx/{e}/{n}", v) for e, (_, _, ps) in SHOWN["fx"].items() for n, v in ps.items()]
        messages.append(("/pimodule/fx/distortion/mode", "soft"))

        def fx_shown(s):
            for address, value in messages:
                srv.broadcast(address, value)
            return abs(float(s["distortion drive_db"][0]) - 18.0) < 0.1 and s["match"] == ["1"]

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


TEDIUM_STUBS = PATCH_DIR.parents[1] / "tests" / "device" / "io" / "pd_stubs"


PATCHES = {"pimodule_panel.pd": panel, "pimodule_fx.pd": fx_panel, "pimodule.pd": main_patch}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m pimodule.device.io.pd_gen", description=__doc__.split("\n")[0])
    p.add_argument("--check", action="store_true", help="exit 1 if a committed patch differs from what is generated")
    p.add_argument("--dir", type=Path, default=PATCH_DIR)
    p.add_argument("--screenshots", type=Path, metavar="DIR", help="write panel.png, fx.png, tedium.png there")
    args = p.parse_args(argv)
    if args.screenshots:
        missing = shot_tools_missing()
        if missing:
            print(f"screenshots need: {', '.join(missing)} (apt-get install xvfb xdotool imagemagick puredata-gui)")
            return 1
        with tempfile.TemporaryDirectory() as work:
            make_screenshots(args.screenshots, Path(work))
        print(f"wrote {', '.join(str(args.screenshots / n) for n in ('panel.png', 'fx.png', 'tedium.png'))}")
        return 0
    stale = []
    for name, make in PATCHES.items():
        text = make()
        path = args.dir / name
        if args.check:
            if not path.is_file() or path.read_text() != text:
                stale.append(name)
        else:
            path.write_text(text)
            print(f"wrote {path}")
    if stale:
        print(f"out of date: {', '.join(stale)} (run python -m pimodule.device.io.pd_gen)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
