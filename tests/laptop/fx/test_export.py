"""ONNX export of the estimator: onnxruntime parity with torch, metadata contract, CLI use."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pimodule.laptop.fx.export import export_onnx
from pimodule.laptop.fx.infer import WINDOW_S
from pimodule.laptop.fx.model import analysis_samples
from pimodule.laptop.fx.run import load_run
from pimodule.device.fx.estimator import OnnxEstimator
from pimodule.core.modelfile import ModelFileError


@pytest.mark.parametrize("which", ["tiny_run", "tiny_reference_run", "tiny_paired_run",
                                   "tiny_paired_xs_run"])
def test_onnx_matches_torch(which, request, tmp_path):
    run = request.getfixturevalue(which)
    model, config, _ = load_run(run)
    path = export_onnx(model, tmp_path / "fx.onnx", provenance={"test": True})
    est = OnnxEstimator(path)
    assert est.info.kind == "fx" and est.info.state == ()
    import onnx

    dfts = [n for n in onnx.load(str(path)).graph.node if n.op_type == "Constant"
            and len(n.attribute[0].t.dims) == 2 and n.attribute[0].t.dims[0] == config.model.n_fft]
    assert len(dfts) == 1  # one DFT matrix however many inputs the frontend reads
    assert est.window == analysis_samples(config.model, WINDOW_S)
    assert len(est.info.controls) == 25 and est.info.controls.names[0] == "eq.low_shelf_gain_db"
    assert est.conditioning == config.model.conditioning
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


def test_cli_export_bakes_fitted_thresholds_into_the_file(tiny_paired_run, tmp_path):
    """``pimodule export RUN --calibrate N``: the file says on (p >= 0.5) exactly where the run's
    probability reaches the fitted threshold, and records what was fitted."""
    import argparse

    from pimodule.laptop.ddsp import export as cli_export
    from pimodule.core.fx_specs import EFFECT_NAMES, SELECTABLE

    parser = argparse.ArgumentParser()
    cli_export.configure(parser)
    out = tmp_path / "cal.onnx"
    assert cli_export.main(parser.parse_args([str(tiny_paired_run), "--out", str(out),
                                              "--calibrate", "16", "--calibrate-seed", "3"])) == 0
    est = OnnxEstimator(out)
    found = est.info.provenance["calibration"]
    assert found["n_examples"] == 16 and found["selection_after"] >= found["selection_before"]
    t = np.array([found["thresholds"][n] for n in SELECTABLE])
    model, _, _ = load_run(tiny_paired_run)
    wet, other = (np.random.default_rng(2).standard_normal((2, 6, est.window)) * 0.1).astype(np.float32)
    with torch.no_grad():
        p = model(torch.from_numpy(wet), torch.from_numpy(other))[0].active.numpy()
    cols = [EFFECT_NAMES.index(n) for n in SELECTABLE]
    got = est.run(wet, other)[0]
    near = np.abs(p[:, cols] - t) < 1e-4  # float noise right at a threshold may go either way
    assert np.array_equal((got[:, cols] >= 0.5)[~near], (p[:, cols] >= t)[~near])
