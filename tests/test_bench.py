"""The benchmarks run end to end on tiny scenes (smoke tests: no timing is asserted)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from bench import change, detect, tiles
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


def test_detect_bench_times_classic_against_the_encoder_and_finds_vehicles() -> None:
    result = detect.measure(512, detectors=("classic", "no-such"), repeats=1)
    assert result.baseline.name == detect.BASELINE_NAME and result.baseline.ratio_to_baseline == 1.0
    (run,) = result.runs
    assert run.name == "classic" and run.seconds > 0 and run.mp_per_s > 0 and run.mp_per_s_per_core > 0
    assert run.ratio_to_baseline is not None and run.ratio_to_baseline > 0 and run.peak_rss_bytes > 0
    assert result.objects > 5 and run.detections and run.recall is not None and run.recall > 0.3
    assert result.skipped and result.skipped[0].startswith("no-such:")
    assert "x base" in detect.format_table(result) and detect.BASELINE_NAME in detect.format_table(result)
    classic_only = detect.measure(256, detectors=("classic",), repeats=1, encoder_baseline=False)
    assert classic_only.baseline.name == "classic" and classic_only.runs[0].ratio_to_baseline == 1.0


def test_tiles_bench_serves_over_http_and_times_rio_tiler_on_the_same_tiles(tmp_path: Path) -> None:
    cache, work = tmp_path / "cache", tmp_path / "work"
    work.mkdir()
    result = tiles.measure(512, requests=12, clients=3, warmup=2, cache=cache, datasets=None, workdir=work)
    assert result.served.requests == result.direct.requests == sum(result.statuses.values()) > 0
    assert set(result.statuses) <= {200, 204} and result.statuses.get(200, 0) > 0 and result.served_kib > 0
    for run in (result.served, result.direct, result.direct_threads):
        assert 0 < run.p50_ms <= run.p95_ms <= run.p99_ms <= run.max_ms and run.tiles_per_s > 0
    assert math.isfinite(result.ratio) and result.ratio > 0 and len(result.zooms) >= 2
    assert "served p95" in tiles.format_table(result)
    assert list(work.iterdir()) == []  # its workspace is cleaned up, and the server is gone with it
