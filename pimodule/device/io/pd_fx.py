"""``pimodule_fx.pd``: the effect-chain panel, its sliders generated from the chain's one
parameter table (``pimodule/core/fx_specs.py``). Written by :mod:`pimodule.device.io.pd_gen`."""

from __future__ import annotations

from pimodule.core.fx_specs import SELECTABLE, SPECS
from pimodule.device.io.pd_canvas import (
    BG,
    CELL,
    FX_COLS,
    FX_DY,
    FX_H,
    FX_SL_W,
    FX_W,
    N_FX_MODELS,
    Canvas,
    connection,
    finish,
    follow,
    frame,
    hold,
    indicator,
    join_label,
    menu,
    readback,
    user_input,
)
from pimodule.device.io.pd_dump import error_dump


def fx_panel() -> str:
    top = Canvas(60, 60, 800, 700)
    frame(top, FX_W, FX_H, "pimodule_fx")
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
    top.symbolatom(262, 78, 8, label="shows", receive=r"\$0-shows", send=r"\$0-o-shows", pos=0)
    # what the estimator in use reads on each input (status fx_inputs): which jack is the reference
    top.text(426, 372, "inputs")
    top.cnv(426, 390, 190, 16, BG, receive=r"\$0-fx-inputs", label="-", lx=2, ly=8)
    for effect, (x0, y0) in FX_COLS.items():
        top.cnv(x0, y0, 200, 18, "#cfd8e0", label=effect, lx=4, ly=9, size=12)
        if effect in SELECTABLE:  # the decision in words beside its box; how much of it is applied
            top.tgl(x0, y0 + 22, 14, rf"\$0-o-{effect}-active", rf"\$0-{effect}-active")
            top.cnv(x0 + 18, y0 + 22, 112, 14, BG, receive=rf"\$0-{effect}-conf", label="-", lx=2, ly=7)
            top.floatatom(x0 + 168, y0 + 1, 4, "size", rf"\$0-{effect}-strength", rf"\$0-o-{effect}-strength", pos=0)
        else:
            top.tgl(x0, y0 + 22, 14, rf"\$0-o-{effect}-active", rf"\$0-{effect}-active", "on")
        top.floatatom(x0 + 148, y0 + 22, 5, "p", rf"\$0-{effect}-probability", rf"\$0-o-{effect}-probability", pos=0)
        y = y0 + 54
        if effect == "distortion":
            # the curve: shown, and typed by hand (hard, soft or tanh, then Enter) like a slider moved
            top.symbolatom(x0 + 92, y0 + 1, 4, receive=r"\$0-distortion-mode", send=r"\$0-o-distortion-mode")
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
    return finish(top, FX_W, FX_H, "[pimodule_fx host port listen]: defaults 127.0.0.1 9000 9002. README.md", _fx_guts)


def _fx_guts(g: Canvas) -> None:
    tr = connection(g, 9002, 1, "pm-fx-connect", "pm-fx-in")
    r = g.chain(g.obj(320, 600, "route pimodule"), g.obj(320, 620, "route status fx error"))
    g.connect(tr, 0, r - 1)
    indicator(g, r, 0, 1100, 560)
    st = g.obj(20, 660, "route fx_estimates fx_estimate_ms mode fx_model fx_match fx_hold last_error fx_inputs")
    g.connect(r, 0, st)
    g.send_to(st, 0, 20, 680, r"\$0-st-n")
    g.send_to(st, 1, 100, 680, r"\$0-st-ms")
    g.send_to(g.chain(g.obj(180, 680, "symbol")), 0, 180, 700, r"\$0-st-mode")
    g.connect(st, 2, len(g.lines) - 2)
    g.send_to(g.chain(g.obj(260, 680, "symbol")), 0, 260, 700, r"\$0-fxm-playing")
    g.connect(st, 3, len(g.lines) - 2)
    follow(g, st, 4, r"\$0-match-r", r"\$0-match-hold", 360, 700)
    follow(g, st, 5, r"\$0-hold-r", r"\$0-hold-hold", 460, 700)
    fx = g.obj(20, 760, "route models loading match hold checked matched")
    g.connect(r, 1, fx)
    g.send_to(fx, 0, 20, 780, r"\$0-fxmodels")
    effects = g.obj(20, 800, "route " + " ".join(SPECS))
    _what_is_shown(g, fx, effects, 600, 700)
    _by_hand(g, 1400, 700)
    out = g.obj(20, 1200, "s pm-fx")
    for k, effect in enumerate(SPECS):
        x = 20 + 200 * k
        t = g.obj(x, 820, "t a a")
        g.connect(effects, k, t)
        g.connect(g.chain(g.obj(x + 60, 840, f"list prepend {effect}"), g.obj(x + 60, 860, "list trim")), 0, out)
        g.connect(t, 1, len(g.lines) - 2)
        names = ["active", "probability", "mode", "confidence", "strength", *SPECS[effect].names]
        rr = g.obj(x, 880, "route " + " ".join(names))
        g.connect(t, 0, rr)
        for j, name in enumerate(names):
            if name == "mode":  # set, not sent on: the box sends only what a hand types; "-" before any
                shown = g.chain(g.obj(x, 900 + 20 * j, "symbol"), g.msg(x, 920 + 20 * j, r"set \$1"))
                g.send_to(shown, 0, x + 60, 920 + 20 * j, r"\$0-distortion-mode")
                g.connect(rr, j, shown - 1)
                g.connect(
                    g.chain(g.obj(x + 120, 880 + 20 * j, "loadbang"), g.msg(x + 120, 900 + 20 * j, "symbol -")),
                    0,
                    shown - 1,
                )
                continue
            if name == "confidence":
                if effect in SELECTABLE:
                    g.connect(rr, j, g.obj(x, 900 + 20 * j, "symbol"))
                    g.connect(len(g.lines) - 1, 0, _in_words(g, effect, rr, x + 100, 900))
                continue
            g.connect(rr, j, g.msg(x, 900 + 20 * j, r"set \$1"))
            g.send_to(len(g.lines) - 1, 0, x + 60, 900 + 20 * j, rf"\$0-{effect}-{name}")
    g.connect(st, 6, join_label(g, r, 2, r"\$0-err", 1300, 640))  # the status's copy of the last refusal
    inputs = g.obj(560, 680, "t s s")  # shown as the label's words; kept for the dump
    g.connect(st, 7, g.obj(560, 660, "symbol"))  # the words arrive as a selector: a symbol made of it
    g.connect(len(g.lines) - 1, 0, inputs)
    g.send_to(g.chain(inputs, g.msg(560, 700, r"label \$1")), 0, 560, 720, r"\$0-fx-inputs")
    g.send_to(inputs, 1, 660, 700, r"\$0-w-inputs")
    g.connect(g.chain(g.obj(660, 640, "loadbang"), g.msg(660, 660, "symbol -")), 0, inputs)  # before the first status
    menu(
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
        gate = user_input(g, (rf"\$0-{name}-s", f"pm-fx-{name}"), name, x + 300 * k, y)
        t = g.obj(x + 300 * k, y + 60, "t f f b")
        g.connect(gate, 0, t)
        hold(g, t, 2, rf"\$0-{name}-hold", x + 300 * k + 120, y + 80)
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
    g.connect(g.obj(x + 1100, y, r"r \$0-fx-set"), 0, fset - 1)
    g.send_to(fset, 0, x + 1000, y + 60, r"\$0-out")
    lst = g.chain(
        g.obj(x + 1200, y, "loadbang"),
        g.obj(x + 1200, y + 20, "metro 10000"),
        g.obj(x + 1200, y + 40, "oscformat pimodule fx list"),
    )
    g.send_to(lst, 0, x + 1200, y + 60, r"\$0-out")
    _fx_dump(g)


def _what_is_shown(g: Canvas, fx: int, effects: int, x: int, y: int) -> None:
    """What the sliders show, ``shows`` saying which: the raw estimates (``estimate``); the
    module's check (``/pimodule/fx/checked/…``, a dry model's estimate checked against the audio:
    what matching plays) as it comes, the estimates kept off until 5 s after the last check
    (``check``); while the matched chain is held (by the hold box, a slider moved by hand or
    another client), that chain, asked for (``fx/matched``) when the hold comes on, and neither
    estimates nor checks (``held``)."""
    held = g.obj(x, y + 160, "spigot 1")
    g.connect(held, 0, effects)
    g.connect(fx, 5, effects)  # the matched chain: always shown
    says = g.obj(x + 240, y + 80, "spigot 1")
    shows = g.obj(x + 240, y + 100, r"s \$0-shows")
    g.connect(says, 0, shows)
    word = g.obj(x + 240, y + 60, "t s s")  # what the estimates and checks would show; kept for the end of a hold
    kept = g.obj(x + 300, y + 80, "symbol estimate")
    g.connect(word, 0, says)
    g.connect(word, 1, kept, 1)
    g.connect(kept, 0, shows)
    gate = g.obj(x, y + 60, "spigot 1")
    g.connect(fx, 6, gate)
    g.connect(gate, 0, held)
    t = g.obj(x + 100, y, "t a b")
    g.connect(fx, 4, t)
    g.connect(t, 0, held)
    g.connect(t, 1, g.msg(x + 160, y + 20, "0"))
    g.connect(len(g.lines) - 1, 0, gate, 1)
    g.connect(t, 1, g.msg(x + 240, y + 20, "symbol check"))
    g.connect(len(g.lines) - 1, 0, word)
    back = g.obj(x + 320, y + 20, "delay 5000")
    g.connect(t, 1, back)
    g.connect(back, 0, g.msg(x + 320, y + 40, "1"))
    g.connect(len(g.lines) - 1, 0, gate, 1)
    g.connect(back, 0, g.msg(x + 320, y + 60, "symbol estimate"))
    g.connect(len(g.lines) - 1, 0, word)
    g.connect(g.chain(g.obj(x + 420, y, "loadbang"), g.msg(x + 420, y + 20, "symbol estimate")), 0, shows)
    hold = g.chain(
        g.obj(x + 500, y, r"r \$0-hold-r"), g.obj(x + 500, y + 20, "route set"), g.obj(x + 500, y + 40, "t f f")
    )
    free = g.obj(x + 560, y + 60, "== 0")  # first the gates, then what to ask and say
    g.connect(hold, 1, free)
    g.connect(free, 0, held, 1)
    g.connect(free, 0, says, 1)
    on_off = g.chain(g.obj(x + 500, y + 80, "change"), g.obj(x + 500, y + 100, "sel 1 0"))
    g.connect(hold, 0, on_off - 1)
    ask = g.obj(x + 500, y + 140, "oscformat pimodule fx matched")
    g.connect(on_off, 0, ask)
    g.send_to(ask, 0, x + 500, y + 160, r"\$0-out")
    g.connect(on_off, 0, g.msg(x + 600, y + 140, "symbol held"))
    g.connect(len(g.lines) - 1, 0, shows)
    g.connect(on_off, 1, kept)


def _by_hand(g: Canvas, x: int, y: int) -> None:
    """A slider or an on box moved by hand: ``fx/set <effect> <name> <value>`` (the module holds
    the matched chain then) and the panel shows it held at once. Not while the dump reads the
    sliders back. ``[s pm-fx-hand]`` ``<effect> <name> <value>`` moves a widget as a hand does
    (it sets the widget, which sends)."""
    free = g.obj(x, y + 20, r"s \$0-hand")
    g.connect(g.chain(g.obj(x, y - 20, r"r \$0-rb-fx"), g.obj(x, y, "== 0")), 0, free)
    out = g.obj(x, y + 400, r"s \$0-fx-set")
    held = g.msg(x + 200, y + 380, "set 1")
    g.send_to(held, 0, x + 200, y + 400, r"\$0-hold-r")
    hand = g.chain(
        g.obj(x + 400, y - 40, "r pm-fx-hand"),
        g.obj(x + 400, y - 20, "list trim"),
        g.obj(x + 400, y, "route " + " ".join(SPECS)),
    )
    for j, effect in enumerate(SPECS):
        names = ("active", *(["mode"] if effect == "distortion" else []), *SPECS[effect].names)
        moves = g.obj(x + 400 + 220 * j, y + 20, "route " + " ".join(names))
        g.connect(hand, j, moves)
        for k, name in enumerate(names):
            xx, yy = x + 110 * k, y + 60 + 80 * j
            if name == "mode":  # a word after [route] is a selector: [symbol] makes it a symbol again
                g.send_to(g.chain(g.obj(xx + 400, yy + 580, "symbol")), 0, xx + 400, yy + 600, r"\$0-distortion-mode")
                g.connect(moves, k, len(g.lines) - 2)
            else:
                g.send_to(moves, k, xx + 400, yy + 600, rf"\$0-{effect}-{name}")
            gate = g.obj(xx, yy + 20, "spigot 1")
            g.connect(g.obj(xx, yy, rf"r \$0-o-{effect}-{name}"), 0, gate)
            g.connect(g.obj(xx + 60, yy, r"r \$0-hand"), 0, gate, 1)
            said = g.msg(xx, yy + 40, f"{effect} {name} \\$1")
            g.connect(gate, 0, said)
            g.connect(said, 0, out)
            g.connect(said, 0, held)


def _in_words(g: Canvas, effect: str, rr: int, x: int, y: int) -> int:
    """An effect's decision in words on the panel: "on"/"off" and full size with each estimate's
    ``active``, then its ``confidence`` (e.g. "on, probably") and ``strength`` if it has them.
    Returns the inlet words come to; the dump reads the words back from [v]-like storage."""
    words = g.obj(x, y + 60, "t s s")
    g.send_to(g.chain(words, g.msg(x, y + 80, r"label \$1")), 0, x, y + 100, rf"\$0-{effect}-conf")
    g.connect(words, 1, g.obj(x + 80, y + 100, rf"s \$0-w-{effect}"))
    pick = g.obj(x, y, "t f f")
    g.connect(rr, 0, pick)
    off_on = g.chain(pick, g.obj(x, y + 20, "sel 0"))
    for k, word in enumerate(("off", "on")):
        g.connect(off_on, k, g.msg(x + 60 * k, y + 40, f"symbol {word}"))
        g.connect(len(g.lines) - 1, 0, words)
    full = g.msg(x + 140, y + 20, "set 1")
    g.connect(pick, 1, full)
    g.send_to(full, 0, x + 140, y + 40, rf"\$0-{effect}-strength")
    start = g.obj(x + 220, y, "loadbang")  # before the first estimate: "-" at full size
    g.connect(start, 0, full)
    g.connect(start, 0, g.msg(x + 220, y + 20, "symbol -"))
    g.connect(len(g.lines) - 1, 0, words)
    return words


def _fx_dump(g: Canvas) -> None:
    """[s pm-fx-dump] (bang) → [r pm-fx-shown]: ``<effect> <param> <value>`` for every slider,
    read back from the slider itself (banged, its output caught), ``<effect> probability|strength
    <v>`` and ``shows <word>`` from their boxes, ``<effect> active <v>`` (what the toggle was set
    to: a bang would flip it), ``<effect> confidence <words>`` (what its label says), ``match <v>``,
    ``hold <v>``, ``estimator <i>``, ``error <label>`` (the error bar's text), ``inputs <words>``
    (what the estimator reads on each input, status ``fx_inputs``)."""
    x, y = 20, 2200
    t = g.chain(g.obj(x, y, "r pm-fx-dump"), g.obj(x, y + 20, "t b b b b b"))
    out = g.obj(x, y + 400, "s pm-fx-shown")
    error_dump(g, "pm-fx-dump", out, x + 1600, y + 500)
    flag = g.obj(x + 300, y + 60, r"s \$0-rb-fx")
    g.connect(t, 4, g.msg(x + 300, y + 40, "1"))
    g.connect(len(g.lines) - 1, 0, flag)
    g.connect(t, 2, g.msg(x + 360, y + 40, "0"))
    g.connect(len(g.lines) - 1, 0, flag)
    shown = [
        (e, n)
        for e in SPECS
        for n in (
            "probability",
            *(["strength"] if e in SELECTABLE else []),
            *(["mode"] if e == "distortion" else []),
            *SPECS[e].names,
        )
    ]
    for k, (effect, name) in enumerate([*shown, ("", "shows")]):
        xx, yy = x + 110 * (k % 14), y + 100 + 100 * (k // 14)
        widget = f"{effect}-{name}" if effect else name
        g.connect(t, 3, g.msg(xx, yy, "bang"))
        g.send_to(len(g.lines) - 1, 0, xx, yy + 20, rf"\$0-{widget}")
        gate = g.obj(xx, yy + 60, "spigot 0")
        g.connect(g.obj(xx, yy + 40, rf"r \$0-o-{widget}"), 0, gate)
        g.connect(g.obj(xx + 50, yy + 40, r"r \$0-rb-fx"), 0, gate, 1)
        g.connect(g.chain(gate, g.msg(xx, yy + 80, f"{effect} {name} \\$1".strip())), 0, out)
    words = [(e, f"{e} confidence") for e in SELECTABLE] + [("inputs", "inputs")]
    for j, (key, what) in enumerate(words):  # the words as the panel shows them
        xx = x + 600 + 110 * j
        said = g.obj(xx, y + 520, "symbol")
        g.connect(g.obj(xx + 60, y + 500, rf"r \$0-w-{key}"), 0, said, 1)
        g.connect(t, 1, said)
        g.connect(g.chain(said, g.msg(xx, y + 540, f"{what} \\$1")), 0, out)
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
    readback(g, t, 0, "fmenu", r"\$0-fxm-set", x + 800, y + 380)
    g.connect(g.chain(g.obj(x + 800, y + 480, r"r \$0-shown-fmenu"), g.msg(x + 800, y + 500, r"estimator \$1")), 0, out)


# -- pimodule.pd -----------------------------------------------------------------------------------
