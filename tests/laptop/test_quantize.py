from pimodule.device.session import ModelSession
from pimodule.laptop.ddsp.export import build_test_model
from pimodule.laptop.quantize import quantize


def test_int8_variant_is_a_valid_smaller_model_close_to_fp32(tmp_path):
    src = build_test_model(tmp_path / "m.onnx")
    report = quantize(src, tmp_path / "m-int8.onnx")
    session = ModelSession(tmp_path / "m-int8.onnx")
    session.warm()
    assert session.info.name.endswith("-int8")
    assert session.info.provenance["variant"]["from"] == "m.onnx"
    assert report["bytes"]["int8"] < report["bytes"]["fp32"]
    assert report["snr_db"] > 20
