"""`pimodule export` is quiet: torch's "torchvision is not installed" notices are dropped at their
logger, other records of that logger still show."""

import logging
import subprocess
import sys
from dataclasses import replace

from pimodule.laptop.ddsp.model import DDSPConfig
from pimodule.laptop.ddsp.recipe import RunConfig, TrainConfig
from pimodule.laptop.ddsp.train import train
from pimodule.laptop.quiet import NOTICES, quiet_onnx_export


def test_only_the_notice_is_dropped(caplog):
    quiet_onnx_export()
    quiet_onnx_export()  # idempotent
    name, _ = NOTICES[0]
    logger = logging.getLogger(name)
    assert len(logger.filters) == 1
    with caplog.at_level(logging.WARNING, logger=name):
        logger.warning("torchvision is not installed. Skipping %s", "torchvision::nms")
        logger.warning("'%s' does not have a 'default' overload", "x::y")
        logger.error("a real error")
    assert [r.getMessage() for r in caplog.records] == ["'x::y' does not have a 'default' overload", "a real error"]


def test_pimodule_export_prints_no_torchvision_notice(tone_data, tmp_path):
    run = tmp_path / "run"
    config = RunConfig(DDSPConfig(hidden_size=16), TrainConfig(batch_size=2, crop_frames=50, steps=2, seed=1))
    train(tone_data, run, replace(config, train=replace(config.train, listen_every_minutes=0)), progress=False)
    proc = subprocess.run(
        [sys.executable, "-m", "pimodule.cli", "export", str(run), "--out", str(tmp_path / "m.onnx")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "torchvision" not in proc.stderr + proc.stdout and (tmp_path / "m.onnx").stat().st_size > 0
