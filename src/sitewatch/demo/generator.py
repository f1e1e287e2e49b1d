"""A seeded synthetic demo site: dated GeoTIFF scenes of one walled compound, with the ground truth.

The demo is what a new user runs first and what the tests score against, so every change in it is
scripted and recorded: buildings that appear and one that is demolished, a vehicle surge, a red
covered trailer seen on one date, a cloudy date, and the misregistration and illumination changes
that real multi-date imagery has. Pixels are rendered with numpy and OpenCV from a plan of what
exists on which date, so the plan *is* the ground truth.

Geometry is laid out in compound-local metres (``u`` along the compound, ``v`` across it, origin at
the compound's centre), rotated by a seeded angle onto a north-up UTM grid. Pixel coordinates follow
the register contract: x = column, y = row, the centre of the top-left pixel at (0, 0).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import cv2
import numpy as np
import rasterio
import shapely
from affine import Affine
from numpy.typing import NDArray
from pyproj import Transformer
from rasterio.features import rasterize
from shapely.geometry import Polygon

from sitewatch.errors import InputError
from sitewatch.io.raster import gdal_env
from sitewatch.workspace import atomic_path

ObjectClass = Literal["small-vehicle", "large-vehicle", "container"]
EventKind = Literal["appeared", "removed"]
RGB = tuple[int, int, int]
Points = NDArray[np.float64]
Image = NDArray[np.float32]

EPSG = 32637
#: Centre of the compound in EPSG:32637 (open desert at about 28.1° N, 38.35° E).
SITE_CENTRE = (436_150.0, 3_108_450.0)
PROVIDER = "sitewatch demo generator (synthetic imagery)"
SENSOR = "SW-SIM RGB frame camera (synthetic)"
LICENSE = "CC0-1.0"
ATTRIBUTION = "Synthetic imagery rendered by the sitewatch demo generator; no real place or facility is shown"

#: Acquisition times (about 10:30 local solar time, as a sun-synchronous satellite would see it).
DATES: tuple[datetime, ...] = (
    datetime(2024, 3, 5, 7, 58, 12, tzinfo=UTC),
    datetime(2024, 4, 2, 8, 3, 40, tzinfo=UTC),
    datetime(2024, 5, 9, 7, 55, 31, tzinfo=UTC),
    datetime(2024, 6, 11, 8, 6, 2, tzinfo=UTC),
    datetime(2024, 7, 7, 8, 1, 47, tzinfo=UTC),
    datetime(2024, 8, 20, 7, 57, 19, tzinfo=UTC),
    datetime(2024, 10, 1, 8, 4, 55, tzinfo=UTC),
    datetime(2024, 11, 26, 8, 0, 26, tzinfo=UTC),
)
CLOUDY_INDEX = 1
EXPANSION_INDEX = 3  # first date with the new buildings
RED_TRAILER_INDEX = 4
SURGE_INDEX = 5
DEMOLITION_INDEX = 6  # first date without the old warehouse

# Independent random streams, so that one part of the scene can be re-rendered on its own.
_LAYOUT, _TERRAIN, _SCENARIO, _ROOFS, _CLOUDS, _SENSOR = range(1, 7)

COMPOUND = (-120.0, -90.0, 120.0, 90.0)
GATE = (30.0, 42.0)  # gap in the south wall, u range
SITE_MARGIN_M = 15.0
ZONES: dict[str, tuple[float, float, float, float]] = {
    "loading area": (52.0, 16.0, 112.0, 86.0),
    "storage yard": (-30.0, 16.0, 26.0, 86.0),
    "assembly hall": (-112.0, -86.0, -30.0, -36.0),
    "parking": (-108.0, -34.0, -40.0, -1.0),
}

SAND_LIGHT = (210, 188, 152)
SAND_DARK = (172, 142, 106)
SILT = (196, 180, 150)
GRADED = (198, 184, 158)
SHRUB = (88, 94, 62)
ASPHALT = (86, 88, 92)
CONCRETE = (172, 170, 163)
GRAVEL = (160, 153, 140)
RUBBLE = (146, 137, 124)
WALL = (204, 198, 186)
WINDOW = (32, 36, 42)
RED_TARP = (206, 26, 30)
SHADOW_TINT = np.array([0.40, 0.44, 0.56], np.float32)
HAZE = np.array([214, 218, 226], np.float32)

CAR_COLOURS: tuple[tuple[RGB, float], ...] = (
    ((226, 226, 222), 0.30),
    ((170, 172, 176), 0.20),
    ((104, 107, 112), 0.12),
    ((34, 36, 40), 0.18),
    ((36, 56, 96), 0.07),
    ((118, 32, 34), 0.05),
    ((190, 176, 146), 0.05),
    ((52, 82, 60), 0.03),
)
CAB_COLOURS: tuple[RGB, ...] = ((232, 232, 228), (40, 72, 150), (120, 122, 126), (214, 180, 44), (42, 98, 60))
TRAILER_COLOURS: tuple[RGB, ...] = (
    (218, 218, 212),
    (218, 218, 212),
    (178, 178, 174),
    (58, 92, 150),
    (72, 110, 76),
    (124, 120, 112),
)
CONTAINER_COLOURS: tuple[RGB, ...] = (
    (142, 58, 42),
    (38, 78, 140),
    (42, 98, 64),
    (204, 112, 46),
    (128, 130, 132),
    (218, 218, 212),
    (204, 172, 46),
    (32, 118, 120),
)


# ---------------------------------------------------------------------------------------------
# Public records: the ground truth
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DemoObject:
    """One vehicle or container on one date, as a detector should report it (DOTA-style box)."""

    cls: ObjectClass
    kind: str  # "car", "van", "semi-trailer", "red covered trailer", "container 20ft", ...
    zone: str | None  # the zone it stands in, None outside every zone (on the access road)
    corners_px: tuple[tuple[float, float], ...]  # four corners around the box, scene pixels
    corners_utm: tuple[tuple[float, float], ...]  # the same corners, true ground position (E, N)
    colour: RGB  # roof, tarp or body colour as rendered before illumination
    length_m: float
    width_m: float

    @property
    def centre_px(self) -> tuple[float, float]:
        """Centre of the box in scene pixels."""
        xs, ys = zip(*self.corners_px, strict=True)
        return (sum(xs) / 4, sum(ys) / 4)

    @property
    def polygon_utm(self) -> Polygon:
        """The box on the ground, in the site's UTM CRS."""
        return Polygon(self.corners_utm)


@dataclass(frozen=True)
class DemoBuilding:
    """A building of the site and the dates it stands on (indexes into ``DemoSite.scenes``)."""

    name: str
    polygon_utm: Polygon
    height_m: float
    roof_colour: RGB
    appears: int = 0  # first date it stands on
    removed: int | None = None  # first date it no longer stands on

    def present_on(self, index: int) -> bool:
        """Whether the building stands on date INDEX."""
        return self.appears <= index and (self.removed is None or index < self.removed)


@dataclass(frozen=True)
class DemoEvent:
    """A persistent change: the last date without it and the first date with it."""

    kind: EventKind
    polygon_utm: Polygon
    date_before: datetime
    date_after: datetime
    building: str

    @property
    def area_m2(self) -> float:
        """Footprint area in square metres."""
        return float(self.polygon_utm.area)


@dataclass(frozen=True)
class DemoScene:
    """One written scene and what is in it.

    ``shift_px`` is the misregistration in the register contract's convention: a ground feature
    at pixel (x, y) of the georeferenced grid appears in this scene at (x + dx, y + dy). The first
    scene has none, so it is the natural reference.
    """

    index: int
    path: Path
    acquired: datetime
    shift_px: tuple[float, float]
    cloudy: bool
    cloud_fraction: float
    sun_azimuth: float  # degrees clockwise from north
    sun_elevation: float  # degrees above the horizon
    vehicles: tuple[DemoObject, ...]
    containers: tuple[DemoObject, ...]

    def vehicle_count(self, zone: str | None = None) -> int:
        """Vehicles on this date, in one zone or (None) anywhere in the scene."""
        return sum(1 for v in self.vehicles if zone is None or v.zone == zone)


@dataclass(frozen=True)
class DemoSite:
    """The demo site, its scenes and the ground truth the tests and the evaluation score against."""

    name: str
    seed: int
    epsg: int
    width: int
    height: int
    gsd: float
    transform: Affine  # the grid every scene claims (pixel corners); see scene_transform()
    site: Polygon  # WGS84, a little larger than the compound
    zones: Mapping[str, Polygon]  # WGS84
    scenes: tuple[DemoScene, ...]
    buildings: tuple[DemoBuilding, ...]
    events: tuple[DemoEvent, ...]
    surge_date: datetime
    red_trailer_date: datetime
    red_trailer: DemoObject
    _cloud_shape: tuple[int, int] = field(default=(0, 0), repr=False)

    @property
    def dates(self) -> tuple[datetime, ...]:
        """Acquisition times, in order."""
        return tuple(s.acquired for s in self.scenes)

    def scene_transform(self, index: int) -> Affine:
        """Where scene INDEX's pixels truly lie: its claimed grid corrected by its shift."""
        dx, dy = self.scenes[index].shift_px
        return self.transform * Affine.translation(-dx, -dy)

    def building_mask(self, index: int) -> NDArray[np.bool_]:
        """Buildings standing on date INDEX, on scene INDEX's pixels (its shift applied)."""
        polygons = [b.polygon_utm for b in self.buildings if b.present_on(index)]
        return self._rasterize(polygons, index)

    def change_mask(self, before: int, after: int) -> NDArray[np.bool_]:
        """Persistent change (buildings only) between two dates, on scene BEFORE's pixels.

        This is what ``sitewatch change BEFORE AFTER`` is scored against: its mask has BEFORE's
        grid, and vehicles and containers come and go, so they are not change.
        """
        polygons = [
            b.polygon_utm for b in self.buildings if b.present_on(before) != b.present_on(after)
        ]
        return self._rasterize(polygons, before)

    def cloud_mask(self, index: int) -> NDArray[np.bool_]:
        """Thick cloud on scene INDEX's pixels (all False on a clear date)."""
        scene = self.scenes[index]
        if not scene.cloudy:
            return np.zeros((self.height, self.width), np.bool_)
        field_ = _cloud_field(self.seed, index, (self.height, self.width), self.gsd)
        return _cloud_opacity(field_, (self.height, self.width), scene.cloud_fraction, (0, 0)) > 0.5

    def _rasterize(self, polygons: Sequence[Polygon], index: int) -> NDArray[np.bool_]:
        if not polygons:
            return np.zeros((self.height, self.width), np.bool_)
        burned = rasterize(
            [(p, 1) for p in polygons],
            out_shape=(self.height, self.width),
            transform=self.scene_transform(index),
            dtype="uint8",
        )
        return np.asarray(burned, np.uint8).astype(np.bool_)


# ---------------------------------------------------------------------------------------------
# The frame: compound-local metres -> nominal pixels -> UTM
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Frame:
    width: int
    height: int
    gsd: float
    angle: float  # rotation of the compound on the image, radians
    transform: Affine

    @property
    def shape(self) -> tuple[int, int]:
        return (self.height, self.width)

    def px(self, local: Points) -> Points:
        """Nominal pixel coordinates (pixel-centre convention) of compound-local points."""
        c, s = math.cos(self.angle), math.sin(self.angle)
        u, v = local[:, 0], local[:, 1]
        x = (self.width - 1) / 2 + (c * u - s * v) / self.gsd
        y = (self.height - 1) / 2 + (s * u + c * v) / self.gsd
        return np.column_stack([x, y])

    def utm(self, px: Points) -> Points:
        """UTM coordinates of nominal pixel coordinates."""
        east = self.transform.c + (px[:, 0] + 0.5) * self.transform.a
        north = self.transform.f + (px[:, 1] + 0.5) * self.transform.e
        return np.column_stack([east, north])

    def polygon_utm(self, local: Points) -> Polygon:
        return Polygon(self.utm(self.px(local)))

    def image_direction(self, local_direction: tuple[float, float]) -> tuple[float, float]:
        """A compound-local unit vector on the image (both y-down)."""
        c, s = math.cos(self.angle), math.sin(self.angle)
        u, v = local_direction
        return (c * u - s * v, s * u + c * v)


def _make_frame(seed: int, size_px: int, gsd: float) -> _Frame:
    """The scene grid, with the compound rotated by a seeded angle; refuses grids too small for it."""
    if size_px <= 0 or not gsd > 0:
        raise InputError("demo", f"size_px ({size_px}) and gsd ({gsd}) must be positive")
    angle = math.radians(float(np.random.default_rng([seed, _LAYOUT]).uniform(-15.0, 15.0)))
    extent = size_px * gsd
    transform = Affine(gsd, 0.0, SITE_CENTRE[0] - extent / 2, 0.0, -gsd, SITE_CENTRE[1] + extent / 2)
    frame = _Frame(size_px, size_px, gsd, angle, transform)
    site = frame.px(_rect(*_site_rect()))
    margin = 10.0 / gsd + 3  # room for the misregistration and a strip of terrain
    if site.min() < margin or site.max() > size_px - 1 - margin:
        raise InputError(
            "demo",
            f"a {size_px} px scene at {gsd} m is {extent:.0f} m across, too small for the "
            f"{2 * (COMPOUND[2] + SITE_MARGIN_M):.0f} m demo site (use more pixels or a coarser gsd)",
        )
    return frame


def _site_rect() -> tuple[float, float, float, float]:
    u0, v0, u1, v1 = COMPOUND
    m = SITE_MARGIN_M
    return (u0 - m, v0 - m, u1 + m, v1 + m)


def _rect(u0: float, v0: float, u1: float, v1: float) -> Points:
    return np.array([[u0, v0], [u1, v0], [u1, v1], [u0, v1]], np.float64)


def _ellipse(cu: float, cv: float, ru: float, rv: float, n: int = 24) -> Points:
    t = np.linspace(0.0, 2 * math.pi, n, endpoint=False)
    return np.column_stack([cu + ru * np.cos(t), cv + rv * np.sin(t)])


# ---------------------------------------------------------------------------------------------
# The scenario: what exists on which date
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _BuildingSpec:
    name: str
    rect: tuple[float, float, float, float]  # compound-local u0, v0, u1, v1
    height: float
    roof: RGB
    style: Literal["gable", "hall", "flat", "tank"]
    units: int = 0  # rooftop plant (air conditioners) on flat roofs
    appears: int = 0
    removed: int | None = None

    def footprint(self) -> Points:
        u0, v0, u1, v1 = self.rect
        if self.style == "tank":
            return _ellipse((u0 + u1) / 2, (v0 + v1) / 2, (u1 - u0) / 2, (v1 - v0) / 2, 32)
        return _rect(*self.rect)


BUILDINGS: tuple[_BuildingSpec, ...] = (
    _BuildingSpec("assembly hall", (-108.0, -80.0, -36.0, -42.0), 14.0, (178, 181, 186), "hall"),
    _BuildingSpec("offices", (-24.0, -80.0, 8.0, -64.0), 9.0, (214, 210, 200), "flat", units=4),
    _BuildingSpec("workshop", (-24.0, -52.0, 14.0, -30.0), 7.0, (92, 112, 134), "gable"),
    _BuildingSpec("stores", (31.0, -44.0, 48.0, -28.0), 5.0, (96, 124, 92), "flat", units=1),
    _BuildingSpec("water tank", (-35.0, -19.0, -26.0, -10.0), 9.0, (232, 232, 228), "tank"),
    _BuildingSpec("guard house", (44.0, 78.0, 50.0, 84.0), 3.2, (226, 224, 218), "flat"),
    _BuildingSpec(
        "old warehouse", (56.0, -80.0, 108.0, -52.0), 10.0, (152, 86, 60), "gable", removed=DEMOLITION_INDEX
    ),
    _BuildingSpec(
        "new hall", (-108.0, 28.0, -66.0, 56.0), 11.0, (66, 106, 160), "gable", appears=EXPANSION_INDEX
    ),
    _BuildingSpec(
        "new annex", (-58.0, 32.0, -42.0, 48.0), 6.0, (230, 228, 222), "flat", 2, appears=EXPANSION_INDEX
    ),
)

#: Paved and gravelled ground, drawn once: (rect, colour, texture amplitude).
SURFACES: tuple[tuple[tuple[float, float, float, float], RGB, float], ...] = (
    ((-112.0, -86.0, -30.0, -36.0), CONCRETE, 0.03),  # hall apron
    ((52.0, -86.0, 112.0, -46.0), CONCRETE, 0.03),  # warehouse apron
    (ZONES["loading area"], CONCRETE, 0.035),
    (ZONES["storage yard"], GRAVEL, 0.08),
    (ZONES["parking"], ASPHALT, 0.05),
    ((-112.0, 8.0, 112.0, 16.0), ASPHALT, 0.05),  # east-west road
    ((20.0, -86.0, 28.0, 8.0), ASPHALT, 0.05),  # road to the offices and the warehouse
    ((-80.0, -1.0, -72.0, 8.0), ASPHALT, 0.05),  # parking entrance
    ((GATE[0] + 1.0, 8.0, GATE[1] - 1.0, 900.0), ASPHALT, 0.05),  # gate road, out to the edge
)

TRUCK_BAYS: tuple[tuple[float, float, float], ...] = tuple(
    (56.0 + 4.0 * k, v, heading)
    for v, heading in ((33.0, math.pi / 2), (69.0, -math.pi / 2))
    for k in range(14)
)
CAR_BAYS: tuple[tuple[float, float, float], ...] = tuple(
    (-106.0 + 2.6 * k, v, heading)
    for v, heading in ((-27.25, math.pi / 2), (-7.5, -math.pi / 2))
    for k in range(26)
)


@dataclass(frozen=True)
class _Body:
    """A vehicle or container in compound-local metres."""

    kind: str
    cls: ObjectClass
    zone: str | None
    centre: tuple[float, float]
    heading: float  # radians from the u axis towards v
    length: float
    width: float
    height: float
    colour: RGB
    cab: RGB | None = None

    def to_local(self, pts: Points) -> Points:
        """Object-local (along, across) metres to compound-local metres."""
        c, s = math.cos(self.heading), math.sin(self.heading)
        a, b = pts[:, 0], pts[:, 1]
        return np.column_stack([self.centre[0] + c * a - s * b, self.centre[1] + s * a + c * b])

    def footprint(self) -> Points:
        half_l, half_w = self.length / 2, self.width / 2
        return self.to_local(_rect(-half_l, -half_w, half_l, half_w))


@dataclass(frozen=True)
class _Day:
    index: int
    acquired: datetime
    sun_azimuth: float
    sun_elevation: float
    shift: tuple[float, float]
    cloud_fraction: float  # 0 on clear dates
    haze: float
    gain: tuple[float, float, float]
    offset: float
    vehicles: tuple[_Body, ...]
    containers: tuple[_Body, ...]


def _plan(seed: int, frame: _Frame) -> tuple[tuple[_Day, ...], int]:
    """Every date's sun, radiometry, misregistration, vehicles and containers; and the red bay."""
    rng = np.random.default_rng([seed, _SCENARIO])
    usual = rng.integers(3, 8, size=len(DATES))
    surge = min(len(TRUCK_BAYS), int(4 * np.median(usual)) + int(rng.integers(0, 4)))
    loading = [surge if i == SURGE_INDEX else int(n) for i, n in enumerate(usual)]
    red_bay = int(rng.integers(len(TRUCK_BAYS)))
    yard, occupied = _container_slots(rng)
    lon, lat = _lonlat(*SITE_CENTRE)
    days = []
    for index, when in enumerate(DATES):
        day_rng = np.random.default_rng([seed, _SCENARIO, index])
        azimuth, elevation = _sun_position(when, lon, lat)
        cloudy = index == CLOUDY_INDEX
        days.append(
            _Day(
                index=index,
                acquired=when,
                sun_azimuth=azimuth,
                sun_elevation=elevation,
                shift=_shift(day_rng, index),
                cloud_fraction=round(float(day_rng.uniform(0.32, 0.48)), 3) if cloudy else 0.0,
                haze=0.2 if cloudy else float(day_rng.uniform(0.0, 0.06)),
                gain=tuple(float(g) for g in day_rng.uniform(0.88, 1.12) * day_rng.uniform(0.96, 1.04, 3)),  # type: ignore[arg-type]
                offset=float(day_rng.uniform(-8.0, 8.0)),
                vehicles=_vehicles_on(day_rng, frame, loading[index], red_bay if index == RED_TRAILER_INDEX else None),
                containers=_containers_on(day_rng, yard, occupied),
            )
        )
    return tuple(days), red_bay


def _shift(rng: np.random.Generator, index: int) -> tuple[float, float]:
    """Misregistration of one date: none for the first (the reference), else 0.2 to 2 px."""
    if index == 0:
        return (0.0, 0.0)
    size, direction = rng.uniform(0.2, 2.0), rng.uniform(0.0, 2 * math.pi)
    return (round(size * math.cos(direction), 3), round(size * math.sin(direction), 3))


def _vehicles_on(rng: np.random.Generator, frame: _Frame, loading: int, red_bay: int | None) -> tuple[_Body, ...]:
    """Trucks in the loading area, cars in the parking, a few on the gate road; new every date."""
    bays = [k for k in range(len(TRUCK_BAYS)) if k != red_bay]
    chosen = [int(k) for k in rng.choice(bays, size=loading - (red_bay is not None), replace=False)]
    trucks = [_truck(rng, TRUCK_BAYS[k]) for k in sorted(chosen)]
    if red_bay is not None:
        trucks.append(_red_trailer(TRUCK_BAYS[red_bay]))
    n_cars = int(rng.integers(10, 24))
    cars = [_car(rng, CAR_BAYS[int(k)], "parking") for k in sorted(rng.choice(len(CAR_BAYS), n_cars, replace=False))]
    return (*trucks, *cars, *_road_traffic(rng, frame))


def _jitter(rng: np.random.Generator, bay: tuple[float, float, float], along: float) -> tuple[tuple[float, float], float]:
    u, v, heading = bay
    heading += math.radians(rng.normal(0.0, 1.5))
    offset = rng.normal(0.0, 0.25)
    return (u + offset, v + along * math.sin(heading)), heading


def _truck(rng: np.random.Generator, bay: tuple[float, float, float]) -> _Body:
    length = float(rng.uniform(12.0, 16.0))
    centre, heading = _jitter(rng, bay, rng.normal(0.0, 0.4))
    cab = CAB_COLOURS[int(rng.integers(len(CAB_COLOURS)))]
    trailer = TRAILER_COLOURS[int(rng.integers(len(TRAILER_COLOURS)))]
    return _Body("semi-trailer", "large-vehicle", "loading area", centre, heading, length, 2.5, 3.8, trailer, cab)


def _red_trailer(bay: tuple[float, float, float]) -> _Body:
    u, v, heading = bay
    return _Body(
        "red covered trailer", "large-vehicle", "loading area", (u, v), heading, 14.0, 2.5, 3.6, RED_TARP, CAB_COLOURS[0]
    )


def _car(rng: np.random.Generator, bay: tuple[float, float, float], zone: str | None) -> _Body:
    colours, weights = zip(*CAR_COLOURS, strict=True)
    colour = colours[int(rng.choice(len(colours), p=np.array(weights) / sum(weights)))]
    centre, heading = _jitter(rng, bay, rng.normal(0.0, 0.2))
    if rng.random() < 0.3:
        heading += math.pi  # reversed into the bay
    if rng.random() < 0.15:
        return _Body("van", "small-vehicle", zone, centre, heading, 5.3, 2.0, 2.2, colour)
    return _Body("car", "small-vehicle", zone, centre, heading, float(rng.uniform(4.2, 4.8)), 1.8, 1.5, colour)


def _road_traffic(rng: np.random.Generator, frame: _Frame) -> list[_Body]:
    """Zero to two vehicles on the gate road outside the wall, kept only where inside the frame."""
    bodies = []
    for _ in range(int(rng.integers(0, 3))):
        inbound = rng.random() < 0.5
        u = GATE[0] + (3.5 if inbound else 8.5)
        bay = (u, float(rng.uniform(100.0, 160.0)), -math.pi / 2 if inbound else math.pi / 2)
        body = _truck(rng, bay) if rng.random() < 0.5 else _car(rng, bay, None)
        body = _Body(body.kind, body.cls, None, *_body_pose(body), body.length, body.width, body.height, body.colour, body.cab)
        corners = frame.px(body.footprint())
        if corners.min() >= 2 and corners.max() <= min(frame.shape) - 3:
            bodies.append(body)
    return bodies


def _body_pose(body: _Body) -> tuple[tuple[float, float], float]:
    return body.centre, body.heading


def _container_slots(rng: np.random.Generator) -> tuple[tuple[_Body, ...], tuple[bool, ...]]:
    """Every container place in the storage yard, with its colour, and which are taken at first."""
    bodies: list[_Body] = []
    for block_v in (20.0, 33.0, 46.0, 59.0, 72.0):
        for row in range(3):
            v = block_v + 1.5 + 2.9 * row
            for u in (-23.0, -9.0, 5.0, 19.0):
                centres = [(u, 12.19)] if rng.random() < 0.6 else [(u - 3.08, 6.06), (u + 3.08, 6.06)]
                for cu, length in centres:
                    colour = CONTAINER_COLOURS[int(rng.integers(len(CONTAINER_COLOURS)))]
                    heading = 0.0 if rng.random() < 0.5 else math.pi
                    kind = "container 40ft" if length > 10 else "container 20ft"
                    bodies.append(_Body(kind, "container", "storage yard", (cu, v), heading, length, 2.44, 2.6, colour))
    occupied = tuple(bool(x) for x in rng.random(len(bodies)) < 0.22)
    return tuple(bodies), occupied


def _containers_on(rng: np.random.Generator, slots: tuple[_Body, ...], occupied: tuple[bool, ...]) -> tuple[_Body, ...]:
    """Most containers stay from date to date; a few leave and a few arrive."""
    draws = rng.random(len(slots))
    return tuple(b for b, taken, r in zip(slots, occupied, draws, strict=True) if (r > 0.1 if taken else r < 0.04))


def _lonlat(east: float, north: float) -> tuple[float, float]:
    lon, lat = Transformer.from_crs(EPSG, 4326, always_xy=True).transform(east, north)
    return float(lon), float(lat)


def _sun_position(when: datetime, lon: float, lat: float) -> tuple[float, float]:
    """Solar azimuth and elevation in degrees (NOAA's approximation, well within a degree)."""
    hour = when.hour + when.minute / 60 + when.second / 3600
    g = 2 * math.pi / 365 * (when.timetuple().tm_yday - 1 + (hour - 12) / 24)
    eqtime = 229.18 * (
        0.000075 + 0.001868 * math.cos(g) - 0.032077 * math.sin(g) - 0.014615 * math.cos(2 * g) - 0.040849 * math.sin(2 * g)
    )
    decl = (
        0.006918
        - 0.399912 * math.cos(g)
        + 0.070257 * math.sin(g)
        - 0.006758 * math.cos(2 * g)
        + 0.000907 * math.sin(2 * g)
        - 0.002697 * math.cos(3 * g)
        + 0.00148 * math.sin(3 * g)
    )
    hour_angle = math.radians((hour * 60 + eqtime + 4 * lon) / 4 - 180)
    phi = math.radians(lat)
    cos_zenith = math.sin(phi) * math.sin(decl) + math.cos(phi) * math.cos(decl) * math.cos(hour_angle)
    elevation = 90 - math.degrees(math.acos(max(-1.0, min(1.0, cos_zenith))))
    azimuth = math.degrees(
        math.atan2(math.sin(hour_angle), math.cos(hour_angle) * math.sin(phi) - math.tan(decl) * math.cos(phi))
    )
    return round((azimuth + 180) % 360, 2), round(elevation, 2)
