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
import sys
import tempfile
from pathlib import Path

from pimodule.core.controls import CV_NAMES, GAIN_SPEC, MODES
from pimodule.device.io.pd_canvas import (
    BG,
    CELL,
    FX_H,
    FX_W,
    GAIN_W,
    GAIN_X,
    GAIN_Y,
    MODE_X,
    MODE_Y,
    MODEL_X,
    MODEL_Y,
    N_MODELS,
    N_ROWS,
    PANEL_H,
    PANEL_W,
    PATCH_DIR,
    ROW_H,
    ROW_OFF,
    ROW_W,
    ROW_X,
    STATUS_Y,
    Canvas,
    connection,
    finish,
    follow,
    frame,
    hold,
    hsl_y,
    indicator,
    join_label,
    menu,
    user_input,
)
from pimodule.device.io.pd_dump import panel_dump
from pimodule.device.io.pd_fx import fx_panel
from pimodule.device.io.pd_shots import make_screenshots, shot_tools_missing

# the status fields the panel routes (outlets in this order), then the response's split
STATUS_ROUTED = tuple(
    "cpu_percent callback_p99_us xruns late_blocks errors model mode gain_db mute cv control models swaps".split()
)
# the status row that splits the response: (status field, label, receive name)
SPLIT = (
    ("callback_wake_p99_us", "wake_p99_us", "wake"),
    ("callback_work_p99_us", "work_p99_us", "work"),
    ("late_at_wake", "late_at_wake", "latewake"),
)


def panel() -> str:
    top = Canvas(60, 60, 760, 600)
    frame(top, PANEL_W, PANEL_H, "pimodule")
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
    # a late block's cause: the wake-up (the audio server, the system) or the callback's work
    for k, (_, label, name) in enumerate(SPLIT):
        top.floatatom(ROW_X + 86 * k, STATUS_Y + 114, 8, label=label, receive=rf"\$0-st-{name}")
    return finish(
        top, PANEL_W, PANEL_H, "[pimodule_panel host port listen]: defaults 127.0.0.1 9000 9001. README.md", _panel_guts
    )


def _panel_guts(g: Canvas) -> None:
    tr = connection(g, 9001, 4, "pm-connect", "pm-in")
    r = g.chain(
        g.obj(320, 600, "route pimodule"), g.obj(320, 620, "route status controls models model control gain error")
    )
    g.connect(tr, 0, r - 1)
    st = g.obj(
        20,
        660,
        "route " + " ".join(STATUS_ROUTED + tuple(field for field, _, _ in SPLIT) + ("last_error",)),
    )
    g.connect(r, 0, st)
    indicator(g, r, 0, 1100, 560)
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
    follow(g, st, 7, r"\$0-gain-set", r"\$0-gain-hold", 800, 700)
    follow(g, st, 8, r"\$0-mute-r", r"\$0-mute-hold", 900, 700)
    cvr = g.obj(1000, 700, "route " + " ".join(CV_NAMES))
    g.connect(st, 9, cvr)
    for k, cv in enumerate(CV_NAMES):
        g.send_to(cvr, k, 1000 + 60 * k, 730, rf"\$0-cv-{cv}")
    g.send_to(st, 10, 20, 740, r"\$0-ctlstat")
    g.send_to(st, 11, 120, 740, r"\$0-models")
    g.connect(g.chain(g.obj(220, 740, "change -1"), g.obj(220, 760, "t b")), 0, getc)
    g.connect(st, 12, len(g.lines) - 2)
    for k, (_, _, name) in enumerate(SPLIT):
        g.send_to(st, len(STATUS_ROUTED) + k, 20 + 90 * k, 840, rf"\$0-st-{name}")
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
    err = join_label(g, r, 6, r"\$0-err", 1300, 640)
    g.connect(st, len(STATUS_ROUTED) + len(SPLIT), err)  # last_error: a refusal whose datagram was lost
    # requests -----------------------------------------------------------------------------------
    menu(g, "m", N_MODELS, r"\$0-models", r"\$0-playing", r"\$0-model-pick", r"\$0-model-set", "pm-model", 20, 1000)
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
    panel_dump(g)
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
    gate = user_input(g, (r"\$0-mode-pick",), "mode", x, y)
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
    gate = user_input(g, (r"\$0-gain-s", r"\$0-gain-n", "pm-gain"), "gain", gx, y)
    tg = g.obj(gx, y + 60, "t f f b")
    g.connect(gate, 0, tg)
    hold(g, tg, 2, r"\$0-gain-hold", gx + 160, y + 80)
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
    gate = user_input(g, (r"\$0-mute-s", "pm-mute"), "mute", mx, y)
    tm = g.obj(mx, y + 60, "t f f b")
    g.connect(gate, 0, tm)
    hold(g, tm, 2, r"\$0-mute-hold", mx + 160, y + 80)
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
    user = user_input(g, (rf"\$0-s{i}", rf"\$0-n{i}"), f"row{i}", x, y + 520)
    tin = g.obj(x, y + 580, "t f f b")
    g.connect(user, 0, tin)
    hold(g, tin, 2, rf"\$0-hold{i}", x + 150, y + 600)
    g.connect(tin, 1, g.msg(x + 60, y + 600, r"set \$1"))
    g.send_to(len(g.lines) - 1, 0, x + 60, y + 620, sv)
    g.chain(tin, active, fmt)
    g.send_to(fmt, 0, x, y + 320, r"\$0-out")


def main_patch() -> str:
    top = Canvas(20, 40, PANEL_W + FX_W + 60, max(PANEL_H, FX_H) + 90)
    top.obj(10, 30, "pimodule_panel 127.0.0.1 9000 9001")
    top.obj(PANEL_W + 30, 30, "pimodule_fx 127.0.0.1 9000 9002")
    top.text(10, 6, "pimodule: the module's panel and its fx estimates. A module elsewhere: edit the boxes' host")
    return top.render() + "\n"


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
