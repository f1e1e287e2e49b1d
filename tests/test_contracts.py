"""The evaluation contracts of DESIGN.md, checked by the shared tool anyone outside can run too."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

CHECK_CONTRACTS = Path(__file__).resolve().parents[2] / "shared" / "tools" / "check-contracts"


@pytest.mark.datasets
@pytest.mark.slow
def test_change_register_and_detect_contracts_hold() -> None:
    if not CHECK_CONTRACTS.is_file():
        pytest.skip(f"{CHECK_CONTRACTS} not found (../shared lives beside the checkout)")
    bin_dir = str(Path(sys.executable).parent)
    env = {**os.environ, "PATH": os.pathsep.join([bin_dir, os.environ.get("PATH", "")])}
    p = subprocess.run(
        [sys.executable, str(CHECK_CONTRACTS), "change", "register", "detect"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    assert p.returncode == 0, p.stdout + p.stderr
