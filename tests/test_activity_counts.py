"""Counts per class in the activity series: the detection stage (which dates, which zone, n/a for a
coarse GSD, idempotent re-runs) on a small made-up site, and the count columns on made-up counts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import cv2
import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.features import rasterize
from shapely.geometry import Polygon, box

from sitewatch.activity import INDEX, VEHICLES, ActivityIndex, series_of
from sitewatch.activity.index import COUNT_MAD_FLOOR
from sitewatch.catalog.models import Detection, Zone
from sitewatch.detect import boxes
from sitewatch.detect.base import LARGE, SMALL, ObjectDetector
from sitewatch.detect.inventory import (
    NOT_COUNTED,
    DateCounts,
    SiteCounts,
    count_in_areas,
    inventory_site,
    site_counts,
    source_of,
)
from sitewatch.errors import NotFound
from sitewatch.grid import to_crs
from sitewatch.ingest.pipeline import ingest
from sitewatch.ingest.sources import SceneSource
from sitewatch.sites import from_bbox, new_site
from sitewatch.workspace import Workspace
from tests.conftest import write_tif

START = datetime(2024, 3, 1, 10, tzinfo=UTC)


def det(x: float, y: float, cls: str = SMALL, size: float = 4.0) -> Detection:
    """A detection whose box is centred on (X, Y) metres."""
    return Detection(0, 1, cls, 0.9, box(x - size / 2, y - 1, x + size / 2, y + 1), size, 2.0, "detector:test")


# --- pure: counting by area and the count columns ------------------------------------------------


def test_detections_are_counted_in_the_area_holding_their_centre() -> None:
    areas = {None: box(0, 0, 100, 100), "west": box(0, 0, 50, 100), "east": box(50, 0, 100, 100)}
    found = [det(10, 10), det(49, 50, size=6.0), det(52, 50, LARGE, 12.0), det(90, 90, LARGE), det(150, 50)]
    counts = count_in_areas(found, areas, (SMALL, LARGE))
    assert counts[None] == {SMALL: 2, LARGE: 2}  # the one at x = 150 is off the site
    assert counts["west"] == {SMALL: 2, LARGE: 0}  # the box across the border counts where its centre is
    assert counts["east"] == {SMALL: 0, LARGE: 2}


def weekly(n: int) -> list[datetime]:
    return [START + timedelta(days=7 * i) for i in range(n)]


def counted(when: datetime, i: int, small: int, large: int, clear: float = 1.0) -> DateCounts:
    areas: dict[str | None, dict[str, int]] = {None: {SMALL: small, LARGE: large}, "yard": {SMALL: small, LARGE: 0}}
    return DateCounts(i, when, areas, {None: 1.0, "yard": clear})


def test_count_columns_say_na_with_the_reason_never_zero() -> None:
    dates = weekly(10)
    trucks = [5, 6, 5, 7, 6, 6, 21, 5, 6, 5]  # a surge on the seventh date
    rows = [counted(d, i, small=3 + i % 2, large=n) for i, (d, n) in enumerate(zip(dates, trucks, strict=True))]
    rows[2] = DateCounts(2, dates[2], None, {}, "not resolvable at 4 m (the classic detector needs 1.2 m or finer)")
    rows[4] = DateCounts(4, dates[4], None, {}, None)
    rows[8] = counted(dates[8], 8, 3, 5, clear=0.3)  # the yard mostly hidden by cloud that date
    counts = SiteCounts(source_of("classic"), (SMALL, LARGE), tuple(rows))
    index = ActivityIndex("site", ("yard",), None, None, (), (), 0, 0.0)

    whole = series_of(index, None, counts=counts)
    assert whole.count_columns == (SMALL, LARGE, VEHICLES) and INDEX in whole.columns
    assert whole.counted_by == "detector:classic"
    assert [s.acquired for s in whole.counts_skipped] == [dates[2], dates[4]]
    assert whole.counts_skipped[0].reason.startswith("not resolvable at 4 m")
    assert whole.counts_skipped[1].reason == NOT_COUNTED
    vehicles = whole.columns[VEHICLES]
    assert [p.value for p in vehicles.points] == [
        a.value + b.value for a, b in zip(whole.columns[SMALL].points, whole.columns[LARGE].points, strict=True)
    ]
    assert [p.date for p in whole.columns[LARGE].anomalies] == [dates[6]]
    assert [p.date for p in vehicles.anomalies] == [dates[6]]
    assert whole.columns[SMALL].anomalies == ()  # 3, 4, 3, 4: a wobble of one car is not an anomaly
    assert all(p.mad is None or p.mad >= COUNT_MAD_FLOOR for p in whole.columns[SMALL].points)

    yard = series_of(index, "yard", counts=counts)
    assert [s.acquired for s in yard.counts_skipped] == [dates[2], dates[4], dates[8]]
    assert yard.counts_skipped[-1].reason == "only 30% of the zone clear"
    assert all(p.value == 0 for p in yard.columns[LARGE].points)  # looked and found none: 0, not n/a


def test_no_detector_pass_means_no_count_columns() -> None:
    index = ActivityIndex("site", (), None, None, (), (), 0, 0.0)
    series = series_of(index, None, counts=SiteCounts(None, (), ()))
    assert series.count_columns == () and series.counted_by is None and series.counts_skipped == ()


# --- the stage on a small made-up site -----------------------------------------------------------

EPSG = 32615
SITE_BBOX = "-94.4984,37.0729,-94.4951,37.0755"  # about 300 x 300 m near 367000 E, 4104000 N
ORIGIN = (366700.0, 4104400.0)
GROUND, PAINT = 110, 15


class DarkBoxes(ObjectDetector):
    """A stand-in detector that reports every dark blob as a vehicle, so these tests check the stage
    (where, which dates, what is stored) and not a detector's skill."""

    name = "dark-boxes"
    classes = (SMALL, LARGE)
    work_gsd = 0.5
    max_gsd = 1.2

    def detect_tile(self, rgb: np.ndarray) -> list[boxes.Detection]:
        dark = (rgb.mean(axis=0) < 0.01).astype(np.uint8)  # vehicles are far below the ground's 0.5th percentile
        count, labels = cv2.connectedComponents(dark)
        found = []
        for label in range(1, count):
            rows, cols = np.nonzero(labels == label)
            if len(rows) < 8:  # the ground's darkest noise pixels, not a vehicle
                continue
            rect = cv2.minAreaRect(np.column_stack([cols, rows]).astype(np.float32))
            cls = LARGE if max(rect[1]) * self.work_gsd > 7 else SMALL
            found.append(boxes.Detection(tuple(map(tuple, cv2.boxPoints(rect).tolist())), cls, 0.9))
        return found


def layout() -> dict[str, Polygon]:
    """The site's two zones (its west and east halves, inset 10 m), in UTM."""
    west, south, east, north = to_crs(from_bbox(SITE_BBOX), "EPSG:4326", EPSG).bounds
    middle = (west + east) / 2
    return {
        "west yard": box(west + 10, south + 10, middle - 10, north - 10),
        "east yard": box(middle + 10, south + 10, east - 10, north - 10),
    }


def vehicles(zone: Polygon, cars: int, trucks: int) -> list[Polygon]:
    """Cars (4.5 x 2 m) and trucks (14 x 2.5 m) in a row across ZONE, 12 m apart."""
    x, y = zone.centroid.x - 40, zone.centroid.y
    out = []
    for length, width in [(4.5, 2.0)] * cars + [(14.0, 2.5)] * trucks:
        out.append(box(x, y - length / 2, x + width, y + length / 2))
        x += 12
    return out


def scene(path: Path, when: datetime, gsd: float, objects: list[Polygon]) -> Path:
    side = round(500 / gsd)
    transform = Affine(gsd, 0, ORIGIN[0], 0, -gsd, ORIGIN[1])
    rng = np.random.default_rng(int(when.timestamp()))
    image = np.clip(GROUND + rng.normal(0, 3, (3, side, side)), 0, 255).astype(np.uint8)
    if objects:
        paint = rasterize([(p, 1) for p in objects], out_shape=(side, side), transform=transform).astype(bool)
        image[:, paint] = PAINT
    tags = {"DATETIME": when.isoformat().replace("+00:00", "Z"), "PROVIDER": "test"}
    written = write_tif(path, image, crs=f"EPSG:{EPSG}", transform=transform, tags=tags)
    with rasterio.open(written, "r+") as dst:
        dst.descriptions = ("red", "green", "blue")
    return written


#: Per fine date: (cars, trucks) in the west yard and in the east yard.
PLAN = {START: ((3, 0), (1, 1)), START + timedelta(days=7): ((1, 0), (0, 2))}
COARSE = START + timedelta(days=14)


@pytest.fixture(scope="module")
def site_ws(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    root = tmp_path_factory.mktemp("counts")
    zones = layout()
    ws = Workspace.create(root / "ws")
    ws.catalog.add_site(
        new_site(
            "yards",
            from_bbox(SITE_BBOX),
            zones=[Zone(name, to_crs(zone, EPSG, "EPSG:4326")) for name, zone in zones.items()],
        )
    )
    paths = []
    for when, ((wc, wt), (ec, et)) in PLAN.items():
        drawn = vehicles(zones["west yard"], wc, wt) + vehicles(zones["east yard"], ec, et)
        paths.append(scene(root / f"fine-{when:%d}.tif", when, 0.5, drawn))
    paths.append(scene(root / "coarse.tif", COARSE, 3.0, []))
    ingest(ws, [SceneSource(path=p, origin=str(p)) for p in paths], site_names=["yards"])
    return ws


def test_stage_counts_each_zone_and_says_the_coarse_date_is_not_resolvable(site_ws: Workspace) -> None:
    result = inventory_site(site_ws, "yards", detector=DarkBoxes())
    assert result.source == "detector:dark-boxes" and result.skipped == {}
    [coarse] = result.not_resolvable
    assert coarse.reason is not None and coarse.reason.startswith("not resolvable at 4 m")
    assert coarse.counts == {SMALL: 0, LARGE: 0}
    site = site_ws.catalog.site("yards")
    counts = site_counts(site_ws, site)
    assert counts.source == "detector:dark-boxes" and counts.classes == (SMALL, LARGE)
    by_date = {d.acquired: d for d in counts.dates}
    for when, ((wc, wt), (ec, et)) in PLAN.items():
        seen = by_date[when].counts
        assert seen is not None
        assert seen["west yard"] == {SMALL: wc, LARGE: wt} and seen["east yard"] == {SMALL: ec, LARGE: et}
        assert seen[None] == {SMALL: wc + ec, LARGE: wt + et}
        assert by_date[when].clear[None] > 0.99
    assert by_date[COARSE].counts is None and by_date[COARSE].reason == coarse.reason
    with pytest.raises(NotFound, match="no object detector 'nope'"):
        site_counts(site_ws, site, detector="nope")
    stored = site_ws.catalog.detections(site, source=result.source)
    assert len(stored) == result.detections == sum(w[0] + w[1] + e[0] + e[1] for w, e in PLAN.values())
    truck = next(d for d in stored if d.cls == LARGE)
    assert truck.length_m == pytest.approx(14.0, abs=1.0) and truck.width_m == pytest.approx(2.5, abs=1.0)
    assert any(layout()["east yard"].contains(d.geometry.centroid) for d in stored if d.cls == LARGE)


def test_stage_rerun_keeps_its_passes_and_force_replaces_without_duplicates(site_ws: Workspace) -> None:
    site = site_ws.catalog.site("yards")
    first = inventory_site(site_ws, "yards", detector=DarkBoxes())
    ids = {d.id for d in site_ws.catalog.detections(site, source=first.source)}
    again = inventory_site(site_ws, "yards", detector=DarkBoxes())
    assert again.fresh == 0 and [r.id for r in again.runs] == [r.id for r in first.runs]
    assert {d.id for d in site_ws.catalog.detections(site, source=first.source)} == ids
    forced = inventory_site(site_ws, "yards", detector=DarkBoxes(), force=True)
    assert forced.fresh == len(first.runs)
    stored = site_ws.catalog.detections(site, source=first.source)
    assert len(stored) == len(ids) and not {d.id for d in stored} & ids  # replaced, not added to
    assert len(site_ws.catalog.detection_runs(site, source=first.source)) == len(first.runs)
