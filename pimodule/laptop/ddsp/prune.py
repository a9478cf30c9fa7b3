"""``pimodule prune``: a narrower DDSP voice cut from a trained one, then fine-tuned.

Structured pruning of the decoder's width: every layer of ``hidden_size`` units (both input MLPs'
two layers, the GRU, the output MLP's two layers) keeps its ``hidden`` most important units, and
the weights that read or write the others are cut out, so the result is an ordinary, smaller
:class:`DDSPVoice` (fewer and smaller matmuls per frame, the same graph). A unit's importance is
its mean absolute activation on a calibration batch of training crops times the norm of the
weights that read it. LayerNorm then normalises over fewer units, so the cut voice is
fine-tuned with the training loop (a run folder that ``pimodule export`` takes as any other).

The source is a run folder or an exported ``.onnx`` voice (weights recovered exactly,
pimodule.laptop.ddsp.recover), so a shipped voice can be pruned without its run.
"""

from __future__ import annotations

import argparse
import json
import logging
from dataclasses import asdict, replace
from pathlib import Path

import torch

from pimodule.laptop import runs
from pimodule.laptop.data import dataset
from pimodule.laptop.ddsp import export
from pimodule.laptop.ddsp.evaluate import evaluate_run
from pimodule.laptop.ddsp.model import DDSPVoice
from pimodule.laptop.ddsp.recipe import FAMILY, RunConfig, TrainConfig, load_run
from pimodule.laptop.ddsp.recover import voice_from_onnx
from pimodule.laptop.ddsp.train import CropSampler, dataset_info, train

log = logging.getLogger(__name__)
MLPS = ("f0_mlp", "loudness_mlp")


def _activations(voice: DDSPVoice, f0_hz: torch.Tensor, loudness_db: torch.Tensor) -> dict[str, torch.Tensor]:
    """Mean |activation| per unit of each width-H layer on a batch ``(B, frames)``."""
    acts: dict[str, torch.Tensor] = {}
    taps = {f"{m}.1": getattr(voice, m)[2] for m in MLPS} | {f"{m}.2": getattr(voice, m)[5] for m in MLPS}
    taps |= {"out.1": voice.out_mlp[2], "out.2": voice.out_mlp[5], "gru": voice.gru}

    def hook(name):
        def store(_module, _inputs, output):
            out = output[0] if isinstance(output, tuple) else output
            acts[name] = out.detach().abs().reshape(-1, out.shape[-1]).mean(0)

        return store

    handles = [module.register_forward_hook(hook(name)) for name, module in taps.items()]
    try:
        with torch.no_grad():
            b = f0_hz.shape[0]
            voice(f0_hz, loudness_db, voice.controls_tensor(b), *voice.initial_state(b))
    finally:
        for handle in handles:
            handle.remove()
    return acts


def unit_importance(voice: DDSPVoice, f0_hz: torch.Tensor, loudness_db: torch.Tensor) -> dict[str, torch.Tensor]:
    """``{layer: (hidden_size,)}`` importance of every unit (activation × outgoing weight norm)."""
    h = voice.config.hidden_size
    acts = _activations(voice, f0_hz, loudness_db)
    w_ih, w_hh, w_out = voice.gru.weight_ih_l0, voice.gru.weight_hh_l0, voice.out_mlp[0].weight
    readers = {"out.1": voice.out_mlp[3].weight, "out.2": voice.proj.weight, "gru": torch.cat([w_hh, w_out[:, :h]], 0)}
    for i, m in enumerate(MLPS):
        readers[f"{m}.1"] = getattr(voice, m)[3].weight
        readers[f"{m}.2"] = torch.cat([w_ih[:, i * h : (i + 1) * h], w_out[:, (i + 1) * h : (i + 2) * h]], 0)
    with torch.no_grad():
        return {name: acts[name] * readers[name].norm(dim=0) for name in readers}


def prune_voice(
    voice: DDSPVoice, hidden: int, f0_hz: torch.Tensor, loudness_db: torch.Tensor
) -> tuple[DDSPVoice, dict]:
    """The voice cut to ``hidden`` units per layer (kept units in their original order) and the
    kept unit indices per layer."""
    h = voice.config.hidden_size
    if not 1 <= hidden <= h:
        raise ValueError(f"hidden must be in 1..{h} (the voice's width), got {hidden}")
    scores = unit_importance(voice, f0_hz, loudness_db)
    keep = {name: torch.sort(torch.topk(s, hidden).indices).values for name, s in scores.items()}
    src = voice.state_dict()
    out = DDSPVoice(replace(voice.config, hidden_size=hidden))
    dst = out.state_dict()

    def rows(t, idx):
        return t.index_select(0, idx)

    def cols(t, idx):
        return t.index_select(1, idx)

    for m in MLPS:
        k1, k2 = keep[f"{m}.1"], keep[f"{m}.2"]
        dst[f"{m}.0.weight"], dst[f"{m}.0.bias"] = rows(src[f"{m}.0.weight"], k1), src[f"{m}.0.bias"][k1]
        dst[f"{m}.3.weight"], dst[f"{m}.3.bias"] = cols(rows(src[f"{m}.3.weight"], k2), k1), src[f"{m}.3.bias"][k2]
        for ln, k in ((1, k1), (4, k2)):
            dst[f"{m}.{ln}.weight"], dst[f"{m}.{ln}.bias"] = src[f"{m}.{ln}.weight"][k], src[f"{m}.{ln}.bias"][k]
    kg, ka, kb = keep["gru"], keep["f0_mlp.2"], keep["loudness_mlp.2"]
    gates = torch.cat([kg, kg + h, kg + 2 * h])
    dst["gru.weight_ih_l0"] = cols(rows(src["gru.weight_ih_l0"], gates), torch.cat([ka, kb + h]))
    dst["gru.weight_hh_l0"] = cols(rows(src["gru.weight_hh_l0"], gates), kg)
    dst["gru.bias_ih_l0"], dst["gru.bias_hh_l0"] = src["gru.bias_ih_l0"][gates], src["gru.bias_hh_l0"][gates]
    k1, k2 = keep["out.1"], keep["out.2"]
    dst["out_mlp.0.weight"] = cols(rows(src["out_mlp.0.weight"], k1), torch.cat([kg, ka + h, kb + 2 * h]))
    dst["out_mlp.0.bias"] = src["out_mlp.0.bias"][k1]
    dst["out_mlp.3.weight"], dst["out_mlp.3.bias"] = (
        cols(rows(src["out_mlp.3.weight"], k2), k1),
        src["out_mlp.3.bias"][k2],
    )
    for ln, k in ((1, k1), (4, k2)):
        dst[f"out_mlp.{ln}.weight"], dst[f"out_mlp.{ln}.bias"] = (
            src[f"out_mlp.{ln}.weight"][k],
            src[f"out_mlp.{ln}.bias"][k],
        )
    dst["proj.weight"], dst["proj.bias"] = cols(src["proj.weight"], k2), src["proj.bias"]
    if "reverb_ir" in src:
        dst["reverb_ir"] = src["reverb_ir"]
    out.load_state_dict({k: v.clone().contiguous() for k, v in dst.items()})
    return out.eval(), {k: v.tolist() for k, v in keep.items()}


def load_source(path: Path) -> tuple[DDSPVoice, dict]:
    """A voice to prune: a run folder (its latest checkpoint) or an exported .onnx voice."""
    if path.suffix == ".onnx":
        return voice_from_onnx(path), {"from": str(path)}

    voice, meta = load_run(path)
    return voice.eval(), {"from": str(path), "step": meta.get("step")}


EXAMPLES = (
    "pimodule prune export/violin.onnx --hidden 64 --data data/violin --out runs/violin_p64 --max-minutes 10",
    "pimodule prune runs/violin --hidden 96 --data data/violin --out runs/violin_p96 --export out/violin-p96.onnx",
)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", type=Path, help="a DDSP run folder or an exported .onnx voice")
    parser.add_argument("--hidden", type=int, required=True, help="units to keep per decoder layer")
    parser.add_argument("--data", type=Path, required=True, help="the voice's dataset (calibration + fine-tuning)")
    parser.add_argument("--out", type=Path, required=True, help="run folder for the pruned voice")
    parser.add_argument("--steps", type=int, default=1000, help="fine-tuning steps (0: none)")
    parser.add_argument("--max-minutes", type=float, default=0.0, help="stop fine-tuning after this long")
    parser.add_argument(
        "--config", type=Path, help="TOML [train] section for fine-tuning (default: configs/ddsp.toml's)"
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed of the calibration batch and fine-tuning")
    parser.add_argument("--export", type=Path, help="also export the pruned voice to this .onnx file")


def main(args: argparse.Namespace) -> int:

    voice, origin = load_source(args.source)
    base = RunConfig.from_toml(args.config or Path(__file__).resolve().parents[3] / "configs" / "ddsp.toml")
    tc = TrainConfig(
        **{
            **asdict(base.train),
            "steps": args.steps,
            "max_minutes": args.max_minutes,
            "seed": args.seed,
            "learning_rate": base.train.learning_rate / 2,
        }
    )
    data = dataset.load_dataset(args.data, "train")
    sampler = CropSampler(data, voice.config.hop_size, tc.crop_frames, args.seed)
    f0, loudness, _ = sampler.batch(32)
    before = voice.config.hidden_size
    pruned, keep = prune_voice(voice, args.hidden, f0, loudness)
    n_before = sum(p.numel() for p in voice.parameters())
    n_after = sum(p.numel() for p in pruned.parameters())
    log.info("pruned %s: hidden %d -> %d, %d -> %d weights", args.source, before, args.hidden, n_before, n_after)
    config = RunConfig(pruned.config, tc)
    runs.write_config(args.out, FAMILY, config.model, config.train)
    info = dataset_info(args.data)
    origin |= {
        "hidden_before": before,
        "hidden_after": args.hidden,
        "weights_before": n_before,
        "weights_after": n_after,
    }
    (args.out / "pruned.json").write_text(json.dumps({"origin": origin, "kept_units": keep}))
    optimizer = torch.optim.Adam(pruned.parameters(), lr=tc.learning_rate)
    scheduler = torch.optim.lr_scheduler.ExponentialLR(optimizer, tc.lr_decay_per_1000 ** (1 / 1000))
    meta = {"train_seconds": 0.0, "data": {"dir": str(args.data), **info}, "pruned_from": origin}
    state = {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "step": 0}
    runs.save_checkpoint(args.out, 0, pruned, state, meta)
    if args.steps > 0:
        meta = train(args.data, args.out, config, resume=True)
        print(f"fine-tuned {meta['step']} steps in {meta['train_seconds'] / 60:.1f} min, loss {meta['loss']:.3f}")
    if (args.data / "held_out.npz").is_file():
        print(json.dumps(evaluate_run(args.out, args.data), indent=1))
    if args.export is not None:
        export.main(argparse.Namespace(run=args.out, out=args.export, name=None, checkpoint=None))
    print(f"pruned voice: {args.out} (hidden {before} -> {args.hidden}, weights {n_before} -> {n_after})")
    return 0
