"""``python -m quamba_edge.ops > plugins/OPS.md``: print the op table rendered from the registry."""

from .registry import render_markdown

print(render_markdown(), end="")
