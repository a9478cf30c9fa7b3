import numpy as np
import soundfile as sf

from pimodule.cli import main


def test_demo_writes_transfers_and_a_daemon_recording(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path), "--seconds", "1.5"]) == 0
    said = capsys.readouterr().out
    for name in ("transfer_violin.wav", "transfer_flute.wav", "daemon_violin.wav"):
        path = tmp_path / name
        assert str(path.resolve()) in said  # it says where the file is
        audio, _ = sf.read(str(path))
        assert np.all(np.isfinite(audio)) and np.max(np.abs(audio)) > 0.01
