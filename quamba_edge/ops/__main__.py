"""Render registry-derived files to stdout.

    python -m quamba_edge.ops > plugins/OPS.md                                 # the op table
    python -m quamba_edge.ops --trt-fields > plugins/trt/generated/fields.h    # the TensorRT plugins' fields
"""

import argparse

ap = argparse.ArgumentParser(prog="python -m quamba_edge.ops", description=__doc__.splitlines()[0])
ap.add_argument("--trt-fields", action="store_true",
                help="print plugins/trt/generated/fields.h (plugin fields, shapes, dtype variants) instead of OPS.md")
args = ap.parse_args()
if args.trt_fields:
    from .trt_fields import render_fields_header

    print(render_fields_header(), end="")
else:
    from .registry import render_markdown

    print(render_markdown(), end="")
