"""The ingest benchmark runs end to end on a tiny scene (a smoke test: no timing is asserted)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from bench import change
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


def test_change_bench_runs_cva_in_a_child_and_reuses_its_pair(tmp_path: Path) -> None:
    result = change.measure(256, detectors=("cva", "no-such"), tile=128, cache=tmp_path, datasets=None)
    (run,) = result.runs
    assert run.detector == "cva" and run.ratio_to_cva == 1.0 and run.seconds > 0 and run.mp_per_s > 0
    assert run.peak_rss_bytes >= run.rss_after_imports_bytes > 0 and 0 < run.changed_fraction < 0.5
    assert result.skipped and result.skipped[0].startswith("no-such: not in this install")
    pair = sorted(tmp_path.iterdir())
    assert [p.suffix for p in pair] == [".tif", ".tif"]
    assert change.make_pair(tmp_path, 256, None)[1:] == (pair[1], pair[0])  # cached: BEFORE, AFTER
    assert "x cva" in change.format_table(result)
