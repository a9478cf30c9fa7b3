import numpy as np
import soundfile as sf

from pimodule.cli import main
from pimodule.laptop.demo import EXPORT


def test_demo_writes_transfers_and_a_daemon_recording(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path), "--seconds", "1.5"]) == 0
    said = capsys.readouterr().out
    for name in ("transfer_violin.wav", "transfer_flute.wav", "daemon_violin.wav"):
        path = tmp_path / name
        assert str(path.resolve()) in said  # it says where the file is
        audio, _ = sf.read(str(path))
        assert np.all(np.isfinite(audio)) and np.max(np.abs(audio)) > 0.01


def test_a_demo_whose_daemon_played_silence_fails_and_says_so(tmp_path, monkeypatch, capsys):
    import shutil

    from pimodule.laptop import demo

    models = tmp_path / "models"
    models.mkdir()
    shutil.copy(EXPORT / "violin-small.onnx", models / "violin.onnx")

    def silent_daemon(model, out_wav, seconds):  # the daemon ran, but refused its voice
        sf.write(str(out_wav), np.zeros(4800, np.float32), 48000)
        return 0

    monkeypatch.setattr(demo, "run_daemon", silent_daemon)
    assert main(["demo", "--out", str(tmp_path / "out"), "--models", str(models), "--seconds", "0.1"]) == 1
    assert "recording is silent: violin did not play" in capsys.readouterr().err
