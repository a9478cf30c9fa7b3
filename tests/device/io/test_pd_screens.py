"""What the Pd panels show, seen as a user sees it: Pd's GUI under Xvfb, screenshots of
``pimodule.pd``'s two graph-on-parent boxes connected to a server with known values, and the
sliders' knobs found in the pixels where those values put them (not at their minimum).
``python -m pimodule.device.io.pd_gen --screenshots docs/pd`` makes the same pictures for the docs."""

from __future__ import annotations

import struct

import pytest

from pimodule.core.controls import DDSP_CONTROLS, GAIN_SPEC
from pimodule.core.fx_specs import SPECS
from pimodule.device.io import pd_canvas as layout
from pimodule.device.io import pd_shots

pytestmark = [
    pytest.mark.pd,
    pytest.mark.timeout(240),
    pytest.mark.skipif(bool(pd_shots.shot_tools_missing()), reason=f"needs {pd_shots.shot_tools_missing()}"),
]


def _png_size(path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


def test_screenshots_show_the_daemons_values(tmp_path):
    out = pd_shots.make_screenshots(tmp_path / "shots", tmp_path / "work")
    assert out["pd_errors"] == []
    img = out["img"]
    # the panel: every control's knob where its value puts it, the gain's too
    for row, spec in enumerate(DDSP_CONTROLS):
        value = pd_shots.SHOWN["values"][spec.name]
        seen = pd_shots.knob_x(img, out["panel_at"], layout.ROW_X, layout.hsl_y(row), layout.ROW_W, layout.ROW_H)
        want = pd_shots.expected_knob_x(value, spec.min, spec.max, layout.ROW_W)
        assert abs(seen - want) <= 2.5, (spec.name, seen, want)
        at_minimum = pd_shots.expected_knob_x(spec.min, spec.min, spec.max, layout.ROW_W)
        assert abs(seen - at_minimum) > 10  # the bug this replaces: every slider drawn at its minimum
    seen = pd_shots.knob_x(img, out["panel_at"], layout.GAIN_X, layout.GAIN_Y, layout.GAIN_W, layout.ROW_H)
    want = pd_shots.expected_knob_x(pd_shots.SHOWN["gain_db"], GAIN_SPEC.min, GAIN_SPEC.max, layout.GAIN_W)
    assert abs(seen - want) <= 2.5
    # the fx panel: a linear and a log-scale parameter
    x0, y0 = layout.FX_COLS["distortion"]
    spec = SPECS["distortion"]["drive_db"]
    seen = pd_shots.knob_x(img, out["fx_at"], x0, y0 + 54, layout.FX_SL_W, 10)
    want = pd_shots.expected_knob_x(18.0, spec.min, spec.max, layout.FX_SL_W)
    assert abs(seen - want) <= 2.5
    # pictures of a sensible size, small enough to keep in the repository
    assert _png_size(tmp_path / "shots" / "panel.png") == (layout.PANEL_W, layout.PANEL_H)
    assert _png_size(tmp_path / "shots" / "fx.png") == (layout.FX_W, layout.FX_H)
    for name in ("panel.png", "fx.png", "tedium.png"):
        assert 5_000 < (tmp_path / "shots" / name).stat().st_size < 150_000
