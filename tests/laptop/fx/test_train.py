"""Training runs end to end on tiny configs: files, config round trip, resume, plots."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pimodule.laptop.fx.run import config_from_dict, config_to_toml, load_config, load_run


def test_run_folder_has_everything(tiny_run, tiny_config):
    for name in ("config.toml", "model.safetensors", "optimizer.pt", "history.json", "loss.png",
                 "example.png"):
        assert (tiny_run / name).exists(), name
    history = json.loads((tiny_run / "history.json").read_text())
    assert history["step"] == [0, 1, 2]
    assert history["seconds_per_step"] > 0
    assert set(history["parts"][0]) == {"select", "mode", "param", "audio"}
    model, config, _ = load_run(tiny_run)
    assert config == tiny_config()
    assert not model.training


def test_resume_continues_from_the_last_step(tiny_run, tmp_path):
    import shutil

    from pimodule.laptop.fx.run import with_overrides
    from pimodule.laptop.fx.train import train

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    history = train(with_overrides(load_config(run / "config.toml"), steps=5), run, resume=True,
                    progress=False)
    assert history["step"] == [0, 1, 2, 3, 4]


def test_config_toml_round_trip_and_errors(tiny_config):
    import tomllib

    config = tiny_config(seed=7)
    assert config_from_dict(tomllib.loads(config_to_toml(config))) == config
    with pytest.raises(ValueError):
        config_from_dict({"objective": "vibes"})
    with pytest.raises(ValueError):
        config_from_dict({"learning_rat": 0.1})
    with pytest.raises(ValueError, match="labels"):
        config_from_dict({"labels": "loudness"})
    with pytest.raises(ValueError, match="instruments"):
        config_from_dict({"instruments": "everything"})


def test_cli_main_with_config_file_and_overrides(tmp_path, tiny_config, capsys):
    import argparse

    from pimodule.laptop.fx import train as train_cmd
    from pimodule.laptop.fx.run import config_to_toml

    cfg = tmp_path / "fx.toml"
    cfg.write_text(config_to_toml(tiny_config(steps=2)))
    parser = argparse.ArgumentParser()
    train_cmd.configure(parser)
    out = tmp_path / "run"
    code = train_cmd.main(parser.parse_args(["--out", str(out), "--config", str(cfg), "--objective",
                                             "param", "--seed", "3", "--no-progress"]))
    assert code == 0 and "s/step" in capsys.readouterr().out
    saved = load_config(out / "config.toml")
    assert saved.objective == "param" and saved.seed == 3 and saved.steps == 2


def test_validation_scores_selection_during_training(tiny_paired_xs_run):
    history = json.loads((tiny_paired_xs_run / "history.json").read_text())
    assert [v["step"] for v in history["val"]] == [2, 3]  # every 2 steps and at the end
    for v in history["val"]:
        assert 0 <= v["selection_accuracy"] <= 1 and 0 <= v["n_clear"] <= 4
        assert set(v["per_effect_accuracy"]) == {"eq", "compressor", "distortion", "reverb"}
    model, config, _ = load_run(tiny_paired_xs_run)
    assert config.model.cross_spectral and config.model.band_gain and config.val_every == 2


def test_cosine_schedule_falls_from_the_rate_to_its_final_fraction(tiny_config):
    from pimodule.laptop.fx.run import learning_rate_at

    config = tiny_config(steps=101, learning_rate=2e-3, lr_decay="cosine", lr_final=0.1)
    rates = [learning_rate_at(config, s) for s in range(config.steps)]
    assert rates[0] == pytest.approx(2e-3) and rates[-1] == pytest.approx(2e-4)
    assert rates[50] == pytest.approx(2e-3 * (0.1 + 0.9 * 0.5))
    assert all(a >= b for a, b in zip(rates, rates[1:]))
    constant = tiny_config(steps=101, learning_rate=2e-3)
    assert {learning_rate_at(constant, s) for s in range(101)} == {2e-3}
    with pytest.raises(ValueError, match="lr_decay"):
        tiny_config(lr_decay="step")


def test_training_steps_with_the_scheduled_rate(tiny_config, tmp_path):
    import torch

    from pimodule.laptop.fx.run import learning_rate_at
    from pimodule.laptop.fx.train import train

    config = tiny_config(steps=4, lr_decay="cosine", lr_final=0.25)
    train(config, tmp_path / "run", progress=False)
    state = torch.load(tmp_path / "run" / "optimizer.pt", weights_only=True)
    assert state["param_groups"][0]["lr"] == pytest.approx(learning_rate_at(config, 3))
    assert learning_rate_at(config, 3) == pytest.approx(0.25e-3)
    assert load_config(tmp_path / "run" / "config.toml").lr_decay == "cosine"


def test_training_on_removal_labels(tiny_config, tmp_path):
    """A run labelled by what removing each effect changes in the output trains, records its
    label definition and validates against both definitions."""
    from pimodule.laptop.fx.train import train

    config = tiny_config(steps=2, labels="removal", val_every=2, val_examples=4,
                         conditioning="dry", paired=True, objective="param")
    history = train(config, tmp_path / "run", progress=False)
    assert load_config(tmp_path / "run" / "config.toml").labels == "removal"
    v = history["val"][-1]
    assert 0 <= v["selection_accuracy"] <= 1 and 0 <= v["selection_accuracy_removal"] <= 1


@pytest.mark.parametrize("path", sorted((Path(__file__).parents[3] / "configs").glob("fx_*.toml")),
                         ids=lambda p: p.stem)
def test_every_shipped_fx_config_loads(path):
    config = load_config(path)
    assert config.steps >= 1000 and config.labels in ("stage", "removal")
