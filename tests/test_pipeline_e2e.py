"""The vertical slice end to end: demo imagery and real imagery through ingest, analyze and report."""

from __future__ import annotations

import json
import shutil
import statistics
from datetime import UTC, datetime
from pathlib import Path

import pytest
from shapely.ops import unary_union

from sitewatch.activity import VEHICLES, SiteActivity, analyse, site_activity
from sitewatch.activity.index import count_settings
from sitewatch.analyze import AnalysisResult, analyze_site
from sitewatch.catalog.models import Detection
from sitewatch.demo.build import DemoResult, build_demo
from sitewatch.detect import base
from sitewatch.detect.boxes import oriented_iou
from sitewatch.grid import to_crs
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
    assert demo.analysis.objects is not None
    objects = summary["objects"]
    assert objects["dates"] == len(demo.analysis.objects.runs) and objects["counted_now"] == 0  # the demo counted
    assert objects["detections"] == demo.analysis.objects.detections and objects["not_resolvable"] == {}
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


# --- counts per class in the activity series ------------------------------------------------------

#: Where the default object detector is the training-free baseline (no learned model installed), it
#: misses what a correct detector must show on the demo. It sees luminance only and merges a dark
#: vehicle with its own shadow: the red covered trailer (dark red on pale concrete, 3.6 m tall) is
#: never boxed, and of the loading area's trucks it finds 1/6, 4/5, 7/7, 2/4, 8/22, 1/3 and 2/6 on
#: the clear dates (seed 7), too noisy a series for the surge to clear the anomaly threshold (z 1.8).
#: With the shipped learned detector both tests pass.
NEEDS_A_REAL_DETECTOR = pytest.mark.xfail(
    base.get("auto").name == "classic",
    strict=True,
    reason="the classic detector misses the red trailer and most trucks on the demo",
)


@pytest.fixture(scope="module")
def activity(demo: DemoResult) -> SiteActivity:
    """The demo's activity series as the report reads them (counts from the demo's own analyze)."""
    with Workspace.open(demo.workspace) as ws:
        return site_activity(ws, demo.truth.name, align=False)


def test_demo_vehicle_surge_is_the_loading_areas_busiest_date_in_the_counts(
    demo: DemoResult, activity: SiteActivity
) -> None:
    """The generator parks about four times the usual number of trucks in the loading area on the
    surge date. Robust to a detector that finds only part of the trucks (if it finds a similar share
    on each date, the ratio holds): the surge date has the most vehicles there, and at least twice
    the median of the other dates. The cloudy date has no count (n/a), not 0. And the generator's
    own counts, judged as the counts are, flag the surge as the one anomaly: what a correct detector
    must show (asserted on the measured series below)."""
    surge = demo.truth.surge_date
    loading = activity.area("loading area")
    assert loading.counted_by == f"detector:{base.get('auto').name}"
    counts = {p.date: p.value for p in loading.columns[VEHICLES].points}
    others = [value for when, value in counts.items() if when != surge]
    assert counts[surge] > max(others) and counts[surge] >= 2 * statistics.median(others)
    cloudy = [s.acquired for s in demo.truth.scenes if s.cloudy]
    assert [s.acquired for s in loading.counts_skipped] == cloudy
    assert all("cloudy" in s.reason for s in loading.counts_skipped) and not set(cloudy) & set(counts)
    clear = [s for s in demo.truth.scenes if not s.cloudy]
    truth = analyse([s.acquired for s in clear], [s.vehicle_count("loading area") for s in clear], count_settings(None))
    assert [p.date for p in truth.anomalies] == [surge] and truth.anomalies[0].anomaly == "high"


@NEEDS_A_REAL_DETECTOR
def test_demo_vehicle_surge_is_a_count_anomaly(demo: DemoResult, activity: SiteActivity) -> None:
    vehicles = activity.area("loading area").columns[VEHICLES]
    assert [(p.date, p.anomaly) for p in vehicles.anomalies] == [(demo.truth.surge_date, "high")]


def _detections_on_the_red_trailer(demo: DemoResult, activity: SiteActivity, when: datetime) -> list[Detection]:
    """Stored detections (any class) on the red trailer's true box on date WHEN: oriented IoU over
    0.3, or the centre within 3 m; asserted to lie in the trailer's zone."""
    truth = demo.truth.red_trailer
    with Workspace.open(demo.workspace) as ws:
        site = ws.catalog.site(demo.truth.name)
        obs = next(o for o in ws.catalog.observations(site) if o.acquired == when)
        found = ws.catalog.detections(site, source=activity.area(None).counted_by, observation_id=obs.id)
    zone = to_crs(next(z.geometry for z in site.zones if z.name == truth.zone), "EPSG:4326", site.epsg)
    on_it = [
        d
        for d in found
        if oriented_iou(list(d.geometry.exterior.coords)[:4], truth.corners_utm) > 0.3
        or d.geometry.centroid.distance(truth.polygon_utm.centroid) < 3.0
    ]
    assert all(zone.contains(d.geometry.centroid) for d in on_it)
    return on_it


@NEEDS_A_REAL_DETECTOR
def test_demo_red_trailer_is_sighted_on_its_date_in_the_loading_area(demo: DemoResult, activity: SiteActivity) -> None:
    """The detector boxes the red covered trailer on its date, in the loading area (other trucks use
    the same bay on other dates). That `find --color red` ranks the same trailer first, on this date
    and zone, is tests/test_find.py::test_demo_red_trailer_is_the_top_result_on_its_date_and_zone."""
    assert _detections_on_the_red_trailer(demo, activity, demo.truth.red_trailer_date)


@pytest.mark.xfail(
    strict=True,
    reason="the learned detector calls the red covered trailer a container (score 0.41, 11.8 m): "
    "from above a tarp-covered trailer and a red container differ only by the cab",
)
def test_demo_red_trailer_is_classed_a_large_vehicle(demo: DemoResult, activity: SiteActivity) -> None:
    on_it = _detections_on_the_red_trailer(demo, activity, demo.truth.red_trailer_date)
    assert any(d.cls == "large-vehicle" for d in on_it)
