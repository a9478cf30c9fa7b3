"""An effect estimator's recipe (``TrainConfig`` with its ``ModelConfig``) and reading a trained
run back. Run folders are :mod:`pimodule.laptop.runs`'s, the same for every family; a recipe is
``family = "fx"`` with a ``[model]`` and a ``[train]`` table.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import torch

from pimodule.laptop import runs
from pimodule.laptop.fx.batch import LABELS
from pimodule.laptop.fx.losses import OBJECTIVES
from pimodule.laptop.fx.model import Estimator, ModelConfig
from pimodule.laptop.fx.sources import ALL_KINDS, instrument_programs
from pimodule.laptop.fx.thirdparty import FAMILIES, HELD_OUT

LR_DECAYS = ("constant", "cosine")


def learning_rate_at(config: TrainConfig, step: int) -> float:
    """The learning rate of ``step`` (0-based) under ``config``'s schedule."""
    if config.lr_decay == "constant" or config.steps == 1:
        return config.learning_rate
    t = min(step, config.steps - 1) / (config.steps - 1)
    return config.learning_rate * (config.lr_final + (1 - config.lr_final) * 0.5 * (1 + math.cos(math.pi * t)))


@dataclass(frozen=True)
class TrainConfig:
    objective: str = "audio"
    steps: int = 1500
    batch_size: int = 16
    learning_rate: float = 1e-3
    # "constant", or "cosine": the rate falls along half a cosine to lr_final x learning_rate at
    # the last step (the late, noisy steps of a constant rate average out; resumable: by step)
    lr_decay: str = "constant"
    lr_final: float = 0.05
    excerpt_s: float = 1.0
    p_active: float = 0.5
    seed: int = 0
    checkpoint_every: int = 250
    kinds: tuple[str, ...] = ("speech", "samples", "instruments")
    max_files: int = 0  # 0: all files of each kind (tests use a few)
    # training instruments (sources.INSTRUMENT_SETS): "core", six GM programs; "wide", every
    # melodic program outside the held-out programs' families
    instruments: str = "core"
    threads: int = 1
    # audio objective: render the estimate with the true on/off decisions and distortion curve
    # (teacher forcing), so each effect's parameters get gradients of their own
    teacher_forcing: bool = False
    # weight of the chain-selection (on/off) term against the parameter and audio terms
    select_weight: float = 1.0
    # weight of the graded selection term (logits towards how far each stage's change is from the
    # audibility threshold, losses.change_logits); 0: off
    change_weight: float = 0.0
    # what makes an effect "on" for the labels: its own stage's change ("stage") or what removing
    # it changes in the output ("removal"), see pimodule.laptop.fx.batch
    labels: str = "stage"
    # every val_every steps (0: never) score chain selection on val_examples held-out chains
    # (drawn as in `pimodule eval fx`, from val_seed; history.json "val")
    val_every: int = 0
    val_examples: int = 128
    val_seed: int = 1
    # domain randomisation: this share of each batch goes through third-party chains of these
    # families (their own ranges, level changes anywhere; pimodule.laptop.fx.thirdparty) instead
    # of the project's; the benchmark's held-out families (thirdparty.HELD_OUT) are refused
    foreign: tuple[str, ...] = ()
    foreign_share: float = 0.0
    # processed signals peak-normalised to random levels (their level tells nothing)
    peak_level: bool = False
    # audio objective: the estimate's level matched to the target in closed form (losses.match_level)
    level_match: bool = False
    # start from the weights of an exported estimator of the same architecture (.onnx)
    init_from: str = ""
    # stop (with a checkpoint) once this many minutes of training have passed, over all sessions
    # of the run (0: no limit); the learning-rate schedule still follows ``steps``
    max_minutes: float = 0.0
    model: ModelConfig = field(default_factory=ModelConfig)

    def __post_init__(self) -> None:
        if self.objective not in OBJECTIVES:
            raise ValueError(f"objective must be one of {OBJECTIVES}, not {self.objective!r}")
        if self.steps < 1 or self.batch_size < 1 or not 0 < self.p_active <= 1:
            raise ValueError("steps and batch_size must be >= 1, p_active in (0, 1]")
        if self.labels not in LABELS:
            raise ValueError(f"labels must be one of {LABELS}, not {self.labels!r}")
        instrument_programs(self.instruments, "train")  # refuses an unknown set
        unknown = [k for k in self.kinds if k not in ALL_KINDS]
        if unknown:
            raise ValueError(f"unknown kinds {unknown} (one of {ALL_KINDS})")
        bad = [f for f in self.foreign if f not in FAMILIES or f in HELD_OUT]
        if bad:
            raise ValueError(
                f"foreign families {bad} refused: training may use {set(FAMILIES) - set(HELD_OUT)} "
                f"(the benchmark holds {HELD_OUT} out of training and tuning)"
            )
        if not 0 <= self.foreign_share <= 1:
            raise ValueError("foreign_share must be in [0, 1]")
        if self.foreign and self.objective != "audio":
            raise ValueError("foreign chains have no parameters in the project's terms: objective must be audio")
        if self.lr_decay not in LR_DECAYS or not 0 <= self.lr_final <= 1:
            raise ValueError(f"lr_decay must be one of {LR_DECAYS}, lr_final in [0, 1]")


FAMILY = "fx"


def config_to_toml(config: TrainConfig) -> str:
    data = asdict(config)
    model = data.pop("model")
    return runs.to_toml({"family": FAMILY, "model": model, "train": data})


def config_from_tables(tables: dict, where: str = "config") -> TrainConfig:
    model = runs.from_dict(ModelConfig, tables.get("model", {}), f"{where} [model]")
    train = dict(tables.get("train", {}))
    if "model" in train:
        raise ValueError(f"{where}: [model] is a table of its own, not a key of [train]")
    return replace(runs.from_dict(TrainConfig, train, f"{where} [train]"), model=model)


def load_config(path: Path) -> TrainConfig:
    return config_from_tables(runs.read_recipe(path, FAMILY), str(path))


def save_run(
    run_dir: Path, config: TrainConfig, model: Estimator, optimizer: torch.optim.Optimizer | None, step: int, meta: dict
) -> None:
    """The config and a checkpoint of ``step`` (steps done) with ``meta`` (seconds, losses...)."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / runs.CONFIG_FILE).write_text(config_to_toml(config))
    state = {"optimizer": optimizer.state_dict() if optimizer is not None else {}, "step": step}
    runs.save_checkpoint(run_dir, step, model, state, meta)


def load_run(run_dir: Path, checkpoint: str | int | None = None) -> tuple[Estimator, TrainConfig, dict]:
    """The trained estimator (eval mode), its config and the checkpoint's metadata (step,
    seconds_per_step, train_seconds)."""
    run_dir = Path(run_dir)
    if runs.family(run_dir) != FAMILY:
        raise ValueError(f"{run_dir}: not an effect-estimator run")
    config = load_config(run_dir / runs.CONFIG_FILE)
    weights, meta, _ = runs.load_checkpoint(run_dir, checkpoint)
    model = Estimator(config.model)
    model.load_state_dict(weights)
    model.eval()
    return model, config, meta


def weights_from_onnx(path: Path) -> dict[str, torch.Tensor]:
    """The named weights of an exported estimator (``model.<name>`` initializers) as a state dict."""
    import onnx
    from onnx import numpy_helper

    proto = onnx.load(str(path))
    return {
        i.name.removeprefix("model."): torch.from_numpy(numpy_helper.to_array(i).copy())
        for i in proto.graph.initializer
        if i.name.startswith("model.")
    }


def load_optimizer_state(run_dir: Path) -> dict | None:
    found = runs.checkpoint(run_dir)
    return runs.load_training_state(found)["optimizer"] if found is not None else None


def with_overrides(config: TrainConfig, **overrides) -> TrainConfig:
    model_keys = {f.name for f in fields(ModelConfig)}
    model_over = {k: v for k, v in overrides.items() if k in model_keys and v is not None}
    top = {k: v for k, v in overrides.items() if k not in model_keys and v is not None}
    return replace(config, model=replace(config.model, **model_over), **top)
