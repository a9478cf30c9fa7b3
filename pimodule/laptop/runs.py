"""A training run's folder, the same for every model family, and the one TOML reader/writer of
the training configs.

::

    RUN/run.toml                 family = "ddsp" | "fx", then the [model] and [train] tables
    RUN/log.jsonl                one JSON line per step (step, loss, seconds, ...) and per validation
    RUN/checkpoints/NNNNNNN/     model.safetensors, train.pt (optimizer and schedule, loaded with
                                 weights_only=True), meta.json (step, seconds, data, metrics so far)
    RUN/checkpoints/latest       the name of the newest checkpoint folder
    RUN/plots/                   pictures drawn while training (loss, spectrograms)
    RUN/listen/                  held-out resyntheses written while training (wav)
    RUN/metrics.json             held-out numbers at the end

A recipe in ``configs/`` is the same TOML as ``run.toml``. Checkpoints are written to a temporary
folder and renamed, so an interrupted write never leaves a half checkpoint as the latest.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import tomllib
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

FAMILIES = ("ddsp", "fx")
CONFIG_FILE = "run.toml"
LOG_FILE = "log.jsonl"
CHECKPOINTS = "checkpoints"
KEEP_CHECKPOINTS = 5  # the newest ones; older ones are deleted


# -- TOML ------------------------------------------------------------------------------------------
def read_toml(path: Path) -> dict:
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except tomllib.TOMLDecodeError as err:
        raise ValueError(f"{path}: not valid TOML ({err})") from err


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise TypeError(f"cannot write {type(v).__name__} to TOML")


def to_toml(data: Mapping[str, Any]) -> str:
    """Top-level keys first, then one table per dict value (one level deep, as the configs are)."""
    lines = [f"{k} = {_toml_value(v)}" for k, v in data.items() if not isinstance(v, dict) and v is not None]
    for name, table in data.items():
        if isinstance(table, dict):
            lines += ["", f"[{name}]"] + [f"{k} = {_toml_value(v)}" for k, v in table.items() if v is not None]
    return "\n".join(lines) + "\n"


def from_dict(cls, data: Mapping[str, Any], where: str):
    """A frozen dataclass from a TOML table: unknown keys refused by name, lists become tuples,
    ints become floats where the field is a float."""
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ValueError(f"{where}: unknown keys {unknown} (known: {', '.join(known)})")
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for key, value in data.items():
        if isinstance(value, list):
            value = tuple(value)
        elif hints.get(key) is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        kwargs[key] = value
    try:
        return cls(**kwargs)
    except TypeError as err:
        raise ValueError(f"{where}: {err}") from err


def read_recipe(path: Path, family: str) -> dict[str, dict]:
    """The ``model`` and ``train`` tables of a recipe or run.toml of ``family``."""
    data = read_toml(Path(path))
    found = data.pop("family", family)
    if found != family:
        raise ValueError(f"{path}: a {found!r} recipe, not {family!r}")
    unknown = sorted(set(data) - {"model", "train"})
    if unknown:
        raise ValueError(f"{path}: unknown keys or tables {unknown} (a recipe has family, [model] and [train])")
    return {"model": dict(data.get("model", {})), "train": dict(data.get("train", {}))}


def recipe_text(family: str, model, train, comment: str = "") -> str:
    head = "".join(f"# {line}\n" for line in comment.splitlines())
    return head + to_toml({"family": family, "model": dataclasses.asdict(model), "train": dataclasses.asdict(train)})


# -- the run folder ---------------------------------------------------------------------------------
def family(run: Path) -> str:
    """Which family a run folder holds (a clear error when it is not a run folder)."""
    path = Path(run) / CONFIG_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{run}: not a training run (no {CONFIG_FILE}); make one with pimodule train")
    found = read_toml(path).get("family")
    if found not in FAMILIES:
        raise ValueError(f"{path}: family {found!r} is not one of {FAMILIES}")
    return found


def write_config(run: Path, family_name: str, model, train) -> None:
    run = Path(run)
    run.mkdir(parents=True, exist_ok=True)
    (run / CONFIG_FILE).write_text(recipe_text(family_name, model, train))


def append_log(run: Path, record: dict) -> None:
    with open(Path(run) / LOG_FILE, "a") as f:
        f.write(json.dumps(record) + "\n")


def read_log(run: Path) -> list[dict]:
    path = Path(run) / LOG_FILE
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def truncate_log(run: Path, after_step: int) -> None:
    """Drop log lines past ``after_step`` (a resume from an earlier checkpoint repeats them)."""
    records = [r for r in read_log(run) if r.get("step", 0) <= after_step]
    (Path(run) / LOG_FILE).write_text("".join(json.dumps(r) + "\n" for r in records))


def save_checkpoint(run: Path, step: int, model: torch.nn.Module, training_state: dict, meta: dict) -> Path:
    """Weights, optimizer/schedule state and metadata of ``step``; the newest becomes ``latest``."""
    folder = Path(run) / CHECKPOINTS
    final = folder / f"{step:07d}"
    tmp = folder / f".{step:07d}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp / "model.safetensors"))
    torch.save(training_state, tmp / "train.pt")
    (tmp / "meta.json").write_text(json.dumps({"step": step, **meta}, indent=1))
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)
    (folder / "latest.tmp").write_text(final.name)
    (folder / "latest.tmp").replace(folder / "latest")
    for old in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))[:-KEEP_CHECKPOINTS]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def checkpoint(run: Path, name: str | int | None = None) -> Path | None:
    """A checkpoint folder: the latest, or one named by its step; None when there is none."""
    folder = Path(run) / CHECKPOINTS
    if name is None:
        marker = folder / "latest"
        if not marker.is_file():
            return None
        found = folder / marker.read_text().strip()
    else:
        found = folder / f"{int(str(name)):07d}"
    return found if (found / "model.safetensors").is_file() else None


def load_checkpoint(run: Path, name: str | int | None = None) -> tuple[dict, dict, Path]:
    """(weights, meta, folder) of a checkpoint (the latest unless named)."""
    found = checkpoint(run, name)
    if found is None:
        what = f"checkpoint {name}" if name is not None else "checkpoint"
        raise FileNotFoundError(f"{run}: no {what} found (train first, or name an existing step)")
    meta_path = found / "meta.json"
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    return load_file(str(found / "model.safetensors")), meta, found


def load_training_state(found: Path) -> dict:
    return torch.load(found / "train.pt", weights_only=True)


def write_metrics(run: Path, metrics: dict) -> None:
    (Path(run) / "metrics.json").write_text(json.dumps(metrics, indent=1))
