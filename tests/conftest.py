"""Shared fixtures: the shared datasets (skipped when absent) and small georeferenced rasters."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
from affine import Affine

SHARED_DATASETS = Path(__file__).resolve().parents[2] / "shared" / "datasets"


@pytest.fixture(scope="session")
def datasets() -> Path:
    """``../shared/datasets`` beside the checkout; tests that need it skip when it is absent."""
    if not SHARED_DATASETS.is_dir():
        pytest.skip(f"shared datasets not found at {SHARED_DATASETS} (they live beside the checkout)")
    return SHARED_DATASETS


def write_tif(path: Path, data: np.ndarray, **profile: Any) -> Path:
    """Write ``(bands, rows, cols)`` DATA as a GeoTIFF; PROFILE may set crs, transform, nodata, tags."""
    tags = profile.pop("tags", {})
    base = {
        "driver": "GTiff",
        "count": data.shape[0],
        "height": data.shape[1],
        "width": data.shape[2],
        "dtype": data.dtype.name,
    }
    with rasterio.open(path, "w", **{**base, **profile}) as dst:
        dst.write(data)
        if tags:
            dst.update_tags(**tags)
    return path


#: Environment variables that would carry loopback requests to a proxy.
PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY")


@pytest.fixture
def no_proxies(monkeypatch: pytest.MonkeyPatch) -> None:
    """No proxy from the environment: it would carry the tests' loopback requests elsewhere."""
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)


UTM_GRID = {"crs": "EPSG:32615", "transform": Affine(0.5, 0, 367000.0, 0, -0.5, 4104000.0)}


def run_sitewatch(*args: str | Path, workspace: Path | None = None, timeout: float = 300):  # type: ignore[no-untyped-def]
    """Run the installed ``sitewatch`` command as a user would; returns the CompletedProcess."""
    import os
    import subprocess
    import sys

    exe = Path(sys.executable).parent / "sitewatch"
    env = dict(os.environ)
    if workspace is not None:
        env["SITEWATCH_WORKSPACE"] = str(workspace)
    return subprocess.run(
        [str(exe), *map(str, args)], capture_output=True, text=True, timeout=timeout, env=env, check=False
    )


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    """Keep each phase's report on the test item, so fixtures can tell a failed test in teardown
    (the browser tests save a screenshot of the page then)."""
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)
