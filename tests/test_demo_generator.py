"""The demo generator: valid, deterministic scenes that show exactly the scripted, recorded changes."""

from __future__ import annotations

import itertools
from datetime import UTC
from pathlib import Path

import cv2
import numpy as np
import pytest
import shapely
from affine import Affine
from numpy.typing import NDArray
from pyproj import Transformer
from rasterio.features import rasterize
from shapely.geometry import Polygon, box
from shapely.geometry.base import BaseGeometry

from sitewatch.demo import DemoSite, generate
from sitewatch.errors import InputError
from sitewatch.ingest.metadata import acquired_from_tags, provenance_from_tags
from sitewatch.io.raster import open_raster

RGBImage = NDArray[np.uint8]


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> DemoSite:
    """The default demo (seed 7, 1024 px at 0.5 m), generated once for the module."""
    return generate(tmp_path_factory.mktemp("demo"))


@pytest.fixture(scope="module")
def images(demo: DemoSite) -> list[RGBImage]:
    """Every scene's pixels as (rows, cols, RGB)."""
    return [_read(scene.path) for scene in demo.scenes]


def _read(path: Path) -> RGBImage:
    with open_raster(path) as src:
        return np.moveaxis(src.read(), 0, -1)


def _to_utm(demo: DemoSite, geometry: BaseGeometry) -> BaseGeometry:
    to_utm = Transformer.from_crs(4326, demo.epsg, always_xy=True)
    return shapely.transform(geometry, lambda xy: np.column_stack(to_utm.transform(xy[:, 0], xy[:, 1])))


def _mask(demo: DemoSite, polygon: BaseGeometry, index: int, erode_px: int = 0) -> NDArray[np.bool_]:
    """POLYGON (UTM) on scene INDEX's true pixels, shrunk by ERODE_PX to keep clear of its edges."""
    burned = rasterize([(polygon, 1)], out_shape=(demo.height, demo.width), transform=demo.scene_transform(index))
    mask = np.asarray(burned, np.uint8)
    if erode_px:
        mask = cv2.erode(mask, np.ones((2 * erode_px + 1, 2 * erode_px + 1), np.uint8))
    return mask.astype(bool)


def _mean(image: RGBImage, mask: NDArray[np.bool_]) -> NDArray[np.float64]:
    assert mask.sum() > 20
    return np.asarray(image[mask].mean(axis=0), np.float64)


def _footprint(transform: Affine, width: int, height: int) -> Polygon:
    left, top = transform @ (0, 0)
    right, bottom = transform @ (width, height)
    return box(min(left, right), min(top, bottom), max(left, right), max(top, bottom))


def _clear(demo: DemoSite) -> list[int]:
    return [s.index for s in demo.scenes if not s.cloudy]


def test_scenes_are_tagged_georeferenced_geotiffs_in_date_order(demo: DemoSite) -> None:
    dates = demo.dates
    assert len(dates) == 8
    assert all(d.tzinfo == UTC for d in dates)
    assert all(a < b for a, b in itertools.pairwise(dates))
    assert 240 <= (dates[-1] - dates[0]).days <= 300
    for scene in demo.scenes:
        assert scene.path.name == f"demo_{scene.acquired:%Y-%m-%d}.tif"
        with open_raster(scene.path) as src:
            profile, tags = src.profile, src.tags()
            assert src.driver == "GTiff"
            assert (src.count, src.dtypes, src.width, src.height) == (3, ("uint8",) * 3, 1024, 1024)
            assert src.crs.to_epsg() == demo.epsg == 32637
            assert src.transform == demo.transform
            assert src.res == (0.5, 0.5)
            assert profile["compress"] == "deflate"
            assert profile["tiled"] and src.block_shapes[0] == (256, 256)
        assert acquired_from_tags(tags, str(scene.path)) == scene.acquired
        assert tags["TIFFTAG_DATETIME"] == f"{scene.acquired:%Y:%m:%d %H:%M:%S}"
        assert tags["SYNTHETIC"] == "yes"
        assert provenance_from_tags(tags) == {
            "provider": "sitewatch demo generator (synthetic imagery)",
            "sensor": tags["SENSOR"],
            "licence": "CC0-1.0",
            "attribution": tags["ATTRIBUTION"],
        }
        assert tags["SENSOR"] and "synthetic" in tags["ATTRIBUTION"].lower()


def test_same_seed_same_pixels_and_truth_other_seed_differs(tmp_path: Path) -> None:
    first = generate(tmp_path / "a", seed=3, size_px=400, gsd=1.0)
    again = generate(tmp_path / "b", seed=3, size_px=400, gsd=1.0)
    other = generate(tmp_path / "c", seed=4, size_px=400, gsd=1.0)
    for a, b, c in zip(first.scenes, again.scenes, other.scenes, strict=True):
        pixels = _read(a.path)
        assert pixels.shape == (400, 400, 3)
        assert np.array_equal(pixels, _read(b.path))
        assert not np.array_equal(pixels, _read(c.path))
        assert (a.vehicles, a.containers, a.shift_px) == (b.vehicles, b.containers, b.shift_px)
        assert a.vehicles != c.vehicles
    assert [e.polygon_utm.wkt for e in first.events] == [e.polygon_utm.wkt for e in again.events]


def test_a_scene_too_small_for_the_site_is_refused_before_writing(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="too small"):
        generate(tmp_path / "demo", size_px=500)
    assert not (tmp_path / "demo").exists()


def test_site_and_zones_lie_inside_every_scene(demo: DemoSite) -> None:
    site = _to_utm(demo, demo.site)
    assert 40_000 < site.area < 80_000
    assert {"loading area", "storage yard", "assembly hall"} <= set(demo.zones)
    for index in range(len(demo.scenes)):
        for transform in (demo.transform, demo.scene_transform(index)):
            assert site.buffer(10).within(_footprint(transform, demo.width, demo.height))
    zones = [_to_utm(demo, z) for z in demo.zones.values()]
    assert all(z.within(site) for z in zones)
    assert all(a.intersection(b).area < 1 for i, a in enumerate(zones) for b in zones[i + 1 :])
    assert all(b.polygon_utm.within(site) for b in demo.buildings)


def test_new_buildings_are_bare_ground_before_and_built_after(demo: DemoSite, images: list[RGBImage]) -> None:
    appeared = [e for e in demo.events if e.kind == "appeared"]
    assert appeared
    for event in appeared:
        before, after = demo.dates.index(event.date_before), demo.dates.index(event.date_after)
        assert after == before + 1
        inside = _mask(demo, event.polygon_utm, before, erode_px=2)
        ring = _mask(demo, event.polygon_utm.buffer(6).difference(event.polygon_utm.buffer(2)), before)
        bare = _mean(images[before], inside)
        assert np.linalg.norm(bare - _mean(images[before], ring)) < 25  # looks like the ground around it
        built = _mean(images[after], _mask(demo, event.polygon_utm, after, erode_px=2))
        assert np.linalg.norm(built - bare) > 30  # a white roof on pale sand differs least
        assert not demo.building_mask(before)[inside].any()
        assert demo.building_mask(after)[_mask(demo, event.polygon_utm, after, erode_px=1)].all()


def test_demolished_building_leaves_rubble(demo: DemoSite, images: list[RGBImage]) -> None:
    removed = [e for e in demo.events if e.kind == "removed"]
    assert len(removed) == 1
    event = removed[0]
    appeared_after = max(e.date_after for e in demo.events if e.kind == "appeared")
    assert event.date_before > appeared_after
    before, after = demo.dates.index(event.date_before), demo.dates.index(event.date_after)
    assert after == before + 1
    roof = images[before][_mask(demo, event.polygon_utm, before, erode_px=2)].astype(float)
    rubble = images[after][_mask(demo, event.polygon_utm, after, erode_px=2)].astype(float)
    assert np.linalg.norm(roof.mean(axis=0) - rubble.mean(axis=0)) > 30
    assert rubble.std(axis=0).mean() > 1.5 * roof.std(axis=0).mean()  # broken, heaped ground
    assert demo.building_mask(before)[_mask(demo, event.polygon_utm, before, erode_px=1)].all()
    assert not demo.building_mask(after)[_mask(demo, event.polygon_utm, after)].any()


def test_change_masks_hold_exactly_the_events(demo: DemoSite) -> None:
    pixel_area = demo.gsd**2
    for before in range(len(demo.scenes) - 1):
        events = [e for e in demo.events if e.date_after == demo.dates[before + 1]]
        changed = demo.change_mask(before, before + 1)
        assert changed.shape == (demo.height, demo.width)
        expected = sum(e.area_m2 for e in events) / pixel_area
        assert changed.sum() == pytest.approx(expected, rel=0.03, abs=0)
    assert demo.change_mask(0, 7).sum() == pytest.approx(sum(e.area_m2 for e in demo.events) / pixel_area, rel=0.03)
    assert not demo.change_mask(4, 4).any()
    standing = sum(b.polygon_utm.area for b in demo.buildings if b.present_on(0))
    assert demo.building_mask(0).sum() == pytest.approx(standing / pixel_area, rel=0.03)


def test_one_cloudy_date_is_white_over_its_cloud_fraction(demo: DemoSite, images: list[RGBImage]) -> None:
    cloudy = [s for s in demo.scenes if s.cloudy]
    assert len(cloudy) == 1
    scene = cloudy[0]
    assert 0.3 <= scene.cloud_fraction <= 0.5
    clouds = demo.cloud_mask(scene.index)
    assert clouds.mean() == pytest.approx(scene.cloud_fraction, abs=0.01)
    assert not demo.cloud_mask(0).any()

    def whitish(image: RGBImage) -> NDArray[np.bool_]:
        low, high = image.min(axis=2).astype(int), image.max(axis=2).astype(int)
        return (low > 200) & (high - low < 30)

    image = images[scene.index]
    assert whitish(image).mean() == pytest.approx(scene.cloud_fraction, abs=0.1)
    assert whitish(image)[clouds].mean() > 0.9
    for index in _clear(demo):
        assert whitish(images[index]).mean() < 0.05
        assert _mean(image, clouds).mean() > _mean(images[index], clouds).mean() + 40


def test_surge_date_has_several_times_the_usual_vehicles(demo: DemoSite, images: list[RGBImage]) -> None:
    counts = [s.vehicle_count("loading area") for s in demo.scenes]
    surge = demo.dates.index(demo.surge_date)
    usual = [n for i, n in enumerate(counts) if i != surge]
    assert counts[surge] >= 3 * np.median(usual)
    assert max(usual) < counts[surge] / 2
    # The rendered loading area is that much busier: pixels far from the bare concrete's colour.
    zone = _to_utm(demo, demo.zones["loading area"])

    def busy(index: int) -> float:
        pixels = images[index][_mask(demo, zone, index, erode_px=2)].astype(int)
        return float((np.abs(pixels - np.median(pixels, axis=0)).max(axis=1) > 40).mean())

    quiet = [busy(i) for i in _clear(demo) if i != surge]
    assert busy(surge) > 2.5 * np.median(quiet)


def test_red_covered_trailer_is_seen_on_one_date_at_its_place(demo: DemoSite, images: list[RGBImage]) -> None:
    seen = [s.index for s in demo.scenes if any(v.kind == "red covered trailer" for v in s.vehicles)]
    red_date = demo.dates.index(demo.red_trailer_date)
    assert seen == [red_date]
    trailer = demo.red_trailer
    assert trailer.cls == "large-vehicle" and trailer.zone == "loading area"
    assert trailer.length_m == pytest.approx(14) and trailer.width_m == pytest.approx(2.5)
    assert trailer.polygon_utm.within(_to_utm(demo, demo.zones["loading area"]))
    sides = np.linalg.norm(np.diff(np.array(trailer.corners_px + trailer.corners_px[:1]), axis=0), axis=1)
    assert sorted(sides)[::2] == pytest.approx([2.5 / demo.gsd, 14 / demo.gsd], rel=0.01)

    def red_share(index: int, where: NDArray[np.bool_]) -> float:
        hsv = cv2.cvtColor(images[index], cv2.COLOR_RGB2HSV)
        hue, sat, val = hsv[..., 0], hsv[..., 1], hsv[..., 2]
        red = ((hue < 10) | (hue > 170)) & (sat > 120) & (val > 90)
        return float(red[where].mean())

    box_px = np.zeros((demo.height, demo.width), np.uint8)
    cv2.fillPoly(box_px, [np.round(np.array(trailer.corners_px)).astype(np.int32)], 1)
    on_ground = _mask(demo, trailer.polygon_utm, red_date)
    assert (box_px.astype(bool) & on_ground).sum() > 0.8 * on_ground.sum()  # pixel and UTM corners agree
    assert red_share(red_date, _mask(demo, trailer.polygon_utm, red_date, erode_px=1)) > 0.6
    for index in _clear(demo):
        if index != red_date:
            assert red_share(index, _mask(demo, trailer.polygon_utm, index)) < 0.05


def test_recorded_misregistration_matches_the_pixels(demo: DemoSite, images: list[RGBImage]) -> None:
    size = 256
    site = _to_utm(demo, demo.site)
    corners = [(row, col) for row in (0, demo.height - size) for col in (0, demo.width - size)]
    # Terrain only: a corner window clear of the site, where nothing changes but the light.
    row, col = next(
        (r, c)
        for r, c in corners
        if not _footprint(demo.transform @ Affine.translation(c, r), size, size).buffer(5).intersects(site)
    )
    window = cv2.createHanningWindow((size, size), cv2.CV_32F)
    clear = _clear(demo)
    reference = clear[0]

    def grey(index: int) -> NDArray[np.float32]:
        return images[index][row : row + size, col : col + size].astype(np.float32).mean(axis=2)

    shifts = []
    for index in clear[1:]:
        (dx, dy), _ = cv2.phaseCorrelate(grey(reference), grey(index), window)
        expected = np.subtract(demo.scenes[index].shift_px, demo.scenes[reference].shift_px)
        assert (dx, dy) == pytest.approx(tuple(expected), abs=0.3)
        shifts.append(float(np.hypot(*expected)))
    assert max(shifts) > 0.5  # the dates really are misregistered


def test_vehicles_come_and_go_and_have_real_sizes(demo: DemoSite) -> None:
    lengths = {"small-vehicle": (4.2, 5.3), "large-vehicle": (12.0, 16.0), "container": (6.0, 12.2)}
    for scene in demo.scenes:
        for thing in (*scene.vehicles, *scene.containers):
            low, high = lengths[thing.cls]
            assert low <= thing.length_m <= high
            sides = np.linalg.norm(np.diff(np.array(thing.corners_px + thing.corners_px[:1]), axis=0), axis=1)
            assert max(sides) == pytest.approx(thing.length_m / demo.gsd, rel=0.01)
    assert all(s.vehicle_count("parking") >= 10 for s in demo.scenes)
    for a, b in itertools.pairwise(demo.scenes):
        # Vehicles are transient (few stand in the same place on the next date); containers mostly stay.
        cars_a = {(round(v.corners_utm[0][0]), round(v.corners_utm[0][1])) for v in a.vehicles}
        cars_b = {(round(v.corners_utm[0][0]), round(v.corners_utm[0][1])) for v in b.vehicles}
        assert len(cars_a & cars_b) < 0.2 * len(cars_a)
        boxes_a = {c.corners_utm for c in a.containers}
        assert len(boxes_a & {c.corners_utm for c in b.containers}) > 0.5 * len(boxes_a)
