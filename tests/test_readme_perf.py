"""The README's performance block is exactly what benchmarks/results/latency.json gives (no stale or
hand-edited numbers): regenerate with ``python benchmarks/readme_perf.py``."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _module():
    spec = importlib.util.spec_from_file_location("readme_perf", ROOT / "benchmarks" / "readme_perf.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_readme_performance_block_is_current():
    mod = _module()
    doc = json.loads(mod.RESULTS.read_text())
    readme = mod.README.read_text()
    assert mod.render(readme, doc) == readme, "stale README performance block: python benchmarks/readme_perf.py"
    assert doc["commit"][:10] in readme and doc["device"]["name"] in readme
