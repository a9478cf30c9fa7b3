"""ONNX export of the estimator: onnxruntime parity with torch, metadata contract, CLI use."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pimodule.core.fx_specs import EFFECTS_VERSION
from pimodule.core.modelfile import ModelFileError
from pimodule.device.fx.estimator import OnnxEstimator
from pimodule.laptop.fx.export import export_onnx
from pimodule.laptop.fx.model import WINDOW_S, analysis_samples
from pimodule.laptop.fx.run import load_run


@pytest.mark.parametrize("which", ["tiny_run", "tiny_reference_run", "tiny_paired_run", "tiny_paired_xs_run"])
def test_onnx_matches_torch(which, request, tmp_path):
    run = request.getfixturevalue(which)
    model, config, _ = load_run(run)
    path = export_onnx(model, tmp_path / "fx.onnx", provenance={"test": True})
    est = OnnxEstimator(path)
    assert est.info.kind == "fx" and est.info.state == ()
    import onnx

    dfts = [
        n
        for n in onnx.load(str(path)).graph.node
        if n.op_type == "Constant"
        and len(n.attribute[0].t.dims) == 2
        and n.attribute[0].t.dims[0] == config.model.n_fft
    ]
    assert len(dfts) == 1  # one DFT matrix however many inputs the frontend reads
    assert est.window == analysis_samples(config.model, WINDOW_S)
    assert len(est.info.controls) == 25 and est.info.controls.names[0] == "eq.low_shelf_gain_db"
    assert est.conditioning == config.model.conditioning
    assert est.effects_version == EFFECTS_VERSION and est.warning == ""  # trained for today's effects
    rng = np.random.default_rng(0)
    wet = (rng.standard_normal((3, est.window)) * 0.1).astype(np.float32)
    other = (rng.standard_normal((3, est.window)) * 0.1).astype(np.float32)
    use_other = config.model.conditioning != "blind"
    got = est.run(wet, other if use_other else None)
    with torch.no_grad():
        chain, _, _ = model(torch.from_numpy(wet), torch.from_numpy(other) if use_other else None)
    for a, b in zip(got, (chain.active, chain.mode_weights, chain.unit)):
        assert np.max(np.abs(a - b.numpy())) <= 1e-4
    desc = est.describe(got[0][0], got[1][0], got[2][0])
    assert list(desc) == ["eq", "compressor", "distortion", "reverb", "gain"]
    assert "mode" in desc["distortion"]
    from pimodule.device.fx.twin_chain import ChainTwin  # the estimate drives the real-time chain as is

    chain = ChainTwin(48000, channels=1, distortion_mode=desc["distortion"]["mode"])
    chain.apply(desc, immediate=True)
    block = wet[:1, :128].astype(np.float64).copy()
    assert np.isfinite(chain.process(block)).all()
    from pimodule.device.fx.cost import bench_estimator

    timing = bench_estimator(path, n_runs=2)
    assert timing["window"] == est.window and timing["median_ms"] > 0


def test_non_fx_or_broken_files_are_refused(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(ModelFileError):
        OnnxEstimator(bad)


def test_a_checkpoint_from_before_effects_versions_exports_as_version_1(tiny_run, tmp_path):
    """A run's checkpoint records the effects' version it trained for; one saved before runs
    recorded it was trained for version 1, and its file says so (the module then warns)."""
    import argparse
    import json
    import shutil

    from pimodule.laptop import runs
    from pimodule.laptop.fx.export import main

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    _, _, meta = load_run(run)
    assert meta["effects_version"] == EFFECTS_VERSION
    _, meta, folder = runs.load_checkpoint(run, None)
    meta.pop("effects_version")
    (folder / "meta.json").write_text(json.dumps(meta))
    out = tmp_path / "old.onnx"
    assert main(argparse.Namespace(run=run, checkpoint=None, out=out, name=None)) == 0
    est = OnnxEstimator(out)
    assert est.effects_version == 1
    assert est.conditioning == "blind" and "compressor" in est.warning  # not calibrated: may keep it
