"""``pimodule estimate`` on real files: table, JSON, rendering with the twins, error paths."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest
import soundfile as sf

from pimodule.laptop.fx import estimate
from pimodule.laptop.fx.infer import apply_estimate, flat_above, limited


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
    code, out = _run(
        [str(tiny_reference_run), "--input", str(x), "--reference", str(ref), "--out", str(tmp_path / "styled.wav")],
        capsys,
    )
    assert code == 0 and (tmp_path / "styled.wav").exists()
    assert "brings the input closest to the reference's sound" in out  # checked, never further than the input


def test_errors(tiny_run, tiny_reference_run, tiny_paired_run, tmp_path, capsys):
    wet = _wav(tmp_path / "wet.wav")
    code, out = _run([str(tiny_reference_run), "--input", str(wet)], capsys)
    assert code == 2 and "reference" in out
    code, out = _run([str(tiny_run), "--input", str(tmp_path / "missing.wav")], capsys)
    assert code == 2
    (tmp_path / "junk.wav").write_bytes(b"junk")
    code, out = _run([str(tiny_run), "--input", str(tmp_path / "junk.wav")], capsys)
    assert code == 2 and "cannot be read" in out and "junk.wav" in out
    # a broken float file (NaN) and a click too short to hear effects in are refused, by name
    broken = tmp_path / "nan.wav"
    audio = 0.1 * np.sin(np.arange(22050) / 10.0)[:, None]
    audio[100] = np.nan
    sf.write(str(broken), audio, 22050, subtype="FLOAT")
    code, out = _run([str(tiny_run), "--input", str(broken)], capsys)
    assert code == 2 and "nan.wav" in out and "NaN" in out and "gain" not in out
    short = tmp_path / "click.wav"
    sf.write(str(short), np.full((400, 1), 0.5), 22050)
    code, out = _run([str(tiny_run), "--input", str(short)], capsys)
    assert code == 2 and "click.wav" in out and "too short" in out and "no signal" not in out
    code, out = _run([str(tiny_paired_run), "--input", str(wet), "--dry", str(short)], capsys)
    assert code == 2 and "too short" in out
    # what --apply-to cannot read, or --out cannot be written to, is said before the estimate
    out_wav = tmp_path / "out.wav"
    for bad in (broken, tmp_path / "junk.wav"):
        code, out = _run([str(tiny_run), "--input", str(wet), "--apply-to", str(bad), "--out", str(out_wav)], capsys)
        assert code == 2 and bad.name in out and "gain" not in out and not out_wav.exists()
    nowhere = tmp_path / "no-such-folder" / "out.wav"
    code, out = _run([str(tiny_run), "--input", str(wet), "--apply-to", str(wet), "--out", str(nowhere)], capsys)
    assert code == 2 and "no-such-folder" in out and "gain" not in out
    for where in (tmp_path, tmp_path / "out"):  # a folder, a name without a sound file's ending
        code, out = _run([str(tiny_run), "--input", str(wet), "--apply-to", str(wet), "--out", str(where)], capsys)
        assert code == 2 and ".wav" in out and "gain" not in out
    code, _ = _run([str(tiny_run), "--input", str(wet), "--apply-to", str(wet)], capsys)
    assert code == 2


def test_a_blind_model_refuses_a_dry_file(tiny_run, tmp_path, capsys):
    wet = _wav(tmp_path / "wet.wav")
    code, out = _run([str(tiny_run), "--input", str(wet), "--dry", str(wet)], capsys)
    assert code == 2 and "blind" in out and "--dry" in out


def test_a_silent_input_gets_no_signal(tiny_run, tiny_paired_run, tmp_path, capsys):
    silent = tmp_path / "silent.wav"
    sf.write(str(silent), np.zeros((22050, 1)), 22050)
    code, out = _run([str(tiny_run), "--input", str(silent)], capsys)
    assert code == 1 and "no signal" in out and "gain" not in out
    wet = _wav(tmp_path / "wet.wav", channels=1)
    code, out = _run([str(tiny_paired_run), "--input", str(wet), "--dry", str(silent)], capsys)
    assert code == 1 and "no signal" in out


def test_words_not_p_values(tiny_run, tmp_path, capsys):
    wet = _wav(tmp_path / "wet.wav")
    code, out = _run([str(tiny_run), "--input", str(wet)], capsys)
    assert code == 0 and "p=" not in out
    for name in ("eq", "compressor", "distortion", "reverb"):
        line = next(x for x in out.splitlines() if x.startswith(name))
        assert any(w in line for w in ("sure", "probably", "unsure"))


def test_peak_safe_output(tiny_paired_run, tmp_path, capsys):
    from pimodule.laptop.fx.infer import peak_safe

    y, db = peak_safe(np.array([0.5, -2.0, 1.0]))
    assert np.max(np.abs(y)) == pytest.approx(10 ** (-1 / 20)) and db == pytest.approx(
        20 * np.log10(10 ** (-1 / 20) / 2)
    )
    quiet, db = peak_safe(np.array([0.1, -0.2]))
    assert db == 0.0 and np.array_equal(quiet, [0.1, -0.2])
    sr = 22050
    t = np.arange(sr) / sr
    dry = 0.5 * np.sin(2 * np.pi * 220 * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 2 * t))
    sf.write(str(tmp_path / "dry.wav"), dry, sr)
    # the wet file 12 dB above the dry one: the chain's gain (in closed form) takes the dry file,
    # which peaks at -6 dBFS, to +6 dBFS: the output is normalised
    sf.write(str(tmp_path / "wet_loud.wav"), np.clip(4 * dry, -8, 8), sr, subtype="FLOAT")
    code, out = _run(
        [
            str(tiny_paired_run),
            "--input",
            str(tmp_path / "wet_loud.wav"),
            "--dry",
            str(tmp_path / "dry.wav"),
            "--no-refine",
            "--apply-to",
            str(tmp_path / "dry.wav"),
            "--out",
            str(tmp_path / "y.wav"),
        ],
        capsys,
    )
    assert code == 0 and "normalised by" in out and "-1 dBFS" in out
    y, _ = sf.read(str(tmp_path / "y.wav"))
    assert np.max(np.abs(y)) <= 10 ** (-1 / 20) + 1e-6


def test_an_unrelated_dry_file_is_flagged(tiny_paired_run, tmp_path, capsys):
    from pimodule.laptop.fx.infer import dry_mismatch

    sr = 16000
    rng = np.random.default_rng(0)
    t = np.arange(2 * sr) / sr
    a = np.sin(2 * np.pi * 220 * t) * (np.sin(2 * np.pi * 1.3 * t) > 0) + 0.01 * rng.standard_normal(t.size)
    b = np.sin(2 * np.pi * 330 * t) * (np.sin(2 * np.pi * 0.7 * t + 1.0) > 0.3) + 0.01 * rng.standard_normal(t.size)
    related = np.tanh(4 * a) + 0.3 * np.convolve(a, np.exp(-np.arange(2000) / 400) * 0.01, "same")
    assert dry_mismatch(related, a, sr) == []
    assert any("go together" in m for m in dry_mismatch(b, a, sr))
    assert any("lengths" in m for m in dry_mismatch(related, a[: sr // 2], sr))
    sf.write(str(tmp_path / "wet.wav"), 0.5 * related / np.abs(related).max(), sr)
    sf.write(str(tmp_path / "dry.wav"), 0.5 * b, sr)
    code, out = _run(
        [str(tiny_paired_run), "--input", str(tmp_path / "wet.wav"), "--dry", str(tmp_path / "dry.wav"), "--no-refine"],
        capsys,
    )
    assert code == 0 and "warning: the dry file may not be the source" in out and "unsure" in out


def test_a_dc_offset_and_a_narrower_file_are_not_read_as_effects(tiny_paired_run, tmp_path, capsys):
    from pimodule.laptop.fx.infer import LoadedEstimator, lined_up, read_mono

    rate = LoadedEstimator(tiny_paired_run).sample_rate
    t = np.arange(int(1.5 * rate)) / rate
    dry = 0.3 * np.sin(2 * np.pi * 220 * t) * (np.sin(2 * np.pi * 2 * t) > 0)
    dry += 0.01 * np.random.default_rng(0).standard_normal(t.size)
    wet = 0.5 * np.tanh(5 * dry)
    for name, audio, sr in (
        ("dry", dry, rate),
        ("wet", wet, rate),
        ("dc", wet + 0.4, rate),
        ("low", wet[::2], rate // 2),
    ):
        sf.write(str(tmp_path / f"{name}.wav"), audio, sr, subtype="FLOAT")
    a, _ = read_mono(tmp_path / "dc.wav")
    b, _ = read_mono(tmp_path / "wet.wav")
    assert abs(float(a.mean())) < 1e-6 and np.max(np.abs(a - b)) < 1e-5  # the offset is gone, nothing else
    said = {}
    for name in ("wet", "dc", "low"):
        argv = [str(tiny_paired_run), "--input", str(tmp_path / f"{name}.wav"), "--dry", str(tmp_path / "dry.wav")]
        code, said[name] = _run(argv + ["--json", "--no-refine"], capsys)
        assert code == 0
    dc, plain = json.loads(said["dc"]), json.loads(said["wet"])
    for name, entry in plain.items():  # the same estimate with and without the offset
        assert dc[name]["active"] == entry["active"], name
        assert dc[name]["params"] == pytest.approx(entry["params"], rel=1e-3, abs=1e-3), name
    code, out = _run(
        [str(tiny_paired_run), "--input", str(tmp_path / "low.wav"), "--dry", str(tmp_path / "dry.wav"), "--no-refine"],
        capsys,
    )
    assert code == 0 and f"low.wav is at {rate // 2} Hz: the files are compared up to {rate / 4000:g} kHz only" in out
    y, x, _ = lined_up(wet[::2], rate // 2, dry, rate, rate)  # the dry file band-limited as the input is
    power = np.abs(np.fft.rfft(x)) ** 2
    top = np.fft.rfftfreq(len(x), 1 / rate) > 0.55 * rate / 2
    assert power[top].sum() < 1e-4 * power.sum()


def _eq(**gains_and_freqs) -> dict:
    params = {"low_shelf_gain_db": 0.0, "low_shelf_freq_hz": 100.0, "peak1_gain_db": 0.0, "peak1_freq_hz": 300.0}
    params |= {"peak1_q": 1.0, "peak2_gain_db": 0.0, "peak2_freq_hz": 1000.0, "peak2_q": 1.0, "peak3_gain_db": 0.0}
    params |= {"peak3_freq_hz": 3000.0, "peak3_q": 1.0, "high_shelf_gain_db": 0.0, "high_shelf_freq_hz": 5000.0}
    others = {e: {"active": False, "params": {}} for e in ("compressor", "distortion", "reverb", "gain")}
    return {"eq": {"active": True, "probability": 0.9, "params": params | gains_and_freqs}, **others}


def test_eq_bands_above_a_band_limited_input_are_left_flat():
    desc = _eq(low_shelf_gain_db=-6.0, peak3_gain_db=9.0, peak3_freq_hz=6000.0, high_shelf_gain_db=8.0)
    flat, names = flat_above(desc, 4000.0)
    assert names == ["peak3", "high_shelf"]
    assert flat["eq"]["active"] and flat["eq"]["params"]["low_shelf_gain_db"] == -6.0
    assert flat["eq"]["params"]["peak3_gain_db"] == 0.0 and flat["eq"]["params"]["high_shelf_gain_db"] == 0.0
    assert desc["eq"]["params"]["peak3_gain_db"] == 9.0  # the estimate it came from is not changed
    # nothing of it left: the EQ is off; an EQ that is off or all below the limit is left alone
    off, names = flat_above(_eq(high_shelf_gain_db=8.0), 4000.0)
    assert names == ["high_shelf"] and not off["eq"]["active"]
    assert flat_above(_eq(low_shelf_gain_db=-6.0), 4000.0) == (_eq(low_shelf_gain_db=-6.0), [])
    inactive = _eq(high_shelf_gain_db=8.0)
    inactive["eq"]["active"] = False
    assert flat_above(inactive, 4000.0) == (inactive, [])


def test_a_band_limited_estimate_leaves_the_top_of_a_full_band_file_as_it_was():
    rate = 48000
    x = np.random.default_rng(0).standard_normal((rate, 1)) * 0.05
    desc = _eq(low_shelf_gain_db=-6.0, peak3_gain_db=12.0, peak3_freq_hz=6000.0, high_shelf_gain_db=10.0)
    full, notes = limited(desc, 16000, 16000, 44100)
    assert full == desc and notes == []  # full-band inputs: nothing to say
    phone, notes = limited(desc, 16000, 8000, 44100)
    assert len(notes) == 1 and "peak3, high_shelf at or above 4 kHz left flat" in notes[0]

    off = apply_estimate({**desc, "eq": {**desc["eq"], "active": False}}, x, rate)
    assert np.max(np.abs(off - x)) < 1e-9  # nothing on: the file as it was
    assert np.max(np.abs(apply_estimate({}, x, rate) - x)) < 1e-9  # nor what an estimate does not name
    top = np.fft.rfftfreq(len(x), 1 / rate) > 8000

    def top_db(y):  # the level above 8 kHz against the file's
        return 10 * np.log10(
            np.sum(np.abs(np.fft.rfft(y[:, 0]))[top] ** 2) / np.sum(np.abs(np.fft.rfft(off[:, 0]))[top] ** 2)
        )

    assert top_db(apply_estimate(desc, x, rate)) > 6  # what the unflattened estimate would have played
    assert abs(top_db(apply_estimate(phone, x, rate))) < 0.5
