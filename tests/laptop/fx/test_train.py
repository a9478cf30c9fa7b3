"""Training runs end to end on tiny configs: files, config round trip, resume, plots."""

from __future__ import annotations

from pathlib import Path

import pytest

from pimodule.laptop import runs
from pimodule.laptop.fx.run import config_from_tables, config_to_toml, load_config, load_run


def config_from_dict(data: dict):
    """A flat dict of [train] keys (and a nested model dict) as a recipe would hold them."""
    data = dict(data)
    return config_from_tables({"model": data.pop("model", {}), "train": data})


def test_run_folder_has_everything(tiny_run, tiny_config):
    for name in (
        "run.toml",
        "log.jsonl",
        "checkpoints/latest",
        "checkpoints/0000003/model.safetensors",
        "checkpoints/0000003/train.pt",
        "plots/loss.png",
        "plots/example.png",
    ):
        assert (tiny_run / name).exists(), name
    assert runs.family(tiny_run) == "fx"
    records = runs.read_log(tiny_run)
    assert [r["step"] for r in records] == [1, 2, 3]
    assert set(records[0]["parts"]) == {"select", "mode", "param", "audio"}
    model, config, meta = load_run(tiny_run)
    assert config == tiny_config()
    assert meta["step"] == 3 and meta["seconds_per_step"] > 0
    assert not model.training


def test_resume_continues_from_the_last_step(tiny_run, tmp_path):
    import shutil

    from pimodule.laptop.fx.run import with_overrides
    from pimodule.laptop.fx.train import train

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    meta = train(with_overrides(load_config(run / "run.toml"), steps=5), run, resume=True, progress=False)
    assert meta["step"] == 5
    assert [r["step"] for r in runs.read_log(run)] == [1, 2, 3, 4, 5]


def test_config_toml_round_trip_and_errors(tiny_config):
    import tomllib

    config = tiny_config(seed=7)
    tables = tomllib.loads(config_to_toml(config))
    assert tables.pop("family") == "fx" and config_from_tables(tables) == config
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
    code = train_cmd.main(
        parser.parse_args(
            ["--out", str(out), "--config", str(cfg), "--objective", "param", "--seed", "3", "--no-progress"]
        )
    )
    assert code == 0 and "s/step" in capsys.readouterr().out
    saved = load_config(out / "run.toml")
    assert saved.objective == "param" and saved.seed == 3 and saved.steps == 2


def test_validation_scores_selection_during_training(tiny_paired_xs_run):
    vals = [r for r in runs.read_log(tiny_paired_xs_run) if "val" in r]
    assert [r["step"] for r in vals] == [2, 3]  # every 2 steps and at the end
    for v in (r["val"] for r in vals):
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

    from pimodule.laptop.fx.run import learning_rate_at
    from pimodule.laptop.fx.train import train

    config = tiny_config(steps=4, lr_decay="cosine", lr_final=0.25)
    train(config, tmp_path / "run", progress=False)
    state = runs.load_training_state(runs.checkpoint(tmp_path / "run"))["optimizer"]
    assert state["param_groups"][0]["lr"] == pytest.approx(learning_rate_at(config, 3))
    assert learning_rate_at(config, 3) == pytest.approx(0.25e-3)
    assert load_config(tmp_path / "run" / "run.toml").lr_decay == "cosine"


def test_training_on_removal_labels(tiny_config, tmp_path):
    """A run labelled by what removing each effect changes in the output trains, records its
    label definition and validates against both definitions."""
    from pimodule.laptop.fx.train import train

    config = tiny_config(
        steps=2, labels="removal", val_every=2, val_examples=4, conditioning="dry", paired=True, objective="param"
    )
    meta = train(config, tmp_path / "run", progress=False)
    assert load_config(tmp_path / "run" / "run.toml").labels == "removal"
    v = meta["val"]
    assert 0 <= v["selection_accuracy"] <= 1 and 0 <= v["selection_accuracy_removal"] <= 1


@pytest.mark.parametrize(
    "path", sorted((Path(__file__).parents[3] / "configs").glob("fx_*.toml")), ids=lambda p: p.stem
)
def test_every_shipped_fx_config_loads(path):
    config = load_config(path)
    assert config.steps >= 1000 and config.labels in ("stage", "removal")
