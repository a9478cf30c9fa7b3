import math

import numpy as np
import pytest
import torch

from pimodule.core import modelfile
from pimodule.core.params import ParamSpec, ParamTable

FREQ = ParamSpec("cutoff_hz", "Hz", 20.0, 20000.0, 1000.0, "log")
GAIN = ParamSpec("gain_db", "dB", -24.0, 24.0, 0.0, "lin")


@pytest.mark.parametrize("spec", [FREQ, GAIN])
def test_unit_round_trip_on_floats_numpy_and_torch(spec):
    u = np.linspace(0, 1, 11)
    values = spec.from_unit(u)
    assert np.allclose(spec.to_unit(values), u)
    assert math.isclose(spec.from_unit(0.0), spec.min) and math.isclose(spec.from_unit(1.0), spec.max)
    t = spec.from_unit(torch.tensor(u))
    assert torch.allclose(t, torch.tensor(values))


def test_log_scale_is_geometric_and_mapping_is_monotonic():
    assert math.isclose(FREQ.from_unit(0.5), math.sqrt(20.0 * 20000.0), rel_tol=1e-9)
    v = FREQ.from_unit(np.linspace(0, 1, 100))
    assert np.all(np.diff(v) > 0)


def test_out_of_range_is_clipped_and_nan_refused():
    assert GAIN.from_unit(1.7) == 24.0 and GAIN.to_unit(-99.0) == 0.0
    assert GAIN.clamp(100.0) == 24.0
    with pytest.raises(ValueError, match="finite"):
        GAIN.clamp(float("nan"))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"scale": "exp"}, "scale"),
        ({"min": 5.0, "max": 1.0, "default": 2.0}, "below"),
        ({"min": 0.0, "scale": "log"}, "min > 0"),
        ({"default": 99.0}, "outside"),
    ],
)
def test_bad_specs_are_refused(kwargs, match):
    base = {"name": "x", "unit": "", "min": 1.0, "max": 10.0, "default": 2.0, "scale": "lin"}
    with pytest.raises(ValueError, match=match):
        ParamSpec(**{**base, **kwargs})


def test_table_json_round_trip_lookup_and_mapping():
    table = ParamTable([FREQ, GAIN])
    assert ParamTable.from_json(table.to_json()) == table
    assert table.index("gain_db") == 1 and "cutoff_hz" in table
    assert list(table.from_mapping({"gain_db": 99.0})) == [1000.0, 24.0]
    with pytest.raises(KeyError, match="unknown parameter"):
        table["nope"]
    with pytest.raises(ValueError, match="duplicate"):
        ParamTable([GAIN, GAIN])


def test_model_metadata_round_trip_and_errors():
    info = modelfile.ModelInfo(
        "ddsp",
        "v",
        16000,
        64,
        ParamTable([GAIN]),
        (modelfile.StateSpec("h", (1, 4), "float32"),),
        modelfile.FORMAT_VERSION,
        128,
        {"data": "x"},
    )
    meta = info.to_metadata()
    assert modelfile.parse_metadata(meta) == info
    assert info.initial_state()["h"].shape == (1, 4)
    with pytest.raises(modelfile.ModelFileError, match="missing"):
        modelfile.parse_metadata({k: v for k, v in meta.items() if k != modelfile.KEY_STATE})
    with pytest.raises(modelfile.ModelFileError, match="kind"):
        modelfile.parse_metadata({**meta, modelfile.KEY_KIND: "reverb"})
    with pytest.raises(modelfile.ModelFileError, match="version"):
        modelfile.parse_metadata({**meta, modelfile.KEY_VERSION: "99"})
    with pytest.raises(modelfile.ModelFileError, match="malformed"):
        modelfile.parse_metadata({**meta, modelfile.KEY_CONTROLS: "[{"})
