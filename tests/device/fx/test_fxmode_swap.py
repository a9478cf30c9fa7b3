"""fx mode: choosing another estimator while the daemon plays (``/pimodule/fx/model``); bad files
are refused and the current estimator goes on."""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from pimodule.device import daemon as daemon_mod
from pimodule.device.config import parse_config
from pimodule.device.fx.mode import FxAnalyzer

FX_MODEL = Path(__file__).resolve().parents[3] / "export" / "fx.onnx"
RATE_HZ = 48000
pytestmark = pytest.mark.timeout(180)


def _signal(seconds: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * RATE_HZ)) / RATE_HZ
    saw = 2 * ((110 * t) % 1.0) - 1
    return (0.2 * saw * (0.6 + 0.4 * np.sin(2 * np.pi * 2 * t)) + 0.01 * rng.standard_normal(t.shape)).astype(
        np.float32
    )


@pytest.fixture(scope="module")
def estimators(tmp_path_factory, nan_output) -> Path:
    """A models dir: the shipped blind fx.onnx, a small untrained paired dry estimator
    (``tiny-dry``), its NaN-output variant (``nan-dry``) and a file that is not a model."""
    import torch

    from pimodule.laptop.fx.export import export_onnx
    from pimodule.laptop.fx.model import Estimator, ModelConfig

    d = tmp_path_factory.mktemp("fxmodels")
    shutil.copy(FX_MODEL, d / "fx.onnx")  # copies: the store refuses links pointing out
    torch.manual_seed(0)
    model = Estimator(
        ModelConfig(channels=8, n_layers=1, n_mels=16, waveform_stats=True, conditioning="dry", paired=True)
    )
    export_onnx(model, d / "tiny-dry.onnx", name="tiny-dry")
    nan_output(d / "tiny-dry.onnx", d / "nan-dry.onnx", output="unit")
    (d / "broken.onnx").write_bytes(b"\x08\x07 not onnx")
    return d


def test_swap_brings_fresh_histories_and_refuses_bad_files(estimators):
    analyzer = FxAnalyzer(estimators / "fx.onnx", RATE_HZ, smoothing=1.0)
    errors, attached = [], []
    analyzer.on_error = errors.append
    analyzer.on_histories = lambda h, o: attached.append((h, o))
    analyzer.history.write(_signal(1.5))
    blind = analyzer.analyse_once()
    assert blind is not None and analyzer.other_history is None

    assert analyzer.swap_estimator(estimators / "tiny-dry.onnx")
    assert analyzer.name == "tiny-dry" and analyzer.estimator.conditioning == "dry"
    assert attached == [(analyzer.history, analyzer.other_history)] and analyzer.other_history is not None
    assert analyzer.latest == {}  # nothing of the old estimator's average is kept
    dry = _signal(1.5, seed=1)
    analyzer.history.write(dry[:24000])
    analyzer.other_history.write(dry[:24000])
    assert analyzer.analyse_once() is None  # half a window heard: no estimate yet
    analyzer.history.write(dry[24000:])
    analyzer.other_history.write(dry[24000:])
    assert set(analyzer.analyse_once()) == set(blind)

    for bad, reason in (("nan-dry.onnx", "non-finite"), ("broken.onnx", "not an ONNX model"), ("missing.onnx", "")):
        assert not analyzer.swap_estimator(estimators / bad)
        assert analyzer.name == "tiny-dry" and reason in errors[-1] and bad in errors[-1]
    assert analyzer.n_refused == 3 and len(attached) == 1
    assert analyzer.analyse_once() is not None  # the current estimator goes on


def test_daemon_switches_estimator_over_osc_while_playing(estimators, model_dir):
    from pimodule.device.io.osc import OscClient

    (estimators / "voice_a.onnx").unlink(missing_ok=True)
    shutil.copy(model_dir / "voice_a.onnx", estimators / "voice_a.onnx")
    cfg = parse_config(
        {
            "osc": {"port": 0},
            "models": {"dir": str(estimators), "default": ""},
            "engine": {"mode": "fx"},
            "cv": {"backend": "simulated"},
            "fx": {"model": "fx", "interval_s": 0.05},
        },
        "test",
    )
    d = daemon_mod.build(cfg)
    thread = threading.Thread(
        target=lambda: d.runner.run_offline(
            float("inf"), block_size=128, input_signal=np.tile(_signal(2.0), 20), should_stop=d.stop_event.is_set
        )
    )
    d.fx.start()
    d.osc.start()
    thread.start()

    def wait_for(condition, timeout_s: float = 20.0) -> bool:
        end = time.monotonic() + timeout_s
        while time.monotonic() < end and not condition():
            time.sleep(0.02)
        return condition()

    try:
        with OscClient("127.0.0.1", d.osc.port) as c:
            assert c.request("/pimodule/fx/list", expect="/pimodule/fx/models", timeout_s=10)[1] == [
                "fx",
                "nan-dry",
                "tiny-dry",
            ]
            for name, words in (
                ("voice_a", "not an effect estimator"),
                ("ghost", "no model"),
                ("broken", "not a readable pimodule model"),
            ):
                reply = c.request("/pimodule/fx/model", name, expect="/pimodule/error", timeout_s=10)
                assert reply[1][0] == "/pimodule/fx/model" and words in reply[1][1], reply
            assert wait_for(lambda: d.fx.n_runs >= 1)
            assert c.request("/pimodule/fx/model", "tiny-dry", expect="/pimodule/fx/loading", timeout_s=10)[1] == [
                "tiny-dry"
            ]
            assert wait_for(lambda: d.fx.name == "tiny-dry")
            assert d.engine.fx_history is d.fx.history and d.engine.fx_other_history is d.fx.other_history
            assert d.fx.other_history is not None
            # a file that loads but gives NaN: refused later, reported to subscribers
            c.request("/pimodule/status/subscribe", c.port, 1.0, expect="/pimodule/status/subscribed", timeout_s=10)
            c.send("/pimodule/fx/model", "nan-dry")
            end, late = time.monotonic() + 20, None
            while time.monotonic() < end and late is None:
                msg = c.receive(0.5)
                if msg and msg[0] == "/pimodule/error" and msg[1][0] == "/pimodule/fx/model":
                    late = msg[1][1]
            assert late is not None and "non-finite" in late
            assert d.fx.name == "tiny-dry" and d.fx.n_refused == 1
            runs = d.fx.n_runs
            c.send("/pimodule/fx/model", "fx")  # back to blind: estimates resume from input L
            assert wait_for(lambda: d.fx.name == "fx" and d.fx.n_runs > runs)
            assert d.engine.fx_other_history is None and d.controller.status()["fx_model"] == "fx"
    finally:
        d.stop_event.set()
        thread.join(20)
        d.close()
    assert d.runner.stats.n_exceptions == 0
