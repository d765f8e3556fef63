#!/usr/bin/env python
"""TensorRT-RTX's ONNX parser against our plugin library, one custom node at a time (GPU machine).

What a real TensorRT-family parser can check on our machines (shared spec/measured.md): TensorRT-RTX loads
our IPluginV3 library, maps a custom node to our creator by op_type + ``plugin_version`` + namespace, hands
the node's attributes over as fields and calls ``createPlugin`` -- then aborts the process, since it has no
plugin layers. So each custom node of each export is cut out into a one-node graph (its inputs become graph
inputs of the same dtype and shape) and parsed in a subprocess of its own, with ``QUAMBA_TRT_FIELD_LOG`` set:
the library's creators then log every ``createPlugin`` (op, version, namespace, phase, each field's name,
type and values) to that file (plugins/trt/plugin_common.cpp). The check asserts that our creator was called
for the node and received exactly the fields the registry declares (``ops.trt_fields.plugin_fields``) with
the node's values (attributes, and the host scales ``prepare_trt_graph`` folds into attributes). Engine
build and execution stay with the harness (tests/gpu/test_trt_plugins.py) and the Jetson (jetson/verify.sh).

On the GPU machine, after ``../shared/tools/trt_rtx.sh``'s two install calls and ``source /root/trtrtx/env.sh``:

    python plugins/check_trt_rtx.py --plugins build/trt/libquamba_trt_plugins.so EXPORT_DIR [...] [--out R.json]

EXPORT_DIR: fp16 exports (``quamba-edge export --dtype fp16``). Nodes with the same op, attributes and input
dtypes / ranks are checked once. Exit code 0 only when every node passed.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

FIELD_LOG_ENV = "QUAMBA_TRT_FIELD_LOG"
#: node attributes the parser consumes to find the creator (not plugin fields)
LOOKUP_ATTRS = ("plugin_version", "plugin_namespace")


@dataclass
class NodeCase:
    op: str
    export: str
    node: str  # the first node of the export with this key
    count: int  # nodes of the export with this key
    expected: dict[str, tuple[str, Any]]  # field name -> (kind, value)
    onnx_path: str = ""


@dataclass
class NodeResult:
    op: str
    export: str
    node: str
    count: int
    ok: bool
    problems: list[str] = field(default_factory=list)
    created: list[dict] = field(default_factory=list)
    returncode: int | None = None
    log_tail: str = ""


def _attr_value(a: Any) -> Any:
    from onnx import helper

    v = helper.get_attribute_value(a)
    return v.decode() if isinstance(v, bytes) else v


def expected_fields(rec: Any, node: Any) -> dict[str, tuple[str, Any]]:
    """The fields our creator must receive for ``node``: every registry field the node carries as an
    attribute (a default-valued attribute the exporter left out is not passed by the parser: the plugin
    applies the default itself), with the attribute's value."""
    from quamba_edge.ops.trt_fields import plugin_fields

    attrs = {a.name: _attr_value(a) for a in node.attribute}
    out = {}
    for f in plugin_fields(rec):
        if f.name in attrs:
            out[f.name] = (f.kind, attrs[f.name])
        elif f.default is None:
            raise ValueError(f"{node.name} ({node.op_type}): required field {f.name!r} is not an attribute of "
                             "the node; was the graph prepared (ops.trt_fields.prepare_trt_graph)?")
    return out


def _value_types(model: Any) -> dict[str, Any]:
    """Tensor name -> its TypeProto, from the graph's inputs, initializers and inferred value_info."""
    import onnx
    from onnx import helper

    try:
        inferred = onnx.shape_inference.infer_shapes(model, check_type=False, strict_mode=False)
    except Exception:  # noqa: BLE001 -- custom domains can stop inference; what it found is kept
        inferred = model
    types = {}
    for vi in list(inferred.graph.input) + list(inferred.graph.value_info) + list(inferred.graph.output):
        types[vi.name] = vi.type
    for init in model.graph.initializer:
        types[init.name] = helper.make_tensor_type_proto(init.data_type, list(init.dims))
    return types


def cut_nodes(model: Any, export: str, out_dir: Path, per_op: int = 0) -> list[NodeCase]:
    """One single-node ONNX file per distinct custom node of ``model`` (already prepared for TensorRT); with
    ``per_op`` > 0 at most that many per op (the layers' nodes differ only in their scale values)."""
    import onnx
    from onnx import helper

    from quamba_edge.ops.registry import DOMAIN
    from quamba_edge.ops.trt_fields import plugin_ops

    recs = {r.name: r for r in plugin_ops()}
    types = _value_types(model)
    cases: dict[tuple, NodeCase] = {}
    for k, n in enumerate(model.graph.node):
        if n.domain != DOMAIN:
            continue
        rec = recs.get(n.op_type)
        if rec is None:
            continue  # an op without a plugin (no kernel yet): quamba-edge build refuses such graphs itself
        ins = []
        for i, name in enumerate(n.input):
            t = types.get(name)
            if name and t is None:
                raise ValueError(f"{export}: no type for input {name!r} of {n.name} ({n.op_type})")
            ins.append((f"in{i}", t))
        sig = tuple((t.tensor_type.elem_type, len(t.tensor_type.shape.dim)) if t is not None else None
                    for _, t in ins)
        attrs = tuple(sorted((a.name, repr(_attr_value(a))) for a in n.attribute))
        key = (n.op_type, attrs, sig)
        if key in cases:
            cases[key].count += 1
            continue
        if per_op > 0 and sum(c.op == n.op_type for c in cases.values()) >= per_op:
            continue
        case = NodeCase(n.op_type, export, n.name or f"#{k}", 1, expected_fields(rec, n))
        inputs = [helper.make_value_info(nm, t) for nm, t in ins if t is not None]
        outs = [helper.make_value_info(f"out{i}", types[o]) if o in types
                else helper.make_empty_tensor_value_info(f"out{i}") for i, o in enumerate(n.output)]
        node = helper.make_node(n.op_type, [nm if t is not None else "" for nm, t in ins],
                                [f"out{i}" for i in range(len(n.output))], name=n.name or n.op_type,
                                domain=n.domain)
        node.attribute.extend(n.attribute)
        graph = helper.make_graph([node], f"{n.op_type}_only", inputs, outs)
        one = helper.make_model(graph, opset_imports=list(model.opset_import), producer_name="check_trt_rtx")
        one.ir_version = model.ir_version
        path = out_dir / f"{len(cases):03d}_{n.op_type}.onnx"
        onnx.save(one, str(path))
        case.onnx_path = str(path)
        cases[key] = case
    return list(cases.values())


def _same(kind: str, want: Any, got: Any) -> bool:
    if kind == "kFLOAT32":
        w = [float(x) for x in (want if isinstance(want, list | tuple) else [want])]
        g = [float(x) for x in (got if isinstance(got, list) else [got])]
        # the parser converts the attribute to fp32: compare as fp32 (inf == inf)
        import numpy as np

        return len(w) == len(g) and bool(np.array_equal(np.float32(w), np.float32(g)))
    if kind == "kINT32":
        w = list(want) if isinstance(want, list | tuple) else [want]
        g = got if isinstance(got, list) else [got]
        return [int(x) for x in w] == [int(x) for x in g]
    return str(want) == str(got)


def compare(case: NodeCase, created: list[dict]) -> list[str]:
    """Problems with what our creator logged for this node (empty: passed)."""
    if not created:
        return ["our creator was never called (the parser did not map the node to it)"]
    problems = []
    c = created[0]
    if c.get("op") != case.op:
        problems.append(f"createPlugin of {c.get('op')!r}, expected {case.op!r}")
    got = {f["name"]: f for f in c.get("fields", [])}
    for name, (kind, value) in case.expected.items():
        f = got.get(name)
        if f is None:
            problems.append(f"field {name!r} not passed")
        elif f.get("type") != kind:
            problems.append(f"field {name!r}: type {f.get('type')} (expected {kind})")
        elif not _same(kind, value, f.get("value")):
            problems.append(f"field {name!r}: value {f.get('value')!r} (expected {value!r})")
    extra = sorted(set(got) - set(case.expected) - set(LOOKUP_ATTRS))
    if extra:
        problems.append(f"fields the registry does not declare: {extra}")
    return problems


def run_child(case: NodeCase, plugins: str, timeout: float) -> NodeResult:
    with tempfile.TemporaryDirectory() as td:
        log = Path(td) / "fields.jsonl"
        env = dict(os.environ, **{FIELD_LOG_ENV: str(log)})
        cmd = [sys.executable, __file__, "--child", case.onnx_path, "--plugins", plugins]
        try:
            p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
            rc, out = p.returncode, p.stdout + p.stderr
        except subprocess.TimeoutExpired as e:
            rc, out = None, f"timed out after {timeout} s\n{e.stdout or ''}{e.stderr or ''}"
        created = [json.loads(x) for x in log.read_text().splitlines() if x.strip()] if log.exists() else []
    problems = compare(case, created)
    if "No module named 'tensorrt_rtx_bindings'" in out:
        problems.insert(0, "tensorrt_rtx_bindings is not importable: source /root/trtrtx/env.sh first")
    return NodeResult(case.op, case.export, case.node, case.count, not problems, problems, created, rc, out[-2000:])


def child(onnx_path: str, plugins: str) -> int:
    """Parse one graph with TensorRT-RTX (the process may abort after createPlugin: expected, see above)."""
    import tensorrt_rtx_bindings as trt

    logger = trt.Logger(trt.Logger.VERBOSE)
    registry = trt.get_plugin_registry()
    registry.load_library(plugins)
    names = sorted(f"{c.name}/{c.plugin_version}/{c.plugin_namespace}" for c in registry.all_creators
                   if c.plugin_namespace == "quamba")
    print("quamba creators:", " ".join(names), flush=True)
    builder = trt.Builder(logger)
    network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
    parser = trt.OnnxParser(network, logger)
    ok = parser.parse(Path(onnx_path).read_bytes())
    for i in range(parser.num_errors):
        print("parser error:", parser.get_error(i), flush=True)
    print("parsed" if ok else "parse failed", flush=True)
    return 0 if ok else 1


def load_prepared(export_dir: Path) -> Any:
    import onnx

    from quamba_edge.ops.trt_fields import prepare_trt_graph

    path = export_dir / "model.onnx"
    if not path.is_file():
        raise FileNotFoundError(f"{export_dir}: no model.onnx (pass `quamba-edge export --dtype fp16` directories)")
    return prepare_trt_graph(onnx.load(str(path)))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("exports", nargs="*", type=Path, help="fp16 export directories")
    ap.add_argument("--plugins", required=True, help="libquamba_trt_plugins.so")
    ap.add_argument("--out", type=Path, help="write the per-node results as JSON")
    ap.add_argument("--timeout", type=float, default=120.0, help="seconds per node (default 120)")
    ap.add_argument("--per-op", type=int, default=2, help="distinct nodes checked per op and export (0: all)")
    ap.add_argument("--child", metavar="ONNX", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        return child(args.child, args.plugins)
    if not args.exports:
        ap.error("give at least one export directory")
    if not Path(args.plugins).is_file():
        ap.error(f"--plugins {args.plugins}: no such file (build plugins/trt first: see plugins/trt/README.md)")
    results = []
    with tempfile.TemporaryDirectory() as td:
        for k, d in enumerate(args.exports):
            sub = Path(td) / f"e{k}"
            sub.mkdir()
            for case in cut_nodes(load_prepared(d), str(d), sub, args.per_op):
                r = run_child(case, args.plugins, args.timeout)
                results.append(r)
                print(f"{'ok  ' if r.ok else 'FAIL'} {r.op:20s} x{r.count:<3d} {Path(r.export).name}"
                      + ("" if r.ok else "  " + "; ".join(r.problems)), flush=True)
    failed = [r for r in results if not r.ok]
    print(f"{len(results) - len(failed)} / {len(results)} distinct nodes passed")
    if args.out:
        args.out.write_text(json.dumps([asdict(r) for r in results], indent=1, default=str) + "\n")
    return 1 if failed or not results else 0


if __name__ == "__main__":
    sys.exit(main())
