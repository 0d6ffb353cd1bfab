"""The examples run: `make run`'s tour on the embedded default and on memory://."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

QUICKSTART = Path(__file__).parent.parent / "examples" / "quickstart.py"


@pytest.mark.parametrize("url", ["sqlite", "memory://"])
def test_quickstart_runs(url: str, tmp_path: Path) -> None:
    env = dict(os.environ, MIRRORKV_URL=f"sqlite://{tmp_path}/tour.db" if url == "sqlite" else url)
    done = subprocess.run(
        [sys.executable, str(QUICKSTART)], env=env, cwd=tmp_path, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert "left under quickstart/: 0 keys" in done.stdout
