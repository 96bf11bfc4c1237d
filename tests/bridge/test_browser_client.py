"""The browser client's own unit tests (fake WebSocket, mocked timers), run by Node."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(shutil.which("node") is None, reason="no node on PATH")
def test_tidings_js_unit_tests() -> None:
    result = subprocess.run(
        ["node", "--test", "clients/browser/test/"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "# fail 0" in result.stdout
