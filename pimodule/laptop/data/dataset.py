"""The on-disk dataset: ``train.npz`` and ``held_out.npz`` plus ``dataset.json``.

Each split holds float32 arrays ``audio`` (N, T), ``f0_hz``, ``periodicity``, ``loudness_db``
(N, F) with ``T = F * hop_size``. ``dataset.json`` records the sample rate, hop, example length,
counts per split, source files and, for rendered data, the GM program.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

SPLITS = ("train", "held_out")
ARRAYS = ("audio", "f0_hz", "periodicity", "loudness_db")
FEATURES = ("f0_hz", "periodicity", "loudness_db")
INFO_FILE = "dataset.json"


def split_path(dataset_dir: Path | str, split: str) -> Path:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, not {split!r}")
    return Path(dataset_dir) / f"{split}.npz"


def empty_split(n_samples: int, hop_size: int) -> dict[str, np.ndarray]:
    n_frames = n_samples // hop_size
    out = {"audio": np.zeros((0, n_samples), np.float32)}
    out.update({k: np.zeros((0, n_frames), np.float32) for k in FEATURES})
    return out


def check_split(arrays: dict[str, np.ndarray], hop_size: int) -> None:
    """Raise ValueError unless the arrays have the dataset's names, dtypes and shapes."""
    missing = [k for k in ARRAYS if k not in arrays]
    if missing:
        raise ValueError(f"dataset split lacks arrays {missing}")
    n, t = arrays["audio"].shape
    if t % hop_size:
        raise ValueError(f"example length {t} is not a multiple of hop_size {hop_size}")
    for k in ARRAYS:
        if arrays[k].dtype != np.float32:
            raise ValueError(f"{k} must be float32, is {arrays[k].dtype}")
    for k in FEATURES:
        if arrays[k].shape != (n, t // hop_size):
            raise ValueError(f"{k} has shape {arrays[k].shape}, expected {(n, t // hop_size)}")


def save_split(dataset_dir: Path | str, split: str, arrays: dict[str, np.ndarray],
               hop_size: int) -> Path:
    check_split(arrays, hop_size)
    path = split_path(dataset_dir, split)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, **{k: arrays[k] for k in ARRAYS})
    tmp.replace(path)
    return path


def load_dataset(dataset_dir: Path | str, split: str = "train") -> dict[str, np.ndarray]:
    """The arrays of one split: ``audio``, ``f0_hz``, ``periodicity``, ``loudness_db``."""
    path = split_path(dataset_dir, split)
    if not path.is_file():
        raise FileNotFoundError(f"no {split} split at {path} (make one with `pimodule data render` "
                                f"or `pimodule data prepare`)")
    with np.load(path) as data:
        arrays = {k: data[k] for k in ARRAYS if k in data}
    hop = load_info(dataset_dir).get("hop_size") if (Path(dataset_dir) / INFO_FILE).is_file() else None
    if hop:
        check_split(arrays, int(hop))
    return arrays


def save_info(dataset_dir: Path | str, info: dict) -> Path:
    path = Path(dataset_dir) / INFO_FILE
    path.write_text(json.dumps(info, indent=1) + "\n")
    return path


def load_info(dataset_dir: Path | str) -> dict:
    """``dataset.json``: sample_rate, hop_size, example_seconds, splits, sources, program…"""
    path = Path(dataset_dir) / INFO_FILE
    if not path.is_file():
        raise FileNotFoundError(f"no {INFO_FILE} in {dataset_dir}")
    return json.loads(path.read_text())
