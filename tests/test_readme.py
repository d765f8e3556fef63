"""The README's commands stay true: the CI runs the test command; here the main job's `quamba-edge`
invocations must parse against the real CLI and name files that exist."""

import re
import shlex
from pathlib import Path

from quamba_edge.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]


def _block(name: str) -> str:
    text = (ROOT / "README.md").read_text()
    m = re.search(rf"<!-- {name} -->\s*```\n(.*?)\n```\s*<!-- /{name} -->", text, re.S)
    assert m, f"README has no {name} block"
    return m.group(1)


def test_main_command_parses_and_its_inputs_exist():
    calls = [shlex.split(part.strip())[1:] for part in _block("main-command").split("&&")
             if part.strip().startswith(".venv/bin/quamba-edge")]
    assert calls, "the main command runs no quamba-edge subcommand"
    parser = build_parser()
    for argv in calls:
        args = parser.parse_args(argv)
        for attr in ("calib", "ppl"):
            value = getattr(args, attr, None)
            if value:
                assert (ROOT / value).is_file(), f"{attr} file {value} missing"


def test_ci_runs_the_readme_test_command():
    assert "<!-- test-command -->" in (ROOT / ".ci" / "run").read_text()
    assert "pytest" in _block("test-command")
