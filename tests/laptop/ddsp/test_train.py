import json
import os
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest
import torch

from pimodule.laptop import runs
from pimodule.laptop.ddsp.model import DDSPConfig
from pimodule.laptop.ddsp.recipe import RunConfig, TrainConfig, load_run
from pimodule.laptop.ddsp.train import train

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
