"""The vertical slice end to end: demo imagery and real imagery through ingest, analyze and report."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest
from shapely.ops import unary_union

from sitewatch.analyze import AnalysisResult, analyze_site
from sitewatch.demo.build import DemoResult, build_demo
from sitewatch.ingest.pipeline import ingest
from sitewatch.ingest.sources import SceneSource
from sitewatch.report.site import write_site_report
from sitewatch.sites import from_bbox, new_site
from sitewatch.workspace import Workspace
from tests.conftest import run_sitewatch


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> DemoResult:
    return build_demo(tmp_path_factory.mktemp("demo") / "ws", seed=7)


@pytest.fixture(scope="module")
def classic(demo: DemoResult, tmp_path_factory: pytest.TempPathFactory) -> AnalysisResult:
    """The demo analysed again with the classic detector (CVA), on a copy of its workspace: the
    time-series checks need a detector whose pair regions are known (the default may change)."""
    root = tmp_path_factory.mktemp("classic") / "ws"
    shutil.copytree(demo.workspace, root)
    with Workspace.open(root) as ws:
        return analyze_site(ws, demo.truth.name, detector="cva")


def test_demo_ingests_every_scene_and_leaves_out_the_cloudy_one(demo: DemoResult) -> None:
    assert [o.status for o in demo.ingested] == ["ingested"] * len(demo.truth.scenes)
    with Workspace.open(demo.workspace) as ws:
        observations = ws.catalog.observations(ws.catalog.site(demo.truth.name))
    cloudy = [obs for obs in observations if "cloudy" in obs.flags]
    truth_cloudy = [scene.acquired for scene in demo.truth.scenes if scene.cloudy]
    assert [obs.acquired for obs in cloudy] == truth_cloudy
    assert set(demo.analysis.skipped) == {obs.id for obs in cloudy}
    assert demo.analysis.pairs == len(observations) - len(cloudy) - 1


@pytest.mark.parametrize("kind", ["appeared", "removed"])
def test_demo_events_are_found_and_dated(demo: DemoResult, kind: str) -> None:
    """Each scripted event is found in changes of its kind dated to its interval (last image without
    it, first with it); together they cover most of the events' area. The classic detector misses
    part of a white roof on pale sand (the annex), so single events need only be found, not filled.
    No other persistent change claims much of a building (its shadow and the vehicles beside it may
    touch it: they come and go; a change on the last date is unconfirmed until a later view, and the
    learned detector marks the hall's longer November shadow so)."""
    events = [e for e in demo.truth.events if e.kind == kind]
    assert events
    covered = 0.0
    for event in events:
        dated = [
            c
            for c in demo.analysis.changes
            if (c.date_from, c.date_to) == (event.date_before, event.date_after) and c.kind == kind
        ]
        overlap = unary_union([c.geometry for c in dated]).intersection(event.polygon_utm).area
        assert overlap > 0.3 * event.polygon_utm.area, event.building
        covered += overlap
        others = [c for c in demo.analysis.changes if c.persistence == "persistent" and c not in dated]
        claimed = sum(c.geometry.intersection(event.polygon_utm).area for c in others)
        assert claimed < 0.2 * event.polygon_utm.area, event.building
    assert covered > 0.75 * sum(e.polygon_utm.area for e in events)


def test_demo_report_and_geojson_carry_provenance(demo: DemoResult) -> None:
    html = demo.report.read_text()
    assert "Synthetic demo imagery" in html and "sitewatch demo generator" in html
    for scene in demo.truth.scenes:
        assert scene.acquired.strftime("%Y-%m-%d") in html
    assert demo.analysis.geojson is not None
    features = json.loads(demo.analysis.geojson.read_text())["features"]
    assert len(features) == len(demo.analysis.changes)
    first = features[0]["properties"]
    assert {"kind", "area_m2", "date_from", "date_to", "before_provider", "after_attribution"} <= set(first)
    lon, lat = features[0]["geometry"]["coordinates"][0][0]
    assert demo.truth.site.buffer(0.001).contains(from_bbox(f"{lon},{lat},{lon + 1e-6},{lat + 1e-6}"))


def test_cli_analyze_and_report_json(demo: DemoResult) -> None:
    name = demo.truth.name
    analyzed = run_sitewatch("analyze", "--site", name, "--json", workspace=demo.workspace)
    assert analyzed.returncode == 0, analyzed.stderr
    summary = json.loads(analyzed.stdout)
    assert summary["changes"] == len(demo.analysis.changes) and summary["pairs"] == demo.analysis.pairs
    out = demo.workspace / "custom.html"
    reported = run_sitewatch("report", "--site", name, "-o", out, "--json", workspace=demo.workspace)
    assert reported.returncode == 0, reported.stderr
    assert json.loads(reported.stdout)["report"] == str(out) and out.stat().st_size > 10_000
    missing = run_sitewatch("report", "--site", "nowhere", workspace=demo.workspace)
    assert missing.returncode == 1 and "no site 'nowhere'" in missing.stderr


def test_demo_command_says_synthetic(tmp_path: Path) -> None:
    result = run_sitewatch("demo", tmp_path / "d", "--json")
    assert result.returncode == 0, result.stderr
    assert "SYNTHETIC" in result.stderr
    summary = json.loads(result.stdout)
    assert summary["synthetic"] is True and Path(summary["report"]).is_file()
    again = run_sitewatch("demo", tmp_path / "d")
    assert again.returncode == 1 and "already a sitewatch workspace" in again.stderr


@pytest.mark.datasets
def test_joplin_tornado_damage_is_outlined(datasets: Path, tmp_path: Path) -> None:
    joplin = datasets / "joplin-tornado"
    with Workspace.create(tmp_path / "ws") as ws:
        ws.catalog.add_site(new_site("joplin", from_bbox("-94.497,37.066,-94.488,37.074")))
        ingest(
            ws,
            [
                SceneSource(
                    joplin / "joplin_pre_nad83-utm15n_0.6m.tif", "pre", acquired=datetime(2011, 4, 1, tzinfo=UTC)
                ),
                SceneSource(joplin / "joplin_post_wgs84.tif", "post", acquired=datetime(2011, 5, 24, tzinfo=UTC)),
            ],
        )
        result = analyze_site(ws, "joplin")
        report = write_site_report(ws, "joplin")
        site = ws.catalog.site("joplin")
    assert result.pairs == 1 and len(result.changes) > 50
    changed = sum(c.area_m2 for c in result.changes)
    assert 0.02 < changed / (site.extent_x * site.extent_y) < 0.5  # damage, not the whole site
    assert all(c.date_from.year == 2011 and c.date_to.month == 5 for c in result.changes)
    html = report.read_text()
    assert "2011-04-01" in html and "2011-05-24" in html and html.count("data:image/png;base64") >= 4


@pytest.mark.parametrize("which", ["default", "classic"])
def test_demo_buildings_are_persistent_and_dated_exactly(demo: DemoResult, classic: AnalysisResult, which: str) -> None:
    """The expansion and the demolition are persistent, of their kind, dated to the scripted interval
    with nothing unseen in it; persistent changes away from them are small beside them."""
    changes = demo.analysis.changes if which == "default" else classic.changes
    persistent = [c for c in changes if c.persistence == "persistent"]
    for event in demo.truth.events:
        mine = [c for c in persistent if c.geometry.intersection(event.polygon_utm).area > 0.3 * event.polygon_utm.area]
        assert mine, event.building
        for change in mine:
            assert change.kind == event.kind, event.building
            assert (change.date_from, change.date_to) == (event.date_before, event.date_after), event.building
            assert change.unseen == () and change.persistence_reason == "held"
    events = unary_union([e.polygon_utm for e in demo.truth.events])
    stray = sum(c.area_m2 for c in persistent if not c.geometry.intersects(events))
    assert stray < 0.2 * events.area


def test_demo_vehicles_shadows_and_the_red_trailer_are_transient(demo: DemoResult, classic: AnalysisResult) -> None:
    """With the classic detector: every pair region away from the buildings is transient or unconfirmed,
    most are transient, and the red trailer of 7 July is one transient event that was gone by the next image."""
    events = unary_union([e.polygon_utm for e in demo.truth.events]).buffer(3.0)
    elsewhere = [c for c in classic.changes if not c.geometry.intersects(events)]
    assert elsewhere and all(c.persistence in ("transient", "unconfirmed") for c in elsewhere)
    absorbed = sum(c.attrs["pair_regions"] for c in elsewhere if c.persistence == "transient")
    assert absorbed >= 0.75 * (classic.regions - len(demo.truth.events))
    assert any(c.persistence_reason == "shadow" for c in elsewhere)
    trailer = demo.truth.red_trailer.polygon_utm
    [red] = [
        c
        for c in classic.changes
        if c.date_to == demo.truth.red_trailer_date and c.geometry.intersection(trailer).area > 0.5 * trailer.area
    ]
    assert red.persistence == "transient" and red.attrs["pair_regions"] == 2
    dates = demo.truth.dates
    assert red.ended == dates[dates.index(demo.truth.red_trailer_date) + 1]


def test_demo_cloudy_date_is_left_out_and_widens_the_first_interval(demo: DemoResult, classic: AnalysisResult) -> None:
    cloudy = next(s.acquired for s in demo.truth.scenes if s.cloudy)
    with Workspace.open(demo.workspace) as ws:
        cloudy_id = next(
            o.id for o in ws.catalog.observations(ws.catalog.site(demo.truth.name)) if o.acquired == cloudy
        )
    assert all(cloudy_id not in (c.before_id, c.after_id) for c in classic.changes)
    across = [c for c in classic.changes if c.date_from < cloudy < c.date_to]
    assert across and all(c.unseen == (cloudy,) for c in across)
    assert all((cloudy_id, "unseen") in c.history for c in classic.changes)


def test_demo_geojson_and_report_carry_persistence_and_dating(demo: DemoResult) -> None:
    assert demo.analysis.geojson is not None
    features = json.loads(demo.analysis.geojson.read_text())["features"]
    props = [f["properties"] for f in features]
    assert {p["persistence"] for p in props} <= {"persistent", "transient", "unconfirmed"}
    hall = next(e for e in demo.truth.events if e.building == "new hall")
    headline = [p for p in props if p["persistence"] == "persistent" and p["date_to"] == hall.date_after.isoformat()]
    assert headline and all(p["date_from"] == hall.date_before.isoformat() for p in headline)
    assert all(len(p["history"]) == len(demo.truth.scenes) for p in props)
    assert any(p["unseen_dates"] for p in props) and any(p["ended"] for p in props)
    html = demo.report.read_text()
    assert "Persistent changes" in html and "<summary>Transient activity" in html
    assert "widened: no view of it on 2024-04-02 (cloudy)" in html
    assert html.index("Persistent changes") < html.index("Transient activity")
