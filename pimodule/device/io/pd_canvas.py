"""Pd canvases written as text: the panels' layout (the screenshot test reads slider positions
from it), :class:`Canvas`, and the small object patterns both panels repeat (the connection to
the daemon, indicators, readbacks, menus). Used by :mod:`pimodule.device.io.pd_gen`."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

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
PANEL_W, PANEL_H = 470, 460
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

    def floatatom(self, x, y, width, label="-", receive="-", send="-", pos=None) -> int:
        """A number box; its label above (``pos`` 2) unless told (0 left, 1 right, 3 below)."""
        pos = (2 if label != "-" else 0) if pos is None else pos
        return self._add(f"#X floatatom {x} {y} {width} 0 0 {pos} {label} {receive} {send} 0;")

    def symbolatom(self, x, y, width, label="-", receive="-", send="-", pos=None) -> int:
        pos = (2 if label != "-" else 0) if pos is None else pos
        return self._add(f"#X symbolatom {x} {y} {width} 0 0 {pos} {label} {receive} {send} 0;")

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
def connection(g: Canvas, listen_default: int, rate_hz: float, connect_name: str, inbox: str) -> int:
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


def indicator(g: Canvas, src: int, outlet: int, x: int, y: int) -> None:
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


def hold(g: Canvas, src: int, outlet: int, hold: str, x: int, y: int) -> None:
    """Close ``hold`` at once, open it 0.75 s after the last move: status then takes over again."""
    t = g.obj(x, y, "t b b")
    g.connect(src, outlet, t)
    s = g.obj(x, y + 60, f"s {hold}")
    g.connect(g.chain(t, g.obj(x, y + 20, "delay 750"), g.msg(x, y + 40, "1")), 0, s)
    g.connect(t, 1, g.msg(x + 80, y + 20, "0"))
    g.connect(len(g.lines) - 1, 0, s)


def follow(g: Canvas, src: int, outlet: int, target: str, hold: str, x: int, y: int) -> None:
    """A status value → ``set`` to ``target`` unless ``hold`` is closed (the user moves it)."""
    gate = g.obj(x, y, "spigot 1")
    g.connect(src, outlet, gate)
    g.connect(g.obj(x + 60, y - 20, f"r {hold}"), 0, gate, 1)
    g.send_to(g.chain(gate, g.msg(x, y + 20, r"set \$1")), 0, x, y + 40, target)


def user_input(g: Canvas, sends: tuple[str, ...], key: str, x: int, y: int) -> int:
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


def readback(g: Canvas, src: int, outlet: int, key: str, receive: str, x: int, y: int) -> None:
    """Bang the widget behind ``receive`` with its output diverted to [s $0-shown-<key>]."""
    t = g.obj(x, y, "t b b b")
    g.connect(src, outlet, t)
    flag = g.obj(x, y + 60, rf"s \$0-rb-{key}")
    g.connect(g.chain(t, g.msg(x, y + 20, "0")), 0, flag)
    g.connect(t, 2, g.msg(x + 60, y + 20, "1"))
    g.connect(len(g.lines) - 1, 0, flag)
    g.connect(t, 1, g.msg(x + 30, y + 40, "bang"))
    g.send_to(len(g.lines) - 1, 0, x + 30, y + 80, receive)


def join_label(g: Canvas, src: int, outlet: int, target: str, x: int, y: int, max_chars: int = 90) -> int:
    """A list of words → one symbol, words joined by spaces (vanilla: each word's character
    codes, a space after it, then [list tosymbol]) → ``label`` to ``target``. Returns the entry
    object (other sources may connect to its inlet)."""
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
    return t0


def menu(g: Canvas, prefix: str, n: int, models_in: str, playing_in: str, pick: str, radio: str, load: str, x, y):
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
    gate = user_input(g, (pick,), f"{prefix}menu", x, y + 320)
    mo = g.obj(x, y + 380, "moses")
    g.connect(gate, 0, mo)
    g.connect(count, 0, mo, 1)
    g.connect(g.chain(mo, g.msg(x, y + 400, r"get \$1 1")), 0, store)
    g.send_to(g.chain(store, g.obj(x + 600, y + 320, "symbol")), 0, x + 600, y + 340, load)


# -- pimodule_panel.pd -----------------------------------------------------------------------------


def frame(top: Canvas, w: int, h: int, title: str) -> None:
    """A panel's background, its title bar and the "no reply" indicator of its connection."""
    top.cnv(0, 0, w, h, BG)
    top.cnv(0, 0, w, 24, HEADER, label=title, fg="#ffffff", size=14, lx=6, ly=12)
    top.cnv(w - 120, 4, 114, 16, LOST, receive=r"\$0-conn", label="no_reply", lx=4, ly=8)


def finish(top: Canvas, w: int, h: int, usage: str, guts) -> str:
    """A panel's error bar, its graph-on-parent area, a line of usage under it, and its logic
    (``guts(canvas)``) in a subpatch below; the patch's text."""
    top.cnv(0, h - 24, w, 22, "#f4f0e0", receive=r"\$0-err", label="no_errors", lx=6, ly=11)
    top.coords = f"#X coords 0 -1 1 1 {w} {h} 2 0 0;"
    top.text(0, h + 10, usage)
    g = Canvas(100, 100, 1500, 900, name="guts")
    guts(g)
    top.subpatch(g, 0, h + 40)
    return top.render() + "\n"
