"""``pimodule estimate`` on real files: table, JSON, rendering with the twins, error paths."""

from __future__ import annotations

import argparse
import json

import numpy as np
import soundfile as sf

from pimodule.laptop.fx import estimate


def _run(argv, capsys):
    parser = argparse.ArgumentParser()
    estimate.configure(parser)
    code = estimate.main(parser.parse_args(argv))
    return code, capsys.readouterr().out


def _wav(path, seconds=1.3, sr=22050, channels=2):
    t = np.arange(int(seconds * sr)) / sr
    x = 0.2 * np.sin(2 * np.pi * 330 * t) * (1 + np.sin(2 * np.pi * 3 * t)) / 2
    sf.write(str(path), np.stack([x] * channels, 1), sr)
    return path


def test_blind_estimate_json_and_apply(tiny_run, tmp_path, capsys):
    wet = _wav(tmp_path / "wet.wav")
    code, out = _run([str(tiny_run), "--input", str(wet), "--json"], capsys)
    assert code == 0
    desc = json.loads(out)
    assert set(desc) == {"eq", "compressor", "distortion", "reverb", "gain"}
    assert all(0 <= e["probability"] <= 1 for e in desc.values())
    code, out = _run(
        [str(tiny_run), "--input", str(wet), "--apply-to", str(wet), "--out", str(tmp_path / "y.wav")], capsys
    )
    assert code == 0 and "compressor" in out
    y, sr = sf.read(str(tmp_path / "y.wav"))
    assert sr == 22050 and y.shape == sf.read(str(wet))[0].shape and np.isfinite(y).all()


def test_reference_style_transfer_renders_the_input(tiny_reference_run, tmp_path, capsys):
    x = _wav(tmp_path / "x.wav", channels=1)
    ref = _wav(tmp_path / "ref.wav", seconds=0.7, sr=16000, channels=1)
    code, _ = _run(
        [str(tiny_reference_run), "--input", str(x), "--reference", str(ref), "--out", str(tmp_path / "styled.wav")],
        capsys,
    )
    assert code == 0 and (tmp_path / "styled.wav").exists()


def test_errors(tiny_run, tiny_reference_run, tmp_path, capsys):
    wet = _wav(tmp_path / "wet.wav")
    code, out = _run([str(tiny_reference_run), "--input", str(wet)], capsys)
    assert code == 2 and "reference" in out
    code, out = _run([str(tiny_run), "--input", str(tmp_path / "missing.wav")], capsys)
    assert code == 2
    (tmp_path / "junk.wav").write_bytes(b"junk")
    code, out = _run([str(tiny_run), "--input", str(tmp_path / "junk.wav")], capsys)
    assert code == 2 and "cannot read" in out
    code, _ = _run([str(tiny_run), "--input", str(wet), "--apply-to", str(wet)], capsys)
    assert code == 2
