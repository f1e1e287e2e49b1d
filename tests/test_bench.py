"""The ingest benchmark runs end to end on a tiny scene (a smoke test: no timing is asserted)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from bench.ingest import format_table, generate_scenes, measure


def test_ingest_bench_returns_positive_numbers(tmp_path: Path) -> None:
    (scene,) = generate_scenes(tmp_path / "scenes", count=1, size=128)
    result = measure([scene], repeats=1, workdir=tmp_path)
    for phase in (result.baseline, result.ingest):
        assert phase.seconds > 0 and phase.cpu_seconds > 0 and phase.mb_per_s > 0 and phase.mp_per_s > 0
    assert math.isfinite(result.ratio) and result.ratio > 0
    assert result.megapixels == pytest.approx(128 * 128 / 1e6)
    assert result.megabytes == pytest.approx(3 * 128 * 128 / 1e6)  # RGB uint8
    assert result.child_peak_rss_bytes >= result.ingest_peak_rss_bytes > 0
    assert "ingest / read time" in format_table(result)
    assert list(tmp_path.iterdir()) == [tmp_path / "scenes"]  # its workspaces are cleaned up
