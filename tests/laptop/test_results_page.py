"""docs/results.md from docs/results/*.json: stamping, rendering, and the committed page."""

import json

from pimodule.laptop import results_page as rp


def test_stamp_then_render_a_device_bench(tmp_path):
    path = tmp_path / "pi_bench.json"
    per_s = {"steady_per_s": 41e6, "from_start_per_s": 90e6, "setup": 1.4e10, "counts": {}}
    path.write_text(json.dumps({"per_second": {"violin synth": per_s}, "targets": {}}))
    rp.stamp(path, "pi_bench", "make pi-bench", "instructions")
    data = json.loads(path.read_text())
    assert data["_meta"]["kind"] == "pi_bench" and data["_meta"]["command"] == "make pi-bench"
    assert data["results"]["per_second"]["violin synth"]["steady_per_s"] == 41e6
    text = rp.render_file(path)
    assert text.startswith("## instructions\n") and "violin synth" in text and "41.0 M" in text


def test_an_unknown_kind_is_shown_as_its_json(tmp_path):
    path = tmp_path / "odd.json"
    path.write_text(json.dumps({"_meta": {"kind": "odd", "title": "Odd"}, "results": {"x": 1}}))
    assert '"x": 1' in rp.render_file(path)


def test_the_committed_page_is_the_generated_one():
    assert rp.PAGE.read_text() == rp.render_page()
