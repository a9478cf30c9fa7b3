"""`pimodule eval ddsp --listen`: per held-out phrase the target and the resynthesis (one gain,
never clipped) and a picture, and one self-contained page, loaded in a real headless Chromium."""

from __future__ import annotations

import html.parser
import os
import re
import shutil
import signal
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from pimodule.cli import main as cli_main
from pimodule.laptop.ddsp.export import build_test_model
from pimodule.laptop.ddsp.listen import write_pair

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


class _Refs(html.parser.HTMLParser):
    """Every src/href of the page and the text of the body."""

    def __init__(self):
        super().__init__()
        self.refs: list[tuple[str, str]] = []
        self.audio = 0

    def handle_starttag(self, tag, attrs):
        self.audio += tag == "audio"
        self.refs += [(tag, v) for k, v in attrs if k in ("src", "href") and v]


@pytest.fixture(scope="module")
def listened(tone_data, tmp_path_factory):
    root = tmp_path_factory.mktemp("listen")
    model = build_test_model(root / "voice.onnx")
    out = root / "listen"
    assert cli_main(["eval", "ddsp", str(model), "--data", str(tone_data), "--listen", str(out)]) == 0
    return out


def test_every_phrase_has_a_pair_a_picture_and_a_row(listened, tone_data):
    n = len(np.load(tone_data / "held_out.npz")["audio"])
    for k in range(1, n + 1):
        for name in (f"{k:02d}_target.wav", f"{k:02d}_resynthesis.wav", f"{k:02d}.png"):
            assert (listened / name).stat().st_size > 1000
        target, sr = sf.read(str(listened / f"{k:02d}_target.wav"))
        assert sr == 16000 and np.max(np.abs(target)) <= 0.99 + 1e-4
    text = (listened / "index.html").read_text()
    parser = _Refs()
    parser.feed(text)
    assert parser.audio == 2 * n and text.count("<h2>phrase") == n
    for _tag, ref in parser.refs:  # every resource is a relative path to a file beside the page
        assert not re.match(r"^[a-z]+:|^//|^/", ref), ref
        assert ref.startswith("#") or (listened / ref).is_file(), ref
    assert "f0 error" in text and "How to read the numbers" in text


def test_one_gain_for_both_never_clipped(tmp_path):
    target = 0.5 * np.sin(np.linspace(0, 100, 16000)).astype(np.float32)
    loud = 4.0 * target  # a resynthesis peaking at 2.0
    gain = write_pair(tmp_path, "01", target, loud, 16000)
    a, _ = sf.read(str(tmp_path / "01_target.wav"))
    b, _ = sf.read(str(tmp_path / "01_resynthesis.wav"))
    assert gain == pytest.approx(0.99 / 2.0, rel=1e-3) and np.max(np.abs(b)) <= 0.99 + 1e-4
    np.testing.assert_allclose(b, 4.0 * a, atol=4 * 2 / 32768)  # the same gain on both
    write_pair(tmp_path, "02", target, target, 16000)  # quiet pairs are not raised
    np.testing.assert_allclose(sf.read(str(tmp_path / "02_target.wav"))[0], target, atol=1 / 32768)


def _chromium(args: list[str], home: Path, timeout: float = 90) -> str:
    cmd = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--no-first-run",
        f"--user-data-dir={home / 'profile'}",
        *args,
    ]
    env = {**os.environ, "HOME": str(home)}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # chromium's own helper processes, by our group
        except ProcessLookupError:
            pass
        proc.wait()
    return out.decode()


PROBE = """<script>
const audios = [...document.querySelectorAll('audio')];
let done = 0; const bad = [];
function finish() { if (++done === audios.length) {
  document.body.setAttribute('data-probe', bad.length ? 'errors: ' + bad.join(' ') : 'loaded ' + audios.length);
} }
for (const a of audios) {
  a.addEventListener('loadedmetadata', () => { if (!(a.duration > 1)) bad.push(a.getAttribute('src')); finish(); });
  a.addEventListener('error', () => { bad.push(a.getAttribute('src')); finish(); });
  a.preload = 'metadata'; a.load();
}
</script></body>"""


@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (apt-get install chromium)")
def test_the_page_in_a_headless_browser(listened, tone_data, tmp_path):
    n = len(np.load(tone_data / "held_out.npz")["audio"])
    page = listened / "index.html"
    dom = _chromium(["--dump-dom", page.as_uri()], tmp_path)
    assert dom.count("<audio") == 2 * n and dom.count("<h2>phrase") == n
    # the browser loads every audio file of the page (a copy of it with a probe script beside it)
    probe = listened / "probe.html"
    probe.write_text(page.read_text().replace("</body>", PROBE))
    dom = _chromium(
        ["--autoplay-policy=no-user-gesture-required", "--virtual-time-budget=20000", "--dump-dom", probe.as_uri()],
        tmp_path,
    )
    assert f'data-probe="loaded {2 * n}"' in dom, re.findall(r'data-probe="[^"]*"', dom) or dom[-2000:]
    shot = tmp_path / "page.png"
    _chromium(["--window-size=1100,1400", f"--screenshot={shot}", page.as_uri()], tmp_path)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000
