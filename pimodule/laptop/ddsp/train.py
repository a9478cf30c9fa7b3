"""Train a DDSP voice (``pimodule train ddsp``); runs unchanged under torchrun (DDP, gloo on CPU).

The run folder gets ``config.toml``, ``log.jsonl``, ``checkpoints/``, ``plots/`` and, at the end,
``metrics.json`` with held-out quality numbers.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from tqdm import tqdm

from pimodule.laptop.data import dataset
from pimodule.laptop.ddsp import checkpoint as ckpt
from pimodule.laptop.ddsp.loss import FFT_SIZES, multiscale_spectral_loss
from pimodule.laptop.ddsp.model import DDSPConfig, DDSPVoice

log = logging.getLogger(__name__)


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
    plot_every: int = 500
    max_minutes: float = 0.0  # 0: no time limit
    fft_sizes: tuple[int, ...] = FFT_SIZES
    threads: int = 0  # 0: torch's default


@dataclass(frozen=True)
class RunConfig:
    model: DDSPConfig = field(default_factory=DDSPConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    @classmethod
    def from_toml(cls, path: Path | None) -> "RunConfig":
        data = ckpt.read_toml(path) if path else {}
        unknown = set(data) - {"model", "train"}
        if unknown:
            raise ValueError(f"{path}: unknown sections {sorted(unknown)}")
        return cls(ckpt.config_from_dict(DDSPConfig, data.get("model", {})),
                   ckpt.config_from_dict(TrainConfig, data.get("train", {})))

    def to_toml(self) -> str:
        return ckpt.to_toml({"model": asdict(self.model), "train": asdict(self.train)})


def dataset_info(data_dir: Path) -> dict:
    """dataset.json without its per-file lists (they would bloat checkpoints and model files)."""
    path = Path(data_dir) / dataset.INFO_FILE
    return summarize_info(dataset.load_info(data_dir)) if path.is_file() else {}


def summarize_info(info: dict) -> dict:
    out = {k: v for k, v in info.items() if k not in ("splits", "skipped")}
    out["splits"] = {name: {k: v for k, v in split.items() if k != "files"}
                     for name, split in info.get("splits", {}).items()}
    return out


class CropSampler:
    """Random crops of ``crop_frames`` frames (and their audio) from the examples, seeded."""

    def __init__(self, data: dict[str, np.ndarray], hop_size: int, crop_frames: int, seed: int):
        self.audio, self.f0, self.loudness = data["audio"], data["f0_hz"], data["loudness_db"]
        n_frames = self.f0.shape[1]
        if n_frames < crop_frames:
            raise ValueError(f"examples have {n_frames} frames, fewer than crop_frames={crop_frames}")
        self.hop, self.crop = hop_size, crop_frames
        self.rng = np.random.default_rng(seed)

    def batch(self, batch_size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        idx = self.rng.integers(0, len(self.f0), batch_size)
        start = self.rng.integers(0, self.f0.shape[1] - self.crop + 1, batch_size)
        f0 = np.stack([self.f0[i, s : s + self.crop] for i, s in zip(idx, start)])
        ld = np.stack([self.loudness[i, s : s + self.crop] for i, s in zip(idx, start)])
        audio = np.stack([self.audio[i, s * self.hop : (s + self.crop) * self.hop] for i, s in zip(idx, start)])
        return torch.from_numpy(f0).float(), torch.from_numpy(ld).float(), torch.from_numpy(audio).float()


def data_stats(data: dict[str, np.ndarray], sample_rate: int) -> dict:
    """Register and level of the training data (for auto-adjusting inputs at render time)."""
    audible = data["loudness_db"] > -60.0
    voiced = audible & (data.get("periodicity", np.ones_like(data["f0_hz"])) > 0.7)
    midi = 69 + 12 * np.log2(np.maximum(data["f0_hz"][voiced], 1.0) / 440.0)
    return {
        "f0_midi_mean": round(float(midi.mean()), 2) if midi.size else None,
        "loudness_db_mean": round(float(data["loudness_db"][audible].mean()), 2) if audible.any() else None,
        "minutes": round(data["audio"].size / sample_rate / 60, 2),
    }


def _dist_setup() -> tuple[int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("gloo")
    return (dist.get_rank() if world > 1 else 0), world


def train(data_dir: Path, run_dir: Path, config: RunConfig, *, resume: bool = False, progress: bool = True) -> dict:
    """Train; returns the final metadata (step, losses, held-out metrics on rank 0)."""
    rank, world = _dist_setup()
    tc = config.train
    if tc.threads:
        torch.set_num_threads(tc.threads)
    run_dir = Path(run_dir)
    data = dataset.load_dataset(data_dir, "train")
    info = dataset_info(data_dir)
    info = {**info, "stats": data_stats(data, config.model.sample_rate)}
    if info.get("sample_rate", config.model.sample_rate) != config.model.sample_rate:
        raise ValueError(f"dataset sample rate {info['sample_rate']} != model's {config.model.sample_rate}")
    torch.manual_seed(tc.seed)  # same initial weights on every rank
    model = DDSPVoice(config.model)
    optimizer = torch.optim.Adam(model.parameters(), lr=tc.learning_rate)
    gamma = tc.lr_decay_per_1000 ** (1 / 1000)
    scheduler = torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma)
    step, elapsed_before = 0, 0.0
    if rank == 0:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "config.toml").write_text(config.to_toml())
    if resume and (weights := ckpt.latest_checkpoint(run_dir)) is not None:
        from safetensors.torch import load_file

        model.load_state_dict(load_file(str(weights)))
        state = ckpt.load_training_state(weights)
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        step = int(state["step"])
        meta_path = Path(str(weights).replace("model-", "meta-").replace(".safetensors", ".json"))
        elapsed_before = json.loads(meta_path.read_text()).get("train_seconds", 0.0) if meta_path.is_file() else 0.0
        log.info("resumed %s at step %d", run_dir, step)
    net = torch.nn.parallel.DistributedDataParallel(model) if world > 1 else model
    sampler = CropSampler(data, config.model.hop_size, tc.crop_frames, tc.seed + 1000 * rank + step)
    gen = torch.Generator().manual_seed(tc.seed + 7919 * rank + step)
    loss_fn = multiscale_spectral_loss(tc.fft_sizes)
    losses: list[float] = []
    t0 = time.monotonic()
    bar = tqdm(total=tc.steps, initial=step, disable=not progress or rank != 0, desc="train ddsp", unit="step")
    meta: dict = {}
    log_file = open(run_dir / "log.jsonl", "a") if rank == 0 else None
    try:
        while step < tc.steps:
            f0, ld, target = sampler.batch(tc.batch_size)
            state = model.initial_state(tc.batch_size, generator=gen)
            audio = net(f0, ld, model.controls_tensor(tc.batch_size), *state)[0]
            loss = loss_fn(audio.unsqueeze(1), target.unsqueeze(1))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), tc.grad_clip)
            optimizer.step()
            scheduler.step()
            step += 1
            value = float(loss.detach())
            if not math.isfinite(value):
                raise FloatingPointError(f"loss became {value} at step {step}")
            losses.append(value)
            bar.update(1)
            bar.set_postfix(loss=f"{value:.3f}")
            seconds = elapsed_before + time.monotonic() - t0
            if log_file:
                log_file.write(json.dumps({"step": step, "loss": value, "seconds": round(seconds, 2)}) + "\n")
            out_of_time = tc.max_minutes > 0 and seconds > tc.max_minutes * 60
            done = step >= tc.steps or out_of_time
            meta = {"step": step, "train_seconds": seconds, "data": {"dir": str(data_dir), **info},
                    "loss": float(np.mean(losses[-50:])), "world_size": world}
            if rank == 0 and (step % tc.checkpoint_every == 0 or done):
                ckpt.save_checkpoint(run_dir, step, model, optimizer, scheduler, meta)
            if rank == 0 and (step % tc.plot_every == 0 or done):
                log_file.flush()
                from pimodule.laptop.ddsp.plots import write_plots

                write_plots(run_dir, model, sampler)
            if out_of_time:
                log.info("time limit of %.1f min reached at step %d", tc.max_minutes, step)
                break
    finally:
        bar.close()
        if log_file:
            log_file.close()
        if world > 1:
            dist.barrier()
            dist.destroy_process_group()
    return meta


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", type=Path, required=True, help="dataset folder (train.npz, held_out.npz)")
    parser.add_argument("--out", type=Path, required=True, help="run folder")
    parser.add_argument("--config", type=Path, help="TOML with [model] and [train] sections")
    parser.add_argument("--steps", type=int, help="override train.steps")
    parser.add_argument("--max-minutes", type=float, help="override train.max_minutes")
    parser.add_argument("--seed", type=int, help="override train.seed")
    parser.add_argument("--resume", action="store_true", help="continue from the run's latest checkpoint")
    parser.add_argument("--no-eval", action="store_true", help="skip the held-out evaluation at the end")


def main(args: argparse.Namespace) -> int:
    config = RunConfig.from_toml(args.config)
    if args.resume and args.config is None and (args.out / "config.toml").is_file():
        config = RunConfig.from_toml(args.out / "config.toml")
    overrides = {k: v for k, v in (("steps", args.steps), ("max_minutes", args.max_minutes), ("seed", args.seed))
                 if v is not None}
    if overrides:
        config = RunConfig(config.model, TrainConfig(**{**asdict(config.train), **overrides}))
    meta = train(args.data, args.out, config, resume=args.resume)
    if int(os.environ.get("RANK", "0")) != 0:
        return 0
    print(f"trained {meta['step']} steps in {meta['train_seconds'] / 60:.1f} min, loss {meta['loss']:.3f}")
    if not args.no_eval and (Path(args.data) / "held_out.npz").is_file():
        from pimodule.laptop.ddsp.evaluate import evaluate_run

        metrics = evaluate_run(args.out, args.data)
        print(json.dumps(metrics, indent=1))
    print(f"run folder: {args.out}")
    return 0
