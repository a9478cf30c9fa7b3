"""pimodule.laptop.fx.push: what is sent to put an estimate on a module, and the target's parsing (the
round trip through a running daemon is tests/runtime/test_fxmode_hold.py)."""

from __future__ import annotations

import pytest

from pimodule.laptop.fx.push import DEFAULT_PORT, chain_messages, parse_target


def test_targets():
    assert parse_target("pimodule.local") == ("pimodule.local", DEFAULT_PORT)
    assert parse_target("10.0.0.7:9100") == ("10.0.0.7", 9100)
    for bad in ("", ":9000", "host:", "host:x", "host:0", "host:65536"):
        with pytest.raises(ValueError, match="HOST"):
            parse_target(bad)


def test_messages_hold_first_then_every_value_then_match():
    desc = {
        "eq": {"active": False, "probability": 0.1, "params": {"low_shelf_gain_db": 3.0, "peak1_q": 1.5}},
        "distortion": {"active": True, "probability": 0.9, "params": {"drive_db": 20.0}, "mode": "hard"},
    }
    msgs = chain_messages(desc)
    assert msgs[0] == ("/pimodule/fx/hold", (1,)) and msgs[-1] == ("/pimodule/fx/match", (1,))
    sets = [m[1] for m in msgs if m[0] == "/pimodule/fx/set"]
    assert sets == [
        ("eq", "low_shelf_gain_db", 3.0),
        ("eq", "peak1_q", 1.5),
        ("distortion", "drive_db", 20.0),
        ("eq", "active", 0),
        ("distortion", "mode", "hard"),
        ("distortion", "active", 1),
    ]
    assert chain_messages(desc, match=False)[-1] == ("/pimodule/fx/set", ("distortion", "active", 1))
