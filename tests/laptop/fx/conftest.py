from __future__ import annotations

import pytest

from pimodule.laptop.fx.model import ModelConfig
from pimodule.laptop.fx.run import TrainConfig


def tiny_config(**overrides) -> TrainConfig:
    model = ModelConfig(
        channels=12,
        n_layers=2,
        n_mels=24,
        n_fft=512,
        hop=128,
        waveform_stats=True,
        conditioning=overrides.pop("conditioning", "blind"),
        paired=overrides.pop("paired", False),
        cross_spectral=overrides.pop("cross_spectral", False),
        band_gain=overrides.pop("band_gain", False),
    )
    base = dict(
        objective="hybrid",
        steps=3,
        batch_size=2,
        checkpoint_every=2,
        max_files=2,
        excerpt_s=0.5,
        kinds=("speech", "samples"),
        model=model,
    )
    base.update(overrides)
    return TrainConfig(**base)


@pytest.fixture(name="tiny_config")
def tiny_config_fixture():
    """The factory itself, for tests that build their own tiny configs."""
    return tiny_config


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    from pimodule.laptop.fx.train import train

    run = tmp_path_factory.mktemp("fx_blind")
    train(tiny_config(), run, progress=False)
    return run


@pytest.fixture(scope="session")
def tiny_reference_run(tmp_path_factory):
    from pimodule.laptop.fx.train import train

    run = tmp_path_factory.mktemp("fx_ref")
    train(tiny_config(conditioning="reference", objective="audio"), run, progress=False)
    return run


@pytest.fixture(scope="session")
def tiny_paired_run(tmp_path_factory):
    from pimodule.laptop.fx.train import train

    run = tmp_path_factory.mktemp("fx_paired")
    train(tiny_config(conditioning="dry", paired=True, objective="param"), run, progress=False)
    return run


@pytest.fixture(scope="session")
def tiny_paired_xs_run(tmp_path_factory):
    """Paired, with the cross-spectral and band gain features, and in-training validation."""
    from pimodule.laptop.fx.train import train

    run = tmp_path_factory.mktemp("fx_paired_xs")
    train(
        tiny_config(
            conditioning="dry",
            paired=True,
            cross_spectral=True,
            band_gain=True,
            objective="hybrid",
            teacher_forcing=True,
            val_every=2,
            val_examples=4,
        ),
        run,
        progress=False,
    )
    return run
