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
    assert report["snr_db"] > 30
    import onnx

    proto = onnx.load(str(tmp_path / "m-int8.onnx"))
    dq = [n for n in proto.graph.node if n.op_type == "DequantizeLinear"]
    assert sorted(n.output[0] for n in dq) == sorted(report["tensors"]) and len(dq) >= 4
    assert "fir_basis" not in report["tensors"]  # the fixed noise basis stays float32
    assert {n.op_type for n in proto.graph.node} & {"MatMulInteger", "DynamicQuantizeLinear"} == set()


def test_a_file_that_is_not_a_model_is_refused_by_name(tmp_path, capsys):
    import argparse

    from pimodule.laptop.quantize import main

    junk = tmp_path / "notes.onnx"
    junk.write_bytes(b"RIFF\x00\x00 not a model")
    out = tmp_path / "q.onnx"
    for path in (junk, tmp_path / "missing.onnx"):
        assert main(argparse.Namespace(model=path, out=out)) == 2
        said = capsys.readouterr().out
        assert path.name in said and "Traceback" not in said
    assert not out.exists()
