"""Activity series: the baseline, anomalies and change-points on made-up series, and the activity
index end to end on the demo site (its scripted vehicle surge, its cloudy date)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from sitewatch.activity import BaselineSettings, SiteActivity, analyse, site_activity
from sitewatch.demo.build import DemoResult, build_demo
from sitewatch.errors import NotFound
from sitewatch.workspace import Workspace
from tests.conftest import run_sitewatch

START = datetime(2019, 1, 5, 10, 30, tzinfo=UTC)


def weekly(n: int) -> list[datetime]:
    return [START + timedelta(days=7 * i) for i in range(n)]


def noisy(n: int, seed: int, level: float = 0.05, sigma: float = 0.01) -> np.ndarray:
    return level + sigma * np.random.default_rng(seed).standard_normal(n)


# --- series: pure numbers ----------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(5))
def test_step_up_gives_one_change_point_on_its_date(seed: int) -> None:
    dates, values = weekly(14), noisy(14, seed)
    values[7:] += 0.08
    result = analyse(dates, values)
    assert len(result.change_points) == 1
    change = result.change_points[0]
    assert (change.last_before, change.first_after) == (dates[6], dates[7])
    assert change.direction == "rose" and change.after - change.before == pytest.approx(0.08, abs=0.02)
    assert change.words().startswith(f"activity rose after {dates[6]:%Y-%m-%d} (first seen {dates[7]:%Y-%m-%d}")
    assert result.points[7].anomaly == "high"  # the first date at the new level is unusual for its past


def test_step_down_reads_as_dying_down() -> None:
    dates, values = weekly(12), noisy(12, 11, level=0.2)
    values[5:] -= 0.12
    [change] = analyse(dates, values).change_points
    assert change.direction == "fell" and change.first_after == dates[5]
    assert change.words().startswith(f"activity died down after {dates[4]:%Y-%m-%d}")


@pytest.mark.parametrize("where", [5, 10, 12])  # middle, next to the end, the last date
def test_single_spike_is_an_anomaly_not_a_change_point(where: int) -> None:
    dates, values = weekly(13), noisy(13, 3)
    values[where] += 0.15
    result = analyse(dates, values)
    assert result.change_points == ()
    assert [p.date for p in result.anomalies] == [dates[where]]
    spike = result.points[where]
    assert spike.anomaly == "high" and spike.z is not None and spike.z > 3.5
    assert spike.median is not None and spike.mad is not None
    assert spike.z == pytest.approx((spike.value - spike.median) / (1.4826 * spike.mad))


@pytest.mark.parametrize("seed", range(5))
def test_flat_noisy_series_has_no_anomaly_and_no_change_point(seed: int) -> None:
    result = analyse(weekly(20), noisy(20, 100 + seed))
    assert result.anomalies == () and result.change_points == () and result.note is None


def test_low_anomaly_when_a_date_goes_quiet() -> None:
    dates, values = weekly(9), noisy(9, 5, level=0.3, sigma=0.01)
    values[6] = 0.05
    result = analyse(dates, values)
    assert [(p.date, p.anomaly) for p in result.anomalies] == [(dates[6], "low")]


@pytest.mark.parametrize("n", [0, 1, 2, 3])
def test_too_short_series_says_not_enough_dates(n: int) -> None:
    result = analyse(weekly(n), [0.05] * n)
    assert result.note is not None and result.note.startswith("not enough dates")
    assert f"{n} usable, at least 4 needed" in result.note
    assert result.change_points == () and all(p.z is None and p.anomaly is None for p in result.points)


def test_baseline_uses_only_earlier_dates_within_the_window() -> None:
    dates = weekly(8)
    values = [0.01, 0.02, 0.03, 0.04, 0.05, 0.06, 0.07, 0.5]
    result = analyse(list(reversed(dates)), list(reversed(values)), BaselineSettings(window=3, min_history=3))
    assert [p.date for p in result.points] == dates  # sorted by date
    assert [p.median for p in result.points[:3]] == [None, None, None]
    assert result.points[3].median == pytest.approx(0.02)
    assert result.points[7].median == pytest.approx(0.06)  # of 0.05, 0.06, 0.07: not the date itself


def test_bad_input_and_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="3 dates but 2 values"):
        analyse(weekly(3), [0.1, 0.2])
    with pytest.raises(ValueError, match="not finite"):
        analyse(weekly(2), [0.1, float("nan")])
    with pytest.raises(ValueError, match="min_history"):
        BaselineSettings(window=2, min_history=3)


# --- the index on the demo site ----------------------------------------------------------------


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> DemoResult:
    """The demo workspace, analysed (so its persistent changes are stored) and reported."""
    return build_demo(tmp_path_factory.mktemp("activity") / "ws", seed=7)


@pytest.fixture(scope="module")
def measured(demo: DemoResult) -> SiteActivity:
    with Workspace.open(demo.workspace) as ws:
        return site_activity(ws, demo.truth.name, align=False)


def test_demo_surge_is_the_loading_areas_busiest_date_and_an_anomaly(demo: DemoResult, measured: SiteActivity) -> None:
    """The generator parks the surge's trucks in the loading area on 2024-08-20."""
    surge = demo.truth.surge_date
    assert {v.zone for v in demo.truth.scenes[5].vehicles if v.cls == "large-vehicle"} >= {"loading area"}
    loading = measured.area("loading area").index
    busiest = max(loading.points, key=lambda p: p.value)
    assert busiest.date == surge
    assert [p.date for p in loading.anomalies] == [surge] and busiest.anomaly == "high"
    others = [p.value for p in loading.points if p.date != surge]
    assert busiest.value > 2 * max(others)
    assert loading.change_points == ()  # one busy date is not a new level


def test_demo_cloudy_date_is_skipped_with_its_reason(demo: DemoResult, measured: SiteActivity) -> None:
    cloudy = [s.acquired for s in demo.truth.scenes if s.cloudy]
    for series in measured.series:
        assert [s.acquired for s in series.skipped] == cloudy
        assert all("cloudy" in s.reason for s in series.skipped)
        assert cloudy[0] not in [p.date for p in series.index.points]
        assert len(series.index.points) == len(demo.truth.scenes) - len(cloudy)


def test_demo_index_leaves_out_persistent_change_and_covers_every_zone(
    demo: DemoResult, measured: SiteActivity
) -> None:
    assert measured.index.persistent_changes > 0 and measured.index.persistent_m2 > 1_000
    zones = [s.zone for s in measured.series]
    assert zones[0] is None and set(zones[1:]) == set(demo.truth.zones)
    for series in measured.series:
        assert all(0.0 <= p.value < 0.5 for p in series.index.points)
    with pytest.raises(NotFound, match="no zone 'nowhere'"), Workspace.open(demo.workspace) as ws:
        site_activity(ws, demo.truth.name, zones=["nowhere"], align=False)


def test_cli_activity_table_and_json(demo: DemoResult) -> None:
    name = demo.truth.name
    shown = run_sitewatch("activity", "--site", name, "--zone", "loading area", workspace=demo.workspace)
    assert shown.returncode == 0, shown.stderr
    assert "2024-08-20" in shown.stdout and "ANOMALY (high)" in shown.stdout
    assert "2024-04-02  skipped: cloudy" in shown.stdout and "change-points: none" in shown.stdout
    assert 'objects per date in the zone "loading area", counted by detector:' in shown.stdout
    lines = shown.stdout.splitlines()
    assert any(line.startswith("2024-04-02") and "n/a" in line and "cloudy" in line for line in lines)
    listed = run_sitewatch("activity", "--site", name, "--window", "4", "--json", workspace=demo.workspace)
    assert listed.returncode == 0, listed.stderr
    summary = json.loads(listed.stdout)
    assert summary["zone"] is None and summary["window"] == 4
    assert [d["date"][:10] for d in summary["skipped"]] == ["2024-04-02"]
    assert {"index", "median", "mad", "z", "anomaly"} <= set(summary["dates"][-1])
    counts = summary["counts"]
    assert {"small-vehicle", "large-vehicle", "vehicles"} <= set(counts["columns"])
    assert len(counts["columns"]["vehicles"]["dates"]) == len(demo.truth.scenes) - 1
    assert {"count", "median", "mad", "z", "anomaly"} <= set(counts["columns"]["vehicles"]["dates"][-1])
    assert [d["date"][:10] for d in counts["not_counted"]] == ["2024-04-02"]
    missing = run_sitewatch("activity", "--site", name, "--zone", "nowhere", workspace=demo.workspace)
    assert missing.returncode == 1 and "no zone 'nowhere'" in missing.stderr


def test_demo_report_has_an_activity_chart(demo: DemoResult) -> None:
    html = Path(demo.report).read_text(encoding="utf-8")
    section = html[html.index('<section id="activity">') :]
    section = section[: section.index("</section>")]
    assert section.count("<svg") == 2 * (1 + len(demo.truth.zones))  # the index, and the vehicles counted
    assert "Vehicles counted per date, whole site" in section
    assert 'class="anomaly"' in section and "loading area" in section and "2024-08-20" in section
