"""The model store: names only (one rule), files only inside the store, the previous version
kept on install, `pimodule models list|rollback`, and the start-up fallback to the previous
version when the installed file fails validation."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from pimodule.cli import main as cli
from pimodule.core.modelfile import ModelFileError
from pimodule.device.flash_listen import daemon_validator
from pimodule.device.ort_engine import VoiceEngine
from pimodule.device.store import ModelStore, check_name, load_with_fallback
from pimodule.device.validate import validate


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture()
def store(tmp_path, model_dir) -> ModelStore:
    d = tmp_path / "models"
    d.mkdir()
    shutil.copy(model_dir / "voice_a.onnx", d / "violin.onnx")
    return ModelStore(d)


def _install(store: ModelStore, name: str, src: Path) -> Path:
    partial = store.partial_path(name)
    shutil.copy(src, partial)
    return store.install(name, partial)


@pytest.mark.parametrize(
    "name",
    ["flute.v2", "evil\n", "evil\n.onnx", "../etc/passwd", "/etc/passwd", ".hidden", "", "Violin", "café", "a" * 65, 7],
)
def test_one_name_rule_everywhere(store, name):
    with pytest.raises(ModelFileError, match="bad model name"):
        check_name(name)
    with pytest.raises(ModelFileError, match="bad model name"):
        store.resolve(name)
    with pytest.raises(ModelFileError, match="bad model name"):
        store.path_for(name)


def test_names_resolve_to_files_inside_the_store_only(store, tmp_path, model_dir):
    assert check_name("violin-small_2") == "violin-small_2" and check_name("a" * 64)
    assert store.resolve("violin") == store.directory / "violin.onnx"
    with pytest.raises(ModelFileError, match="no model 'cello'.*known: violin"):
        store.resolve("cello")
    with pytest.raises(ModelFileError, match="bad model name"):
        store.resolve(str(model_dir / "voice_b.onnx"))  # a path is not a name
    (store.directory / "outside.onnx").symlink_to(model_dir / "voice_b.onnx")
    with pytest.raises(ModelFileError, match="not a file inside"):
        store.resolve("outside")
    (store.directory / "inside.onnx").symlink_to(store.directory / "violin.onnx")
    assert store.resolve("inside").name == "inside.onnx"
    (store.directory / "Upper.onnx").write_bytes(b"x")
    (store.directory / "dangling.onnx").symlink_to(tmp_path / "nowhere.onnx")
    assert store.list() == ["inside", "violin"]


def test_install_keeps_the_previous_version_and_rollback_swaps(store, model_dir):
    a, b = _sha(model_dir / "voice_a.onnx"), _sha(model_dir / "voice_b.onnx")
    final = _install(store, "violin", model_dir / "voice_b.onnx")
    assert _sha(final) == b and _sha(store.previous_path("violin")) == a
    assert not list(store.directory.glob(".*.partial")) and not list(store.previous_path("x").parent.glob(".*"))
    store.rollback("violin")
    assert _sha(final) == a and _sha(store.previous_path("violin")) == b
    store.rollback("violin")  # and back again
    assert _sha(final) == b and _sha(store.previous_path("violin")) == a
    _install(store, "cello", model_dir / "voice_a.onnx")  # a new name: no previous version
    with pytest.raises(ModelFileError, match="no previous version"):
        store.rollback("cello")
    assert store.list() == ["cello", "violin"]  # .previous is not a model


def test_models_list_and_rollback_commands(store, model_dir, capsys):
    _install(store, "violin", model_dir / "voice_b.onnx")
    _install(store, "broken", model_dir / "bad_corrupt.onnx")
    d = str(store.directory)
    assert cli(["models", "list", "--models-dir", d, "--json"]) == 0
    listing = json.loads(capsys.readouterr().out)["models"]
    by_name = {m["name"]: m for m in listing}
    violin = by_name["violin"]
    assert violin["kind"] == "ddsp" and violin["sample_rate"] == 16000 and violin["previous"] is True
    assert violin["sha256"] == _sha(model_dir / "voice_b.onnx") and violin["bytes"] > 0
    assert "untrained test model" in violin["provenance"]
    assert by_name["broken"]["kind"] is None and "not an ONNX model" in by_name["broken"]["error"]
    assert cli(["models", "list", "--models-dir", d]) == 0
    table = capsys.readouterr().out
    assert "violin" in table and "yes" in table and "refused" in table
    assert cli(["models", "rollback", "violin", "--models-dir", d]) == 0
    assert "rolled back" in capsys.readouterr().out
    assert _sha(store.directory / "violin.onnx") == _sha(model_dir / "voice_a.onnx")
    assert cli(["models", "rollback", "broken", "--models-dir", d]) == 1
    assert "no previous version" in capsys.readouterr().err
    assert cli(["models", "rollback", "flute.v2", "--models-dir", d]) == 1
    assert "bad model name" in capsys.readouterr().err


def _ddsp(path: Path) -> None:
    validate(path, "ddsp", expect_rate=16000, expect_block=64).raise_if_refused()


def test_start_falls_back_to_the_previous_version(store, model_dir):
    good = _sha(model_dir / "voice_a.onnx")
    path, note = load_with_fallback(store, "violin", _ddsp)
    assert path == store.directory / "violin.onnx" and note == ""
    _install(store, "violin", model_dir / "bad_nan.onnx")  # e.g. written by hand, or a bad card
    path, note = load_with_fallback(store, "violin", _ddsp)
    assert path == store.directory / "violin.onnx" and _sha(path) == good
    assert "failed validation" in note and "NaN" in note and "previous version" in note
    assert _sha(store.previous_path("violin")) == _sha(model_dir / "bad_nan.onnx")  # kept, not lost
    _install(store, "violin", model_dir / "bad_rate.onnx")  # previous is now the good one again
    store.install("violin", shutil.copy(model_dir / "bad_nan.onnx", store.partial_path("violin")))
    with pytest.raises(ModelFileError, match="and so did its previous version"):
        load_with_fallback(store, "violin", _ddsp)


def test_the_daemons_start_up_call(store, model_dir):
    """What the daemon calls at start: the flash module's validator for voices."""
    validate_voice = daemon_validator(VoiceEngine(device_rate_hz=48000, max_block=128), kind="ddsp")
    _install(store, "violin", model_dir / "bad_rate.onnx")
    path, note = load_with_fallback(store, "violin", validate_voice)
    assert "runs at 22050 Hz" in note and _sha(path) == _sha(model_dir / "voice_a.onnx")
