"""The matched chain held and set by hand or pushed from a laptop (``/pimodule/fx/hold``,
``/pimodule/fx/set``, ``/pimodule/fx/matched``, ``pimodule estimate --send``)."""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from pimodule.core.fx_specs import DISTORTION_MODES, SPECS
from pimodule.device.fx.mode import FxMatcher

FX_DRY_MODEL = Path(__file__).resolve().parents[3] / "export" / "fx-dry.onnx"
RATE_HZ = 48000
pytestmark = pytest.mark.timeout(180)


def _estimate(drive_db: float, mix_pct: float) -> dict:
    return {
        "distortion": {"active": True, "params": {"drive_db": drive_db}, "mode": "soft"},
        "reverb": {"active": True, "params": {"mix_pct": mix_pct}},
    }


def test_a_held_chain_ignores_estimates_until_released():
    matcher = FxMatcher(RATE_HZ, 256)
    assert matcher.follow(_estimate(12.0, 20.0))
    assert matcher.matched()["distortion"]["params"]["drive_db"] == pytest.approx(12.0)
    assert matcher.set_value("reverb", "mix_pct", 35.0) == pytest.approx(35.0)
    assert matcher.held  # a value set by hand holds the chain
    assert not matcher.follow(_estimate(30.0, 80.0))
    m = matcher.matched()
    assert m["distortion"]["params"]["drive_db"] == pytest.approx(12.0)
    assert m["reverb"]["params"]["mix_pct"] == pytest.approx(35.0) and m["distortion"]["mode"] == "soft"
    matcher.hold(False)
    assert matcher.follow(_estimate(30.0, 80.0))
    assert matcher.matched()["reverb"]["params"]["mix_pct"] == pytest.approx(80.0)


@pytest.mark.parametrize("effect", list(SPECS))
def test_set_clamps_every_parameter_to_its_spec(effect):
    matcher = FxMatcher(RATE_HZ, 256)
    for spec in SPECS[effect]:
        assert matcher.set_value(effect, spec.name, spec.max * 10 + 1e6) == pytest.approx(spec.max)
        assert matcher.set_value(effect, spec.name, -1e9) == pytest.approx(spec.min)
        mid = float(spec.from_unit(0.5))
        assert matcher.set_value(effect, spec.name, mid) == pytest.approx(mid)
        assert matcher.matched()[effect]["params"][spec.name] == pytest.approx(mid, rel=1e-6)
    assert matcher.set_value(effect, "active", 1) == 1.0 and matcher.matched()[effect]["active"]
    assert matcher.set_value(effect, "active", 0) == 0.0 and not matcher.matched()[effect]["active"]


def test_bad_values_are_refused_and_change_nothing():
    matcher = FxMatcher(RATE_HZ, 256)
    matcher.follow(_estimate(12.0, 20.0))
    before = matcher.matched()
    bad = [
        ("chorus", "rate_hz", 1.0, KeyError),
        ("reverb", "size", 1.0, KeyError),
        ("reverb", "mix_pct", math.nan, ValueError),
        ("reverb", "mix_pct", "lots", ValueError),
        ("reverb", "active", math.inf, ValueError),
        ("distortion", "mode", "fuzz", ValueError),
        ("eq", "mode", "hard", ValueError),
    ]
    for effect, name, value, error in bad:
        with pytest.raises(error):
            matcher.set_value(effect, name, value)
    assert matcher.matched() == before and not matcher.held
    for mode in DISTORTION_MODES:
        assert matcher.set_value("distortion", "mode", mode) == mode
        assert matcher.matched()["distortion"]["mode"] == mode


def _wavs(tmp_path: Path) -> tuple[Path, Path]:
    t = np.arange(int(2.0 * 22050)) / 22050
    dry = 0.3 * np.sin(2 * np.pi * 220 * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 2 * t))
    wet = np.tanh(6.0 * dry) * 0.5
    sf.write(str(tmp_path / "dry.wav"), dry, 22050)
    sf.write(str(tmp_path / "wet.wav"), wet, 22050)
    return tmp_path / "wet.wav", tmp_path / "dry.wav"


def _matched(client) -> dict:
    """``/pimodule/fx/matched`` -> {address: args}, up to its closing ``…/matched/hold``."""
    out = {}
    client.send("/pimodule/fx/matched")
    while (msg := client.receive(5.0)) is not None:
        out[msg[0]] = msg[1]
        if msg[0] == "/pimodule/fx/matched/hold":
            return out
    raise AssertionError(f"no /pimodule/fx/matched/hold after {sorted(out)}")


def test_a_chain_pushed_from_the_laptop_is_held_matched_and_released(fx_daemon, tmp_path, capsys):
    from pimodule.device.io.osc import OscClient
    from pimodule.laptop.fx import estimate

    rng = np.random.default_rng(0)
    dry_in = (0.2 * rng.standard_normal(int(30 * RATE_HZ))).astype(np.float32)
    signal = np.stack([np.tanh(4.0 * dry_in) * 0.4, dry_in], 1)  # L wet, R its dry source
    with fx_daemon(FX_DRY_MODEL, signal, 30.0) as d:
        wet, dry = _wavs(tmp_path)
        parser = argparse.ArgumentParser()
        estimate.configure(parser)
        args = parser.parse_args(
            [str(FX_DRY_MODEL), "--input", str(wet), "--dry", str(dry), "--json", "--send", f"127.0.0.1:{d.osc.port}"]
        )
        assert estimate.main(args) == 0
        out = capsys.readouterr().out
        assert "held and matched" in out
        desc = json.loads(out[: out.rindex("}") + 1])
        with OscClient("127.0.0.1", d.osc.port) as c:
            got = _matched(c)
            assert got["/pimodule/fx/matched/hold"] == [1] and d.engine.fx_matcher.matching
            for effect, item in desc.items():
                assert got[f"/pimodule/fx/matched/{effect}/active"] == [int(item["active"])]
                for name, value in item["params"].items():
                    assert got[f"/pimodule/fx/matched/{effect}/{name}"][0] == pytest.approx(value, rel=1e-4, abs=1e-4)
            assert got["/pimodule/fx/matched/distortion/mode"] == [desc["distortion"]["mode"]]
            runs = d.fx.n_runs
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and d.fx.n_runs < runs + 3:
                time.sleep(0.05)
            assert d.fx.n_runs >= runs + 3 and _matched(c) == got  # the module's own estimates did not move it
            # by hand: clamped into the spec, the reply says what was applied
            top = SPECS["reverb"]["mix_pct"].max
            assert c.request("/pimodule/fx/set", "reverb", "mix_pct", 1e4, expect="/pimodule/fx/set")[1] == [
                "reverb",
                "mix_pct",
                top,
            ]
            for bad in (
                ("reverb", "size", 1.0),
                ("chorus", "rate_hz", 1.0),
                ("reverb", "mix_pct", float("nan")),
                ("reverb", "mix_pct"),
                (1, 2, 3),
            ):
                reply = c.request("/pimodule/fx/set", *bad, expect="/pimodule/error")
                assert reply[1][0] == "/pimodule/fx/set" and reply[1][1]
            assert _matched(c)["/pimodule/fx/matched/reverb/mix_pct"] == [top]
            assert c.request("/pimodule/fx/hold", 0, expect="/pimodule/fx/hold")[1] == [0]
            checker = d.fx.checker  # from its first check on, matching follows the checks
            runs, checks = d.fx.n_runs, checker.n_checks
            while time.monotonic() < deadline + 30 and (d.fx.n_runs < runs + 2 or checker.n_checks < checks + 1):
                time.sleep(0.05)
            latest = checker.latest if checker.driving else d.fx.latest
            now = _matched(c)
            assert now["/pimodule/fx/matched/hold"] == [0]
            assert now["/pimodule/fx/matched/reverb/mix_pct"][0] == pytest.approx(
                latest["reverb"]["params"]["mix_pct"], rel=0.2, abs=2.0
            )  # following again
    assert d.runner.stats.n_exceptions == 0


def test_send_refuses_a_bad_target_and_reports_a_module_that_is_not_there(tmp_path, capsys):
    from pimodule.laptop.fx import estimate

    wet, dry = _wavs(tmp_path)
    parser = argparse.ArgumentParser()
    estimate.configure(parser)
    for target, code in (("host:port", 2), (":9000", 2), ("127.0.0.1:70000", 2), ("127.0.0.1:9", 1)):
        args = parser.parse_args([str(FX_DRY_MODEL), "--input", str(wet), "--dry", str(dry), "--send", target])
        assert estimate.main(args) == code, target
        out = capsys.readouterr().out
        assert ("--send needs" in out) if code == 2 else ("did not take the chain" in out)
