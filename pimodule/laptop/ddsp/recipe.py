"""A DDSP voice's recipe (model and training settings, one TOML) and reading a trained run back.

Run folders are :mod:`pimodule.laptop.runs`'s, the same for every family.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from pimodule.laptop import runs
from pimodule.laptop.ddsp.loss import FFT_SIZES
from pimodule.laptop.ddsp.model import DDSPConfig, DDSPVoice

FAMILY = "ddsp"


@dataclass(frozen=True)
class TrainConfig:
    batch_size: int = 8
    crop_frames: int = 250  # 1 s at 250 frames/s
    steps: int = 3000
    learning_rate: float = 2e-3
    lr_decay_per_1000: float = 0.5
    grad_clip: float = 2.0
    seed: int = 0
    checkpoint_every: int = 500
    listen_every_minutes: float = 5.0  # plots and a held-out resynthesis (RUN/plots, RUN/listen)
    max_minutes: float = 0.0  # 0: no time limit
    fft_sizes: tuple[int, ...] = FFT_SIZES
    threads: int = 0  # 0: torch's default


@dataclass(frozen=True)
class RunConfig:
    model: DDSPConfig = field(default_factory=DDSPConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    @classmethod
    def from_toml(cls, path: Path | None) -> RunConfig:
        if path is None:
            return cls()
        tables = runs.read_recipe(path, FAMILY)
        return cls(
            runs.from_dict(DDSPConfig, tables["model"], f"{path} [model]"),
            runs.from_dict(TrainConfig, tables["train"], f"{path} [train]"),
        )

    def to_toml(self) -> str:
        return runs.recipe_text(FAMILY, self.model, self.train)


def load_run(run: Path, checkpoint: str | int | None = None) -> tuple[DDSPVoice, dict]:
    """The voice of a run (latest checkpoint unless named), in eval mode, and its metadata."""
    run = Path(run)
    config = RunConfig.from_toml(run / runs.CONFIG_FILE)
    weights, meta, _ = runs.load_checkpoint(run, checkpoint)
    model = DDSPVoice(config.model)
    model.load_state_dict(weights)
    return model.eval(), meta
