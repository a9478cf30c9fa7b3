"""The estimator file's metadata read on the module: which version of the effects it was trained
for, and what a user is told when the runtime plays them differently."""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest

from pimodule.core.fx_specs import EFFECTS_CHANGES, EFFECTS_VERSION
from pimodule.core.modelfile import ModelFileError
from pimodule.device.fx.estimator import (
    KEY_CONDITIONING,
    KEY_EFFECTS,
    OnnxEstimator,
    effects_warning,
    read_effects_version,
)

EXPORT = Path(__file__).resolve().parents[3] / "export"


@pytest.mark.parametrize(
    "text, version",
    [(None, 1), ("1", 1), (" 2 ", 2), ("7", 7), ("two", 0), ("-3", 0), ("0", 0), ("1e9", 0), ("99999999999", 0)],
)
def test_the_effects_version_is_read_as_data(text, version):
    assert read_effects_version(text) == version


def test_an_older_file_is_told_what_changed_for_the_effects_it_applies():
    assert EFFECTS_VERSION >= 2 and EFFECTS_CHANGES[2][0] == "compressor"
    dry = effects_warning("old.onnx", 1, "dry", {})
    assert dry.startswith("old.onnx: trained for effects version 1") and "peak level" in dry
    # a blind file applies only what it keeps: a compressor it never keeps cannot sound different
    assert effects_warning("b.onnx", 1, "blind", {"compressor": 1.01}) == ""
    assert "compressor" in effects_warning("b.onnx", 1, "blind", {"compressor": 0.9})
    assert "compressor" in effects_warning("b.onnx", 1, "blind", {})  # uncalibrated keeps from p 0.5
    assert effects_warning("new.onnx", EFFECTS_VERSION, "dry", {}) == ""


@pytest.mark.parametrize("version", [EFFECTS_VERSION + 1, 0])
def test_a_newer_or_unreadable_version_asks_for_an_update(version):
    text = effects_warning("x.onnx", version, "blind", {"compressor": 1.01})
    assert f"version {version}" in text and "update pimodule" in text


def test_a_file_without_the_entry_warns_once_loaded(tmp_path):
    proto = onnx.load(str(EXPORT / "fx-dry.onnx"))
    kept = [p for p in proto.metadata_props if p.key != KEY_EFFECTS]
    assert len(kept) == len(proto.metadata_props) - 1  # the shipped file states its version
    del proto.metadata_props[:]
    proto.metadata_props.extend(kept)
    path = tmp_path / "old-dry.onnx"
    onnx.save_model(proto, str(path), save_as_external_data=False)
    est = OnnxEstimator(path)
    assert est.effects_version == 1 and "old-dry.onnx" in est.warning and "compressor" in est.warning


@pytest.mark.parametrize("name", ["fx.onnx", "fx-dry.onnx", "fx-ref.onnx"])
def test_the_shipped_estimators_play_as_trained(name):
    assert OnnxEstimator(EXPORT / name).warning == ""


def test_an_unknown_conditioning_is_refused_at_load(tmp_path):
    """A file is data: a conditioning the runtime does not know (which inputs would it read?) is
    refused with a clear error, never met later by the status or the check thread."""
    proto = onnx.load(str(EXPORT / "fx-ref.onnx"))
    for p in proto.metadata_props:
        if p.key == KEY_CONDITIONING:
            p.value = "sidechain" * 20
    path = tmp_path / "odd.onnx"
    onnx.save_model(proto, str(path), save_as_external_data=False)
    with pytest.raises(ModelFileError, match="odd.onnx: unknown conditioning 'sidechain"):
        OnnxEstimator(path)
    assert OnnxEstimator(EXPORT / "fx-ref.onnx").inputs == "L reference, R input"
