"""The engine's cache folder is named after every source its machine code is built from: a
module with compiled functions left out of the hash would let a stale cache outlive an update
(numba's own cache checks a function's file, not the callees it inlined)."""

from __future__ import annotations

from pimodule.device.rt import cache


def test_every_compiled_module_is_hashed():
    compiled = {p.name for p in cache.RT.glob("*.py") if "numba.njit" in p.read_text()}
    assert compiled <= {p.name for p in cache.COMPILED_FROM}, compiled - {p.name for p in cache.COMPILED_FROM}


def test_the_hash_follows_the_sources(tmp_path, monkeypatch):
    before = cache.source_hash()
    copy = tmp_path / "dsp.py"
    copy.write_text((cache.RT / "dsp.py").read_text() + "\n# changed\n")
    monkeypatch.setattr(cache, "COMPILED_FROM", tuple(copy if p.name == "dsp.py" else p for p in cache.COMPILED_FROM))
    assert cache.source_hash() != before
