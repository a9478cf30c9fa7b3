"""Effect-estimation quality on held-out material (the project's chain, pedalboard's effects, style transfer).

Cases (the same examples for every model; random chains as drawn, every effect switched on is in
the audio; the labels for chain selection say which of them are audible, see
:mod:`pimodule.laptop.fx.batch`):
1. ``chain``: the project's chain with random parameters;
2. ``pedalboard``: pedalboard's filters, compressor, distortion/clipping and reverb (never seen in
   training), parameters mapped from a random chain as closely as their controls allow;
3. ``style``: DeepAFx-ST protocol: reference = chain(a), input = b (another part of the same
   recording), target = chain(b); the estimate from the reference (and b, for conditioned models)
   is re-rendered on b.
Distances of the re-rendered estimate to the target (multi-resolution STFT, mel dB), each also for
the unprocessed input ("corrupt" baseline) and as the ratio estimate / corrupt (< 1 is better,
0.35 means 65% of the distance closed); chain-selection accuracy (the on/off decisions of eq,
compressor, distortion and reverb all right; an effect counts as on when it is audible, see
:mod:`pimodule.laptop.fx.batch`), over all examples and over the "clear" ones, where no drawn effect sits
between inaudible and audible (about a quarter of random chains have one; their label is a coin
flip on the 1.5 dB midpoint, so all-example accuracy cannot reach 100 % even for a perfect model);
chain selection also against the other label definition, what removing each effect changes in
the output (``selection_accuracy_removal``, cases 1 and 2, each labelled on the audio of the
chain that made it: the project's effects, or pedalboard's; see :mod:`pimodule.laptop.fx.batch`);
parameter error in [0, 1] units on case 1. A dry-conditioned model's estimates are scored with
their level in closed form (:func:`with_level`), as the product plays them. Writes results.json and
results.md into ``--out``.

Models are training run folders (torch) or exported ``.onnx`` files (onnxruntime, what the module
runs): ``pimodule eval fx export/fx.onnx export/fx-dry.onnx`` scores the shipped estimators.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import time
from pathlib import Path

import numpy as np
import torch

from pimodule.core.fx_specs import DISTORTION_MODES, EFFECT_NAMES, SELECTABLE, SPECS
from pimodule.device.fx.check import CheckConfig, SubsetCheck
from pimodule.device.fx.estimator import OnnxEstimator
from pimodule.laptop.fx import realeval
from pimodule.laptop.fx.batch import from_dry, removal_labels, selection_correct
from pimodule.laptop.fx.chain import PARAM_SLICES, Chain, apply_chain, describe, physical, sample_chain
from pimodule.laptop.fx.losses import mel_distance, mrstft, param_mask
from pimodule.laptop.fx.model import WINDOW_S, analysis_samples
from pimodule.laptop.fx.realeval import with_level
from pimodule.laptop.fx.refine import RefineConfig, refine
from pimodule.laptop.fx.run import load_run
from pimodule.laptop.fx.sources import DryCorpus

log = logging.getLogger(__name__)
CASES = ("chain", "pedalboard", "style")


EXAMPLES = (
    "pimodule eval fx export/fx.onnx export/fx-dry.onnx --n-examples 256 --out out/fx_eval",
    "pimodule eval fx runs/fx_dry --cases chain --check",
)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("models", nargs="+", type=Path, help="fx training run folders or exported .onnx estimators")
    parser.add_argument("--out", type=Path, required=True, help="folder for results.json/.md")
    parser.add_argument("--n-examples", type=int, default=64, dest="n_examples", help="examples per case")
    parser.add_argument("--seed", type=int, default=0, help="random seed of the examples (same seed, same examples)")
    parser.add_argument("--cases", nargs="+", choices=CASES, default=list(CASES), help="which cases to score")
    parser.add_argument(
        "--max-files", type=int, default=0, dest="max_files", help="limit held-out files per kind (0: all)"
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="also score each dry-conditioned model's estimates checked as the module "
        "checks them (pimodule.device.fx.check; cases chain and pedalboard)",
    )
    parser.add_argument(
        "--improve-examples",
        type=int,
        default=0,
        dest="improve_examples",
        help="score --check and --refine on the first N examples of each case only (0: all; refining takes "
        "about 10 s per example)",
    )
    parser.add_argument(
        "--real",
        action="store_true",
        help="also score the models on the real-recording benchmark (pimodule.laptop.fx.realbench: recordings "
        "never trained on, through pedalboard, SoX and dasp-pytorch chains) into real.json",
    )
    parser.add_argument("--real-draws", type=int, default=3, dest="real_draws", help="chains per recording and family")
    parser.add_argument(
        "--only-real",
        action="store_true",
        dest="only_real",
        help="score the real-recording benchmark only (real.json; the held-out cases are skipped; --cases style: "
        "its style-transfer examples only, chain or pedalboard: its wet files' examples only)",
    )
    parser.add_argument(
        "--refine",
        action="store_true",
        help="also score each dry-conditioned model's estimates refined by analysis by "
        "synthesis (pimodule.laptop.fx.refine; cases chain and pedalboard)",
    )


def pedalboard_render(x: np.ndarray, sample_rate: int, chain: Chain) -> np.ndarray:
    """Process ``(batch, samples)`` with pedalboard effects mapped from a (hard) chain."""
    import pedalboard as pb

    out = np.zeros_like(x)
    for i in range(x.shape[0]):
        fx = []
        on = {n: bool(chain.active[i, k] >= 0.5) for k, n in enumerate(EFFECT_NAMES)}
        p = {n: {k: float(v[0]) for k, v in physical(n, chain.unit[i : i + 1]).items()} for n in EFFECT_NAMES}
        if on["eq"]:
            e = p["eq"]
            fx += [pb.LowShelfFilter(e["low_shelf_freq_hz"], e["low_shelf_gain_db"], 0.7071)]
            fx += [pb.PeakFilter(e[f"peak{j}_freq_hz"], e[f"peak{j}_gain_db"], e[f"peak{j}_q"]) for j in (1, 2, 3)]
            fx += [pb.HighShelfFilter(e["high_shelf_freq_hz"], e["high_shelf_gain_db"], 0.7071)]
        if on["compressor"]:
            c = p["compressor"]
            fx += [
                pb.Compressor(c["threshold_db"], c["ratio"], c["attack_ms"], c["release_ms"]),
                pb.Gain(c["makeup_db"]),
            ]
        if on["distortion"]:
            d = p["distortion"]
            mode = DISTORTION_MODES[int(chain.mode_weights[i].argmax())]
            if mode == "hard":
                fx += [pb.Gain(d["drive_db"]), pb.Clipping(0.0)]
            else:
                fx += [pb.Distortion(d["drive_db"])]
            fx += [pb.Gain(d["output_gain_db"])]
        if on["reverb"]:
            r = p["reverb"]
            mix = r["mix_pct"] / 100
            fx += [
                pb.Reverb(
                    room_size=float(SPECS["reverb"]["decay_s"].to_unit(r["decay_s"])),
                    damping=r["damping_pct"] / 100,
                    wet_level=mix,
                    dry_level=1 - mix,
                )
            ]
        if on["gain"]:
            fx += [pb.Gain(p["gain"]["gain_db"])]
        out[i] = pb.Pedalboard(fx)(x[i : i + 1].astype(np.float32), sample_rate, reset=True)[0]
    return out


def _pedalboard_torch(x: torch.Tensor, sample_rate: int, chain: Chain) -> torch.Tensor:
    return torch.from_numpy(pedalboard_render(x.numpy(), sample_rate, chain))


def make_cases(corpus: DryCorpus, n: int, n_samples: int, seed: int, cases) -> dict:
    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed)
    sr = corpus.sample_rate
    data = {}
    for case in cases:
        dry = corpus.excerpts(rng, n, n_samples, 2)
        chain = sample_chain(n, gen)
        # the audio of every effect drawn on (heard or not), labels by audibility, no redraws
        if case == "style":
            data[case] = from_dry(dry, chain, sr, "reference", render_labelled=False)
            continue
        b = from_dry(dry[:, :1], chain, sr, "dry", render_labelled=False)
        if case == "pedalboard":
            b.wet = b.target = torch.from_numpy(pedalboard_render(dry[:, 0], sr, b.rendered))
        with torch.no_grad():  # the other label definition, on the audio of the chain that made it
            b.removal = removal_labels(
                b.source, sr, b.rendered, b.target, _pedalboard_torch if case == "pedalboard" else None
            )
        data[case] = b
    return data


class _Exported:
    """An exported estimator behind the call the evaluation makes of a torch one."""

    def __init__(self, path: Path):

        self.onnx = OnnxEstimator(path)
        self.conditioning = self.onnx.conditioning

    def __call__(self, wet: torch.Tensor, other: torch.Tensor | None):
        active, mode, unit = self.onnx.run(wet.numpy(), None if other is None else other.numpy())
        return Chain(torch.from_numpy(active), torch.from_numpy(unit), torch.from_numpy(mode)), None


def _conditioning(model) -> str:
    return model.conditioning if isinstance(model, _Exported) else model.config.conditioning


def predict(model, batch, chunk: int = 16) -> Chain:
    """The estimate of a torch estimator or an exported one for every example of ``batch``."""
    outs = []
    cond = _conditioning(model)
    with torch.no_grad():
        for s in range(0, batch.wet.shape[0], chunk):
            other = None if cond == "blind" else batch.other[s : s + chunk]
            outs.append(model(batch.wet[s : s + chunk], other)[0])
    return Chain(*(torch.cat([getattr(o, k) for o in outs]) for k in ("active", "unit", "mode_weights")))


def _load(path: Path) -> tuple[object, int, int, dict]:
    """(model, sample rate, analysis window, training facts) of a run folder or an .onnx file."""
    if path.suffix == ".onnx":
        model = _Exported(path)
        facts = {"file": str(path), "conditioning": model.conditioning, "provenance": model.onnx.info.provenance}
        return model, model.onnx.sample_rate, model.onnx.window, facts
    model, config, meta = load_run(path)
    facts = {
        "objective": config.objective,
        "conditioning": config.model.conditioning,
        "steps": meta.get("step"),
        "seconds_per_step": meta.get("seconds_per_step"),
        "train_seconds": meta.get("train_seconds"),
    }
    # the window the model is used with (estimate, export), 1 s as in training by default
    return model, config.model.sample_rate, analysis_samples(config.model, WINDOW_S), facts


def selection_scores(active: torch.Tensor, batch) -> dict:
    """Chain selection of predicted ``active`` against ``batch``'s labels: all four on/off decisions
    right, over all examples and over the clear ones, and per effect."""
    correct = selection_correct(active, batch.chain.active)
    r = {
        "selection_accuracy": float(correct.all(-1).float().mean()),
        "per_effect_accuracy": {n: float(correct[:, i].float().mean()) for i, n in enumerate(SELECTABLE)},
    }
    # the examples whose ground truth is decidable: every effect clearly on (>= 2 dB) or off
    # (< 1 dB or not drawn); the others sit on the labelling threshold, a coin flip either way
    clear = batch.clear.all(-1)
    r["n_clear"] = int(clear.sum())
    r["selection_accuracy_clear"] = float(correct[clear].all(-1).float().mean()) if clear.any() else float("nan")
    r["per_effect_accuracy_clear"] = {
        n: float(correct[batch.clear[:, i], i].float().mean()) for i, n in enumerate(SELECTABLE)
    }
    if batch.removal is not None:  # labelled by removal (pimodule.laptop.fx.batch)
        correct = selection_correct(active, batch.removal)
        r["selection_accuracy_removal"] = float(correct.all(-1).float().mean())
        r["per_effect_accuracy_removal"] = {n: float(correct[:, i].float().mean()) for i, n in enumerate(SELECTABLE)}
    return r


def checked(
    x: torch.Tensor, y: torch.Tensor, sample_rate: int, estimate: Chain, config: CheckConfig = CheckConfig()
) -> Chain:
    """The module's check (:mod:`pimodule.device.fx.check`, numpy twins) of each example's
    ``estimate`` for dry ``x`` and wet ``y`` ``(batch, samples)``, as a hard chain."""
    check = SubsetCheck(sample_rate, config)
    hard = estimate.hard()
    active, unit = hard.active.clone(), estimate.unit.clone()
    for i in range(x.shape[0]):
        out = check(x[i].numpy(), y[i].numpy(), describe(estimate, i))
        for name in SELECTABLE:
            active[i, EFFECT_NAMES.index(name)] = float(out[name]["active"])
        for name in EFFECT_NAMES:
            for j, spec in enumerate(SPECS[name]):
                unit[i, PARAM_SLICES[name].start + j] = float(spec.to_unit(out[name]["params"][spec.name]))
    return Chain(active, unit, hard.mode_weights)


#: what a dry-conditioned model's estimates can be improved by, with the dry signal at hand:
#: option and row suffix -> (config, (dry, wet, sample rate, estimate, config) -> hard chain)
IMPROVEMENTS = {
    "check": (CheckConfig(), checked),  # as the module does (numpy twins)
    "refine": (RefineConfig(), lambda x, y, sr, est, config: refine(x, y, sr, est, config)[0]),  # laptop, torch
}


def _first(batch, n: int):
    """The first ``n`` examples of a case (all when ``n`` is 0)."""
    if not n or n >= batch.wet.shape[0]:
        return batch
    rows = slice(0, n)

    def cut(v):
        if isinstance(v, torch.Tensor):
            return v[rows]
        if isinstance(v, Chain):
            return v.rows(rows)
        return v

    return dataclasses.replace(batch, **{f.name: cut(getattr(batch, f.name)) for f in dataclasses.fields(batch)})


def evaluate_model(model, data: dict, sample_rate: int, improve: str | None = None, n_improve: int = 0) -> dict:
    """Every case's scores; with ``improve`` (a key of :data:`IMPROVEMENTS`), of the estimates
    checked or refined against the wet audio with the dry one (a dry-conditioned model's cases
    chain and pedalboard)."""
    results = {}
    for case, batch in data.items():
        if improve is None:
            pred = predict(model, batch).hard()
            if _conditioning(model) == "dry" and case != "style":  # its level as the product sets it
                pred = with_level(pred, batch.source, batch.wet, sample_rate)
        elif case == "style":  # the reference's own dry signal is not at hand
            continue
        else:
            batch = _first(batch, n_improve)
            config, fn = IMPROVEMENTS[improve]
            pred = fn(batch.source, batch.wet, sample_rate, predict(model, batch), config)
        est = torch.cat(
            [
                apply_chain(
                    batch.source[s : s + 16, None],
                    sample_rate,
                    Chain(pred.active[s : s + 16], pred.unit[s : s + 16], pred.mode_weights[s : s + 16]),
                )[:, 0]
                for s in range(0, batch.source.shape[0], 16)
            ]
        )
        ok = torch.isfinite(est).all(-1)
        est = torch.where(ok[:, None], est, torch.zeros_like(est))
        if _conditioning(model) == "reference":  # its level as the product sets it: the reference's (RMS)
            est = realeval.at_level_of(est, batch.wet)
        r = {"n": int(est.shape[0])}
        for name, fn in (("mrstft", mrstft), ("mel_db", lambda a, b: mel_distance(a, b, sample_rate))):
            d_est, d_in = fn(est, batch.target), fn(batch.source, batch.target)
            r[name] = float(d_est.mean())
            r[f"{name}_corrupt"] = float(d_in.mean())
            r[f"{name}_ratio"] = float(d_est.mean() / d_in.mean())
        r.update(selection_scores(pred.active, batch))
        if case == "chain":
            mask = param_mask(batch.chain.active)
            err = (pred.unit - batch.chain.unit).abs() * mask
            r["param_mae_unit"] = float(err.sum() / mask.sum())
        results[case] = r
    return results


def markdown(results: dict) -> str:
    lines = [
        "| model | case | MRSTFT est / corrupt (ratio) | mel dB est / corrupt (ratio) | chain selection "
        "(all / clear examples) | selection, removal labels | param MAE [0,1] |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for model, cases in results["models"].items():
        for case, r in cases.items():
            pm = f"{r['param_mae_unit']:.3f}" if "param_mae_unit" in r else "–"
            rm = f"{100 * r['selection_accuracy_removal']:.0f}%" if "selection_accuracy_removal" in r else "–"
            lines.append(
                f"| {model} | {case} | {r['mrstft']:.3f} / {r['mrstft_corrupt']:.3f} "
                f"({r['mrstft_ratio']:.2f}) | {r['mel_db']:.2f} / {r['mel_db_corrupt']:.2f} "
                f"({r['mel_db_ratio']:.2f}) | {100 * r['selection_accuracy']:.0f}% / "
                f"{100 * r['selection_accuracy_clear']:.0f}% of {r['n_clear']} | {rm} | {pm} |"
            )
    return "\n".join(lines) + "\n"


def main(args: argparse.Namespace) -> int:
    torch.set_num_threads(1)
    if getattr(args, "only_real", False):
        parts = realeval.parts_for(args.cases)
        path = realeval.write_real(args.out, args.models, args.seed, args.real_draws, parts)
        print(f"real-recording benchmark: {path}")
        return 0
    loaded = {path.name: _load(path) for path in args.models}
    sr, n_samples = next(iter(loaded.values()))[1:3]
    if any((rate, window) != (sr, n_samples) for _, rate, window, _ in loaded.values()):
        print("pimodule eval fx: all models must share one sample rate and analysis window")
        return 2
    corpus = DryCorpus.load(sr, "heldout", max_files=args.max_files or None)
    data = make_cases(corpus, args.n_examples, n_samples, args.seed, args.cases)
    results = {"sample_rate": sr, "n_examples": args.n_examples, "seed": args.seed, "models": {}, "training": {}}
    for name, (model, _, _, facts) in loaded.items():
        log.info("evaluating %s", name)
        results["models"][name] = evaluate_model(model, data, sr)
        results["training"][name] = facts
        for improve, (config, _) in IMPROVEMENTS.items():
            if not getattr(args, improve) or facts["conditioning"] != "dry":
                continue
            log.info("evaluating %s, %s", name, improve)
            t0, row = time.perf_counter(), f"{name} +{improve}"
            results["models"][row] = evaluate_model(model, data, sr, improve, args.improve_examples)
            n = sum(_first(b, args.improve_examples).wet.shape[0] for c, b in data.items() if c != "style")
            results["training"][row] = {
                **facts,
                improve: dataclasses.asdict(config),
                f"{improve}_seconds_per_example": (time.perf_counter() - t0) / max(n, 1),
            }
    args.out.mkdir(parents=True, exist_ok=True)
    if args.real:
        realeval.write_real(args.out, args.models, args.seed, args.real_draws)
    (args.out / "results.json").write_text(json.dumps(results, indent=1))
    table = markdown(results)
    (args.out / "results.md").write_text(table)
    print(table)
    return 0
