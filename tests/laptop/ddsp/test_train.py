import json
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import replace

import numpy as np
import pytest
import torch

from pimodule.laptop import runs
from pimodule.laptop.data.dataset import load_dataset
from pimodule.laptop.ddsp.model import DDSPConfig
from pimodule.laptop.ddsp.recipe import RunConfig, TrainConfig, load_run
from pimodule.laptop.ddsp.train import data_stats, train

TINY = RunConfig(
    DDSPConfig(hidden_size=16),
    TrainConfig(batch_size=4, crop_frames=100, steps=40, learning_rate=5e-3, checkpoint_every=10, seed=3),
)


def test_config_round_trips_through_toml(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text(TINY.to_toml())
    assert RunConfig.from_toml(path) == TINY
    path.write_text('family = "ddsp"\n[train]\nbogus = 1\n')
    with pytest.raises(ValueError, match="bogus"):
        RunConfig.from_toml(path)


def test_training_lowers_the_loss_and_writes_a_run(tone_data, tmp_path):
    run = tmp_path / "run"
    meta = train(tone_data, run, TINY, progress=False)
    losses = [json.loads(line)["loss"] for line in (run / "log.jsonl").read_text().splitlines()]
    assert len(losses) == 40 and all(np.isfinite(losses))
    assert np.mean(losses[-10:]) < 0.8 * np.mean(losses[:10])
    assert (run / "plots" / "loss.png").stat().st_size > 0
    assert (run / "plots" / "spectrogram.png").stat().st_size > 0  # drawn from held-out audio
    for name in ("heldout_target.wav", "heldout_resynthesis.wav"):
        assert (run / "listen" / name).stat().st_size > 0
    assert meta["step"] == 40 and meta["data"]["stats"]["f0_midi_mean"] > 40
    state = runs.load_training_state(runs.checkpoint(run))  # weights_only=True load
    assert state["step"] == 40
    model, loaded_meta = load_run(run)
    assert loaded_meta["step"] == 40 and model.config == TINY.model


def test_resume_continues_where_it_stopped(tone_data, tmp_path):
    run = tmp_path / "run"
    half = replace(TINY, train=replace(TINY.train, steps=10))
    train(tone_data, run, half, progress=False)
    first, _ = load_run(run)
    meta = train(tone_data, run, TINY, resume=True, progress=False)
    assert meta["step"] == 40
    steps = [json.loads(line)["step"] for line in (run / "log.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 41))
    resumed, _ = load_run(run)
    assert any(not torch.equal(a, b) for a, b in zip(first.state_dict().values(), resumed.state_dict().values()))


def test_same_seed_same_weights(tone_data, tmp_path):
    short = replace(TINY, train=replace(TINY.train, steps=5))
    train(tone_data, tmp_path / "a", short, progress=False)
    train(tone_data, tmp_path / "b", short, progress=False)
    a, _ = load_run(tmp_path / "a")
    b, _ = load_run(tmp_path / "b")
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_torchrun_with_two_processes(tone_data, tmp_path):
    """The same command under torchrun: DDP with gloo on CPU, rank 0 writes the run."""
    config = tmp_path / "tiny.toml"
    config.write_text(replace(TINY, train=replace(TINY.train, steps=6, checkpoint_every=3)).to_toml())
    run = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node=2",
            "-m",
            "pimodule.cli",
            "train",
            "ddsp",
            "--data",
            str(tone_data),
            "--out",
            str(run),
            "--config",
            str(config),
            "--no-eval",
        ],
        check=True,
        env=env,
        timeout=300,
        capture_output=True,
    )
    meta = json.loads((run / "checkpoints" / "0000006" / "meta.json").read_text())
    assert meta["world_size"] == 2 and meta["step"] == 6
    model, _ = load_run(run)
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_time_limit_sets_the_bar_total_and_the_end(tone_data, tmp_path, capsys):
    """--max-minutes: the bar's total shrinks to the steps the limit allows and ends full (N/N)."""
    limited = replace(TINY, train=replace(TINY.train, steps=100_000, max_minutes=0.15, listen_every_minutes=0))
    meta = train(tone_data, tmp_path / "run", limited, progress=True)
    err = capsys.readouterr().err.replace("\r", "\n")
    totals = [tuple(map(int, m)) for m in re.findall(r"\| *(\d+)/(\d+) \[", err)]
    assert 2 <= meta["step"] < 100_000 and 8.5 < meta["train_seconds"] < 300, meta  # (the last step draws plots)
    assert totals[-1] == (meta["step"], meta["step"])  # ends full, at the limit
    assert all(total < 100_000 for n, total in totals if n >= 2)  # the total follows the time, not the steps
    etas = [(int(a), int(b), int(c), int(d)) for a, b, c, d in re.findall(r"\[(\d+):(\d+)<(\d+):(\d+),", err)]
    mid = [60 * a + b + 60 * c + d for a, b, c, d in etas[2:-1]]
    assert all(mid_s <= 9 + 3 for mid_s in mid), etas  # elapsed + ETA stays at the 9 s limit


def _ctrl_c_as_in_a_terminal() -> None:
    """The child's SIGINT at its default, so Python installs its Ctrl-C handler: a test run started
    in the background (CI under nohup) has SIGINT ignored, and a child inherits that."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_ctrl_c_saves_a_checkpoint_and_says_how_to_resume(tone_data, tmp_path):
    config = tmp_path / "tiny.toml"
    config.write_text(replace(TINY, train=replace(TINY.train, steps=100_000, checkpoint_every=100_000)).to_toml())
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "pimodule.cli", "train", "ddsp", "--data", str(tone_data), "--out", str(run)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        cmd + ["--config", str(config)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        preexec_fn=_ctrl_c_as_in_a_terminal,
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            log = run / "log.jsonl"
            if log.is_file() and len(log.read_text().splitlines()) >= 5:
                break
            time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    err = err.decode()
    assert proc.returncode == 130, err
    step = runs.load_checkpoint(run)[1]["step"]
    assert step >= 5 and f"stopped at step {step}; checkpoint saved in {run}" in err
    assert f"pimodule train ddsp --data {tone_data} --out {run} --resume" in err
    resumed = subprocess.run(
        cmd + ["--resume", "--steps", str(step + 3), "--no-eval"], env=env, capture_output=True, text=True, timeout=300
    )
    assert resumed.returncode == 0, resumed.stderr
    assert f"trained {step + 3} steps" in resumed.stdout and runs.load_checkpoint(run)[1]["step"] == step + 3


def test_held_out_without_pitched_audio_is_refused_before_training(tone_data, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    for name in ("train.npz", "dataset.json"):
        (data / name).write_bytes((tone_data / name).read_bytes())
    with np.load(tone_data / "held_out.npz") as held:
        silent = {k: np.zeros_like(held[k]) if k == "audio" else held[k] for k in held}
    silent["loudness_db"] = np.full_like(silent["loudness_db"], -100.0)
    np.savez(data / "held_out.npz", **silent)
    proc = subprocess.run(
        [sys.executable, "-m", "pimodule.cli", "train", "ddsp", "--data", str(data), "--out", str(tmp_path / "r")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1 and "no pitched audio to score the voice" in proc.stderr
    assert not (tmp_path / "r").exists()  # refused before training


def test_data_stats_store_the_pitch_range(tone_data):
    stats = data_stats(load_dataset(tone_data, "train"), 16000)
    lo, hi = stats["f0_hz_range"]
    assert 140 < lo < stats["f0_hz_median"] < hi < 560 and stats["f0_notes"].count("-") == 1
