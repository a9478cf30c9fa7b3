"""The panel's hooks for tests and other patches (:mod:`.pd_gen` writes them into
``pimodule_panel.pd``): what the panel shows, read back from its widgets, and messages that move
a slider or set a control as a hand would."""

from __future__ import annotations

from pimodule.device.io.pd_canvas import N_ROWS, Canvas, readback


def error_dump(g: Canvas, dump: str, out: int, x: int, y: int) -> None:
    """[s ``dump``] (bang) → ``error <label>`` to ``out``: the error bar's text (what the panel
    last said was refused; "no_errors" before anything was)."""
    label = g.obj(x, y + 40, "list append no_errors")
    g.connect(g.chain(g.obj(x + 100, y, r"r \$0-err"), g.obj(x + 100, y + 20, "route label")), 0, label, 1)
    g.connect(g.obj(x, y + 20, f"r {dump}"), 0, label)
    g.connect(g.chain(label, g.msg(x, y + 60, r"error \$1")), 0, out)


def panel_dump(g: Canvas) -> None:
    """[s pm-dump] (bang) → what the panel shows, to [r pm-shown], one list per widget, read back
    from the widgets themselves where Pd allows it (an IEM slider or radio outputs its value on a
    bang): ``slider <row> <label> <value>``, ``range <row> <min> <max>``, ``gain <v>``, ``mode <i>``,
    ``model <i>``; ``mute <v>`` (what the toggle was set to: a bang would flip it); ``error <label>``
    (the error bar's text)."""
    x, y = 20, 2600
    widgets = [(f"row{i}", rf"\$0-r{i}") for i in range(N_ROWS)] + [
        ("gain", r"\$0-gain-r"),
        ("mode", r"\$0-mode-set"),
        ("mmenu", r"\$0-model-set"),
    ]
    t = g.chain(g.obj(x, y, "r pm-dump"), g.obj(x, y + 20, "t " + " ".join(["b"] * (len(widgets) + 1))))
    out = g.obj(x, y + 400, "s pm-shown")
    for k, (key, receive) in enumerate(widgets):
        readback(g, t, len(widgets) - k, key, receive, x + 140 * k, y + 60)
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
    error_dump(g, "pm-dump", out, x + 1400, y + 220)
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
