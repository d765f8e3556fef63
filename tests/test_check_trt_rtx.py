"""plugins/check_trt_rtx.py without TensorRT-RTX: the one-node graphs cut from a prepared export, the fields each
node must hand our creator, the comparison with what the creator logs, and the child's clear failure where
tensorrt_rtx_bindings is missing. The parse itself runs on the GPU machine (TensorRT-RTX, see the script)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

onnx = pytest.importorskip("onnx")

from runtime_helpers import fp16_export, have_recipes  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "plugins"))
import check_trt_rtx as rtx  # noqa: E402

from quamba_edge.ops.trt_fields import plugin_fields, plugin_ops  # noqa: E402

pytestmark = pytest.mark.skipif(not have_recipes(), reason="needs the quantization recipes")


@pytest.fixture(scope="module")
def export():
    return fp16_export("mamba2", "w8a8")


@pytest.fixture(scope="module")
def cases(export, tmp_path_factory):
    return rtx.cut_nodes(rtx.load_prepared(export), str(export), tmp_path_factory.mktemp("rtx"))


def test_every_plugin_node_is_cut_into_a_valid_one_node_graph(export, cases):
    model = onnx.load(str(export / "model.onnx"))
    ops = {r.name for r in plugin_ops()}
    in_graph = {n.op_type for n in model.graph.node if n.domain == "quamba" and n.op_type in ops}
    assert {c.op for c in cases} == in_graph and "QuantSSD" in in_graph
    assert sum(c.count for c in cases) == sum(n.domain == "quamba" and n.op_type in ops for n in model.graph.node)
    for c in cases:
        one = onnx.load(c.onnx_path)
        onnx.checker.check_model(one)
        (node,) = one.graph.node
        assert node.op_type == c.op and node.domain == "quamba"
        assert {a.name for a in node.attribute} >= set(rtx.LOOKUP_ATTRS)
        assert all(i.type.tensor_type.elem_type != onnx.TensorProto.UINT8 for i in one.graph.input)  # prepared


def test_expected_fields_are_the_registry_fields_with_the_node_values(cases):
    recs = {r.name: r for r in plugin_ops()}
    for c in cases:
        names = [f.name for f in plugin_fields(recs[c.op])]
        assert set(c.expected) <= set(names)
        required = {f.name for f in plugin_fields(recs[c.op]) if f.default is None}
        assert required <= set(c.expected), (c.op, required - set(c.expected))
    ssd = next(c for c in cases if c.op == "QuantSSD")
    assert ssd.expected["dt_limit_hi"][0] == "kFLOAT32" and ssd.expected["chunk_size"][0] == "kINT32"
    assert ssd.expected["dt_scale"][1] > 0  # a host scale folded by prepare_trt_graph


def test_per_op_limits_the_distinct_nodes(export, tmp_path):
    few = rtx.cut_nodes(rtx.load_prepared(export), str(export), tmp_path, per_op=1)
    assert sorted(c.op for c in few) == sorted({c.op for c in few})


def _log(case, **change):
    fields = [{"name": n, "type": k, "value": v} for n, (k, v) in case.expected.items()]
    fields += [{"name": "plugin_version", "type": "kCHAR", "value": "1"}]
    entry = {"op": case.op, "version": "1", "namespace": "quamba", "phase": "build", "fields": fields}
    for name, value in change.items():
        for f in fields:
            if f["name"] == name:
                f["value"] = value
    return [entry]


def test_compare_accepts_the_right_fields_and_names_each_problem(cases):
    ssd = next(c for c in cases if c.op == "QuantSSD")
    assert rtx.compare(ssd, _log(ssd)) == []
    assert rtx.compare(ssd, []) == ["our creator was never called (the parser did not map the node to it)"]
    (p,) = rtx.compare(ssd, _log(ssd, chunk_size=64))
    assert "chunk_size" in p and "64" in p
    log = _log(ssd)
    log[0]["fields"] = [f for f in log[0]["fields"] if f["name"] != "dt_scale"]
    log[0]["fields"].append({"name": "bogus", "type": "kINT32", "value": 1})
    assert rtx.compare(ssd, log) == ["field 'dt_scale' not passed", "fields the registry does not declare: ['bogus']"]
    log = _log(ssd)
    log[0]["fields"][0]["type"] = "kFLOAT32"
    assert "type kFLOAT32" in rtx.compare(ssd, log)[0]


def test_fp32_comparison_is_at_fp32_precision(cases):
    ssd = next(c for c in cases if c.op == "QuantSSD")
    s = ssd.expected["dt_scale"][1]
    import numpy as np

    assert rtx.compare(ssd, _log(ssd, dt_scale=float(np.float32(s)))) == []
    assert rtx.compare(ssd, _log(ssd, dt_scale=s * 1.001)) != []


def test_child_without_tensorrt_rtx_says_what_to_do(cases, tmp_path):
    pytest.importorskip("onnx")
    try:
        import tensorrt_rtx_bindings  # noqa: F401
        pytest.skip("TensorRT-RTX is installed here")
    except ImportError:
        pass
    lib = tmp_path / "libquamba_trt_plugins.so"
    lib.write_bytes(b"")
    r = rtx.run_child(cases[0], str(lib), timeout=120)
    assert not r.ok and r.problems[0].startswith("tensorrt_rtx_bindings is not importable")


def test_cli_refuses_a_missing_library(export, capsys):
    with pytest.raises(SystemExit):
        rtx.main([str(export), "--plugins", "/nonexistent/lib.so"])
    assert "no such file" in capsys.readouterr().err
