"""Training-run folders: config, checkpoints (safetensors weights + weights_only optimizer state)."""

from __future__ import annotations

import json
import tomllib
from dataclasses import fields
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from pimodule.laptop.ddsp.model import DDSPConfig, DDSPVoice

CHECKPOINT_DIR = "checkpoints"


def config_from_dict(cls, data: dict):
    known = {f.name for f in fields(cls)}
    unknown = set(data) - known
    if unknown:
        raise ValueError(f"unknown {cls.__name__} keys: {sorted(unknown)}")
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})


def read_toml(path: Path) -> dict:
    with open(path, "rb") as f:
        return tomllib.load(f)


def to_toml(sections: dict[str, dict]) -> str:
    def value(v):
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (int, float)):
            return repr(v)
        if isinstance(v, (list, tuple)):
            return "[" + ", ".join(value(x) for x in v) + "]"
        return json.dumps(str(v))

    lines = []
    for name, table in sections.items():
        lines.append(f"[{name}]")
        lines += [f"{k} = {value(v)}" for k, v in table.items() if v is not None]
        lines.append("")
    return "\n".join(lines)


def save_checkpoint(run: Path, step: int, model: torch.nn.Module, optimizer, scheduler, meta: dict) -> Path:
    folder = run / CHECKPOINT_DIR
    folder.mkdir(parents=True, exist_ok=True)
    weights = folder / f"model-{step:07d}.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(weights))
    torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "step": step},
               folder / f"train-{step:07d}.pt")
    (folder / f"meta-{step:07d}.json").write_text(json.dumps(meta, indent=1))
    (folder / "latest").write_text(weights.name)
    return weights


def latest_checkpoint(run: Path) -> Path | None:
    marker = Path(run) / CHECKPOINT_DIR / "latest"
    if not marker.is_file():
        return None
    return marker.parent / marker.read_text().strip()


def load_training_state(weights: Path) -> dict:
    return torch.load(str(weights).replace("model-", "train-").replace(".safetensors", ".pt"),
                      weights_only=True)


def load_run(run: Path, checkpoint: str | None = None) -> tuple[DDSPVoice, dict]:
    """The model of a run (latest checkpoint unless named) and its metadata."""
    run = Path(run)
    config_path = run / "config.toml"
    if not config_path.is_file():
        raise FileNotFoundError(f"{run}: not a training run (no config.toml)")
    config = config_from_dict(DDSPConfig, read_toml(config_path).get("model", {}))
    weights = (run / CHECKPOINT_DIR / checkpoint) if checkpoint else latest_checkpoint(run)
    if weights is None or not weights.is_file():
        raise FileNotFoundError(f"{run}: no checkpoint found")
    model = DDSPVoice(config)
    model.load_state_dict(load_file(str(weights)))
    meta_path = Path(str(weights).replace("model-", "meta-").replace(".safetensors", ".json"))
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    return model.eval(), meta
