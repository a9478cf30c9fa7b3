"""The small-cache variants table: weights as the engine loads them, the L2 test, the aims, and
the committed table up to date with export/ and the result files."""

from __future__ import annotations

import json

from pimodule.laptop import voice_variants
from pimodule.laptop.results_device import render_voice_variants


def test_variants_of_the_shipped_voices():
    res = voice_variants.variants()
    rows = {r["voice"]: r for r in res["rows"]}
    assert set(rows) == set(voice_variants.VOICES)
    assert rows["violin"]["weight_bytes"] > voice_variants.L2_BYTES and not rows["violin"]["fits_a53_l2"]
    assert (
        rows["flute-small"]["fits_a53_l2"] and rows["flute-small"]["weight_bytes"] < rows["flute"]["weight_bytes"] / 2
    )
    for r in rows.values():  # a choice must fit and keep the aims
        assert not r["small_cache_choice"] or (
            r["fits_a53_l2"] and r["within_aims"] and r["insns_per_s"] <= voice_variants.SMALL_BUDGET
        )
        assert r["within_aims"] == (r["loudness_error_db"] <= 1.0 and r["f0_error_cents"] <= 10.0)
    assert any(r["small_cache_choice"] for r in rows.values())
    # the int8 violin: its matrices a quarter of the bytes, inside the L2, the full decoder
    assert rows["violin-int8"]["fits_a53_l2"] and rows["violin-int8"]["hidden"] == rows["violin"]["hidden"]
    assert rows["violin-int8"]["dtype"] == "int8 matrices" and rows["violin"]["dtype"] == "float32"
    page = render_voice_variants(res)
    assert "(small-cache choice)" in page and "| no |" in page


def test_committed_table_is_up_to_date():
    committed = json.loads((voice_variants.RESULTS / "voice_variants.json").read_text())["results"]
    assert committed == json.loads(json.dumps(voice_variants.variants())), "run `make results`"
