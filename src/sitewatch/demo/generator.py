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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import cv2
import numpy as np
import rasterio
import scipy.fft
import shapely
from affine import Affine
from numpy.typing import NDArray
from pyproj import Transformer
from rasterio.features import rasterize
from shapely.geometry import Polygon

from sitewatch.errors import InputError
from sitewatch.io.files import atomic_path
from sitewatch.io.raster import gdal_env

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
#: White twice: most trailers are. No bright red anywhere but the one red covered trailer.
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
    def centre_utm(self) -> tuple[float, float]:
        """Centre of the box on the ground (E, N)."""
        es, ns = zip(*self.corners_utm, strict=True)
        return (sum(es) / 4, sum(ns) / 4)

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
        return _stands(self.appears, self.removed, index)


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
    """One written scene and what is on the ground in it, including what its clouds hide.

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

    @property
    def dates(self) -> tuple[datetime, ...]:
        """Acquisition times, in order."""
        return tuple(s.acquired for s in self.scenes)

    def scene_transform(self, index: int) -> Affine:
        """Where scene INDEX's pixels truly lie: its claimed grid corrected by its shift."""
        dx, dy = self.scenes[index].shift_px
        return self.transform @ Affine.translation(-dx, -dy)

    def building_mask(self, index: int) -> NDArray[np.bool_]:
        """Buildings standing on date INDEX, on scene INDEX's pixels (its shift applied)."""
        polygons = [b.polygon_utm for b in self.buildings if b.present_on(index)]
        return self._rasterize(polygons, index)

    def change_mask(self, before: int, after: int) -> NDArray[np.bool_]:
        """Persistent change (buildings only) between two dates, on scene BEFORE's pixels.

        This is what ``sitewatch change BEFORE AFTER`` is scored against: its mask has BEFORE's
        grid, and vehicles and containers come and go, so they are not change.
        """
        polygons = [b.polygon_utm for b in self.buildings if b.present_on(before) != b.present_on(after)]
        return self._rasterize(polygons, before)

    def cloud_mask(self, index: int) -> NDArray[np.bool_]:
        """Thick cloud on scene INDEX's pixels (all False on a clear date)."""
        scene = self.scenes[index]
        if not scene.cloudy:
            return np.zeros((self.height, self.width), np.bool_)
        clouds = _Clouds.make(self.seed, index, (self.height, self.width), self.gsd, scene.cloud_fraction)
        return clouds.opacity() > 0.5

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

    def contains(self, px: Points, margin: float) -> bool:
        """Whether every point lies at least MARGIN pixels inside the frame."""
        return bool(
            (px >= margin).all()
            and (px[:, 0] <= self.width - 1 - margin).all()
            and (px[:, 1] <= self.height - 1 - margin).all()
        )


def _make_frame(seed: int, size_px: int, gsd: float) -> _Frame:
    """The scene grid, with the compound rotated by a seeded angle; refuses grids too small for it."""
    if size_px <= 0 or not gsd > 0:
        raise InputError("demo", f"size_px ({size_px}) and gsd ({gsd}) must be positive")
    angle = math.radians(float(np.random.default_rng([seed, _LAYOUT]).uniform(-15.0, 15.0)))
    extent = size_px * gsd
    transform = Affine(gsd, 0.0, SITE_CENTRE[0] - extent / 2, 0.0, -gsd, SITE_CENTRE[1] + extent / 2)
    frame = _Frame(size_px, size_px, gsd, angle, transform)
    margin = 10.0 / gsd + 3  # room for the misregistration and a strip of terrain
    if not frame.contains(frame.px(_rect(*_site_rect())), margin):
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
    _BuildingSpec("old warehouse", (56.0, -80.0, 108.0, -52.0), 10.0, (152, 86, 60), "gable", removed=DEMOLITION_INDEX),
    _BuildingSpec("new hall", (-108.0, 28.0, -66.0, 56.0), 11.0, (66, 106, 160), "gable", appears=EXPANSION_INDEX),
    _BuildingSpec("new annex", (-58.0, 32.0, -42.0, 48.0), 6.0, (230, 228, 222), "flat", 2, appears=EXPANSION_INDEX),
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

#: Parking places: (u, v, heading) of a vehicle's centre and nose.
Bay = tuple[float, float, float]
TRUCK_BAYS: tuple[Bay, ...] = tuple(
    (56.0 + 4.0 * k, v, heading) for v, heading in ((33.0, math.pi / 2), (69.0, -math.pi / 2)) for k in range(14)
)
CAR_BAYS: tuple[Bay, ...] = tuple(
    (-106.0 + 2.6 * k, v, heading) for v, heading in ((-27.25, math.pi / 2), (-7.5, -math.pi / 2)) for k in range(26)
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


def _plan(seed: int, frame: _Frame) -> tuple[_Day, ...]:
    """Every date's sun, radiometry, misregistration, vehicles and containers."""
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
                gain=_gain(day_rng),
                offset=float(day_rng.uniform(-8.0, 8.0)),
                vehicles=_vehicles_on(day_rng, frame, loading[index], red_bay if index == RED_TRAILER_INDEX else None),
                containers=_containers_on(day_rng, yard, occupied),
            )
        )
    return tuple(days)


def _shift(rng: np.random.Generator, index: int) -> tuple[float, float]:
    """Misregistration of one date: none for the first (the reference), else 0.2 to 2 px."""
    if index == 0:
        return (0.0, 0.0)
    size, direction = rng.uniform(0.2, 2.0), rng.uniform(0.0, 2 * math.pi)
    return (round(size * math.cos(direction), 3), round(size * math.sin(direction), 3))


def _gain(rng: np.random.Generator) -> tuple[float, float, float]:
    """Exposure and a colour cast: per-band gains around one overall gain."""
    overall = float(rng.uniform(0.88, 1.12))
    r, g, b = (overall * float(x) for x in rng.uniform(0.96, 1.04, 3))
    return (r, g, b)


def _vehicles_on(rng: np.random.Generator, frame: _Frame, loading: int, red_bay: int | None) -> tuple[_Body, ...]:
    """Trucks in the loading area, cars in the parking, a few on the gate road; new every date."""
    bays = [k for k in range(len(TRUCK_BAYS)) if k != red_bay]
    chosen = [int(k) for k in rng.choice(bays, size=loading - (red_bay is not None), replace=False)]
    trucks = [_truck(rng, TRUCK_BAYS[k], "loading area") for k in sorted(chosen)]
    if red_bay is not None:
        trucks.append(_red_trailer(TRUCK_BAYS[red_bay]))
    n_cars = int(rng.integers(10, 24))
    cars = [_car(rng, CAR_BAYS[int(k)], "parking") for k in sorted(rng.choice(len(CAR_BAYS), n_cars, replace=False))]
    return (*trucks, *cars, *_road_traffic(rng, frame))


def _jitter(rng: np.random.Generator, bay: Bay, along_sigma: float) -> tuple[tuple[float, float], float]:
    """A parked position: a little off the bay's centre line and angle (bays run along v)."""
    u, v, heading = bay
    centre = (u + float(rng.normal(0.0, 0.25)), v + float(rng.normal(0.0, along_sigma)))
    return centre, heading + math.radians(float(rng.normal(0.0, 1.5)))


def _truck(rng: np.random.Generator, bay: Bay, zone: str | None) -> _Body:
    length = float(rng.uniform(12.0, 16.0))
    centre, heading = _jitter(rng, bay, 0.4)
    cab = CAB_COLOURS[int(rng.integers(len(CAB_COLOURS)))]
    trailer = TRAILER_COLOURS[int(rng.integers(len(TRAILER_COLOURS)))]
    return _Body("semi-trailer", "large-vehicle", zone, centre, heading, length, 2.5, 3.8, trailer, cab)


def _red_trailer(bay: Bay) -> _Body:
    u, v, heading = bay
    return _Body(
        "red covered trailer",
        "large-vehicle",
        "loading area",
        (u, v),
        heading,
        14.0,
        2.5,
        3.6,
        RED_TARP,
        CAB_COLOURS[0],
    )


def _car(rng: np.random.Generator, bay: Bay, zone: str | None) -> _Body:
    colours, weights = zip(*CAR_COLOURS, strict=True)
    colour = colours[int(rng.choice(len(colours), p=np.array(weights) / sum(weights)))]
    centre, heading = _jitter(rng, bay, 0.2)
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
        body = _truck(rng, bay, None) if rng.random() < 0.5 else _car(rng, bay, None)
        if frame.contains(frame.px(body.footprint()), 2):
            bodies.append(body)
    return bodies


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
        0.000075
        + 0.001868 * math.cos(g)
        - 0.032077 * math.sin(g)
        - 0.014615 * math.cos(2 * g)
        - 0.040849 * math.sin(2 * g)
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


def _stands(appears: int, removed: int | None, index: int) -> bool:
    """Whether a building that appears on date APPEARS and is gone from date REMOVED stands on INDEX."""
    return appears <= index and (removed is None or index < removed)


# ---------------------------------------------------------------------------------------------
# Rendering: what things look like from above
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Part:
    """One flat-coloured polygon of a roof, vehicle or surface, in compound-local metres."""

    pts: Points
    colour: tuple[float, float, float]
    texture: float = 0.02  # relative amplitude of the surface grain


@dataclass(frozen=True)
class _Prism:
    """Something that stands up: it casts a shadow from its (convex) footprint, then is painted."""

    footprint: Points
    height: float
    parts: tuple[_Part, ...]


@dataclass(frozen=True)
class _Sun:
    toward: tuple[float, float]  # horizontal unit vector towards the sun, compound-local
    shadow_per_m: float  # shadow length on flat ground per metre of height

    def displacement(self, height: float) -> NDArray[np.float64]:
        """Where the top of something HEIGHT metres tall falls on the ground, relative to its base."""
        return -np.array(self.toward) * height * self.shadow_per_m


def _sun_for(day: _Day, frame: _Frame) -> _Sun:
    """The sun of one date in compound-local terms (the image's east-south frame rotated back)."""
    azimuth = math.radians(day.sun_azimuth)
    east, south = math.sin(azimuth), -math.cos(azimuth)
    c, s = math.cos(frame.angle), math.sin(frame.angle)
    toward = (c * east + s * south, -s * east + c * south)
    return _Sun(toward, 1 / math.tan(math.radians(day.sun_elevation)))


def _scaled(colour: Sequence[float], factor: float = 1.0) -> tuple[float, float, float]:
    r, g, b = (float(c) * factor for c in colour)
    return (r, g, b)


def _body_parts(body: _Body) -> tuple[_Part, ...]:
    """Top view of a vehicle or container, built along +a (its nose) in object-local metres."""
    hl, hw = body.length / 2, body.width / 2
    colour = _scaled(body.colour)

    def box(a0: float, a1: float, width: float, fill: Sequence[float], texture: float = 0.02) -> _Part:
        return _Part(body.to_local(_rect(a0 * hl, -width * hw, a1 * hl, width * hw)), _scaled(fill), texture)

    if body.cls == "container":
        door = 1 - 0.6 / body.length
        return (box(-1, 1, 1, colour, 0.04), box(-1, -door, 1, _scaled(colour, 0.72)))
    if body.cls == "large-vehicle":
        cab_start = 1 - 4.8 / body.length
        trailer_end = 1 - 5.8 / body.length
        cab = body.cab or CAB_COLOURS[0]
        return (
            box(cab_start, 1, 0.96, cab),
            box(1 - 1.0 / body.length, 1 - 0.2 / body.length, 0.8, WINDOW),
            box(trailer_end, cab_start, 0.7, (46, 46, 50)),
            box(-1, trailer_end, 1, colour, 0.03),
        )
    chamfer = 0.35 / hl
    outline = np.array(
        [
            [-1 + chamfer, -1],
            [1 - chamfer, -1],
            [1, -0.8],
            [1, 0.8],
            [1 - chamfer, 1],
            [-1 + chamfer, 1],
            [-1, 0.8],
            [-1, -0.8],
        ]
    )
    body_part = _Part(body.to_local(outline * [hl, hw]), colour)
    if body.kind == "van":
        return (body_part, box(-0.95, 0.58, 0.86, _scaled(colour, 1.05)), box(0.58, 0.78, 0.82, WINDOW))
    return (
        body_part,
        box(-0.62, -0.38, 0.8, WINDOW),
        box(-0.38, 0.14, 0.84, _scaled(colour, 1.06)),
        box(0.14, 0.48, 0.8, WINDOW),
    )


def _body_prism(body: _Body) -> _Prism:
    return _Prism(body.footprint(), body.height, _body_parts(body))


def _wall_prisms() -> list[_Prism]:
    """The compound wall (3 m high, 0.6 m thick) with the gate gap in its south side."""
    u0, v0, u1, v1 = COMPOUND
    t = 0.3
    segments = (
        (u0 - t, v0 - t, u1 + t, v0 + t),
        (u0 - t, v0, u0 + t, v1),
        (u1 - t, v0, u1 + t, v1),
        (u0 - t, v1 - t, GATE[0], v1 + t),
        (GATE[1], v1 - t, u1 + t, v1 + t),
    )
    return [_Prism(_rect(*seg), 3.0, (_Part(_rect(*seg), _scaled(WALL)),)) for seg in segments]


def _building_prism(spec: _BuildingSpec, index: int, seed: int, sun: _Sun) -> _Prism:
    if spec.style == "tank":
        parts = _tank_parts(spec, sun)
    elif spec.style == "flat":
        parts = _flat_parts(spec, np.random.default_rng([seed, _ROOFS, index]), sun)
    else:
        parts = _gable_parts(spec, sun)
    return _Prism(spec.footprint(), spec.height, tuple(parts))


def _gable_parts(spec: _BuildingSpec, sun: _Sun) -> list[_Part]:
    """A pitched roof: the slope facing the sun is brighter; halls get rows of skylights."""
    u0, v0, u1, v1 = spec.rect
    along_u = (u1 - u0) >= (v1 - v0)
    parts: list[_Part] = []
    for side in (-1.0, 1.0):
        normal = (0.0, side) if along_u else (side, 0.0)
        lit = 1 + 0.22 * (normal[0] * sun.toward[0] + normal[1] * sun.toward[1])
        half = _half(spec.rect, along_u, side)
        parts.append(_Part(_rect(*half), _scaled(spec.roof, lit), 0.025))
        if spec.style == "hall":
            parts.extend(_Part(_rect(*sky), _scaled((212, 220, 226), lit), 0.01) for sky in _skylights(half, along_u))
    mid_u, mid_v = (u0 + u1) / 2, (v0 + v1) / 2
    ridge = (u0, mid_v - 0.2, u1, mid_v + 0.2) if along_u else (mid_u - 0.2, v0, mid_u + 0.2, v1)
    parts.append(_Part(_rect(*ridge), _scaled(spec.roof, 0.88)))
    return parts


def _half(rect: tuple[float, float, float, float], along_u: bool, side: float) -> tuple[float, float, float, float]:
    u0, v0, u1, v1 = rect
    mid_u, mid_v = (u0 + u1) / 2, (v0 + v1) / 2
    if along_u:
        return (u0, v0, u1, mid_v) if side < 0 else (u0, mid_v, u1, v1)
    return (u0, v0, mid_u, v1) if side < 0 else (mid_u, v0, u1, v1)


def _skylights(half: tuple[float, float, float, float], along_u: bool) -> list[tuple[float, float, float, float]]:
    """Translucent strips across one roof slope, every 8 m along the ridge."""
    u0, v0, u1, v1 = half
    if along_u:
        inset = 0.2 * (v1 - v0)
        return [(u, v0 + inset, u + 1.4, v1 - inset) for u in np.arange(u0 + 5.0, u1 - 4.0, 8.0)]
    inset = 0.2 * (u1 - u0)
    return [(u0 + inset, v, u1 - inset, v + 1.4) for v in np.arange(v0 + 5.0, v1 - 4.0, 8.0)]


def _flat_parts(spec: _BuildingSpec, rng: np.random.Generator, sun: _Sun) -> list[_Part]:
    """A flat roof with a darker parapet and rooftop plant that throws small shadows on it."""
    u0, v0, u1, v1 = spec.rect
    parts = [
        _Part(_rect(*spec.rect), _scaled(spec.roof, 0.8)),
        _Part(_rect(u0 + 0.6, v0 + 0.6, u1 - 0.6, v1 - 0.6), _scaled(spec.roof)),
    ]
    for _ in range(spec.units):
        cu, cv = rng.uniform(u0 + 2.5, u1 - 2.5), rng.uniform(v0 + 2.5, v1 - 2.5)
        unit = _rect(cu - 0.9, cv - 0.6, cu + 0.9, cv + 0.6)
        parts.append(_Part(_hull(unit, sun.displacement(1.2)), _scaled(spec.roof, 0.6)))
        parts.append(_Part(unit, (158.0, 160.0, 163.0)))
    return parts


def _tank_parts(spec: _BuildingSpec, sun: _Sun) -> list[_Part]:
    """A round tank with a low conical roof: shaded rim, brighter side towards the sun."""
    u0, v0, u1, v1 = spec.rect
    cu, cv, r = (u0 + u1) / 2, (v0 + v1) / 2, (u1 - u0) / 2
    lit = (cu + 0.12 * r * sun.toward[0], cv + 0.12 * r * sun.toward[1])
    return [
        _Part(spec.footprint(), _scaled(spec.roof, 0.86)),
        _Part(_ellipse(*lit, 0.8 * r, 0.8 * r), _scaled(spec.roof, 1.04)),
    ]


def _rubble_parts(spec: _BuildingSpec, seed: int, index: int) -> list[_Part]:
    """What a demolished building leaves: a broken slab with heaps of debris (the same every date)."""
    rng = np.random.default_rng([seed, _ROOFS, 1000 + index])
    u0, v0, u1, v1 = spec.rect
    parts = [_Part(_rect(*spec.rect), _scaled(RUBBLE), 0.12)]
    tones = ((108, 100, 90), (190, 182, 168), _scaled(spec.roof, 0.9))
    for _ in range(int((u1 - u0) * (v1 - v0) / 60)):
        centre = (rng.uniform(u0 + 2, u1 - 2), rng.uniform(v0 + 2, v1 - 2))
        heap = _ellipse(*centre, rng.uniform(0.8, 2.6), rng.uniform(0.6, 2.0), 12)
        parts.append(_Part(heap, _scaled(tones[int(rng.integers(len(tones)))]), 0.1))
    return parts


def _hull(footprint: Points, displacement: NDArray[np.float64]) -> Points:
    """The shadow of a convex prism on flat ground: hull of its base and its displaced top."""
    both = np.vstack([footprint, footprint + displacement]).astype(np.float32)
    return np.asarray(cv2.convexHull(both), np.float64).reshape(-1, 2)


def _fixed(px: Points) -> NDArray[np.int32]:
    """Pixel coordinates as OpenCV's fixed point (4 fractional bits), for sub-pixel polygons."""
    return np.round(px * 16).astype(np.int32)


def _fill(img: Image, grain: Image, px: Points, colour: Sequence[float], texture: float) -> None:
    """Paint one anti-aliased polygon, touching only its bounding box (hundreds per scene)."""
    h, w = grain.shape
    x0, y0 = max(0, math.floor(px[:, 0].min()) - 1), max(0, math.floor(px[:, 1].min()) - 1)
    x1, y1 = min(w, math.ceil(px[:, 0].max()) + 2), min(h, math.ceil(px[:, 1].max()) + 2)
    if x1 <= x0 or y1 <= y0:
        return
    mask = np.zeros((y1 - y0, x1 - x0), np.uint8)
    cv2.fillPoly(mask, [_fixed(px - (x0, y0))], 255, cv2.LINE_AA, 4)
    alpha = mask.astype(np.float32)[..., None] * (1 / 255)
    paint = np.asarray(colour, np.float32) * (1 + texture * grain[y0:y1, x0:x1, None])
    region = img[y0:y1, x0:x1]
    region += alpha * (paint - region)


def _paint(img: Image, grain: Image, frame: _Frame, parts: Sequence[_Part]) -> None:
    for part in parts:
        _fill(img, grain, frame.px(part.pts), part.colour, part.texture)


def _cast_shadows(img: Image, frame: _Frame, prisms: Sequence[_Prism], sun: _Sun) -> None:
    """Darken the ground under every cast shadow once (overlapping shadows are not darker)."""
    mask = np.zeros(frame.shape, np.uint8)
    shadows = [frame.px(_hull(p.footprint, sun.displacement(p.height))) for p in prisms]
    for shadow in shadows:
        cv2.fillPoly(mask, [_fixed(shadow)], 255, cv2.LINE_AA, 4)
    corners = np.vstack(shadows)
    x0, y0 = np.clip(np.floor(corners.min(axis=0)).astype(int) - 1, 0, None)
    x1, y1 = np.ceil(corners.max(axis=0)).astype(int) + 2
    darkness = mask[y0:y1, x0:x1].astype(np.float32)[..., None] * ((1 - SHADOW_TINT) / 255)
    img[y0:y1, x0:x1] *= 1 - darkness


# ---------------------------------------------------------------------------------------------
# Terrain and the ground that does not change
# ---------------------------------------------------------------------------------------------


def _noise(rng: np.random.Generator, shape: tuple[int, int], scale_px: float) -> Image:
    """Smooth noise with blobs about SCALE_PX across: a coarse random grid, upsampled.

    Bicubic to at most 8 samples a cell, then bilinear: as smooth to the eye, and OpenCV's bicubic
    is slow at large factors.
    """
    scale_px = max(scale_px, 1.5)
    h, w = shape
    rows, cols = int(h / scale_px) + 3, int(w / scale_px) + 3
    coarse = rng.standard_normal((rows, cols)).astype(np.float32)
    step = min(scale_px, 8.0)
    mid = cv2.resize(coarse, (math.ceil(cols * step), math.ceil(rows * step)), interpolation=cv2.INTER_CUBIC)
    size = (math.ceil(cols * scale_px), math.ceil(rows * scale_px))
    return np.asarray(cv2.resize(mid, size, interpolation=cv2.INTER_LINEAR), np.float32)[:h, :w]


def _fractal(
    rng: np.random.Generator, shape: tuple[int, int], scales_px: Sequence[float], weights: Sequence[float]
) -> Image:
    """Sum of noise octaves, normalised to zero mean and unit deviation."""
    total = np.zeros(shape, np.float32)
    for scale, weight in zip(scales_px, weights, strict=True):
        total += weight * _noise(rng, shape, scale)
    total -= total.mean()
    total /= max(float(total.std()), 1e-6)
    return total


def _mix(img: Image, colour: Sequence[float] | Image, alpha: Image) -> None:
    img += alpha[..., None] * (np.asarray(colour, np.float32) - img)


def _terrain(rng: np.random.Generator, frame: _Frame, grain: Image) -> Image:
    """Sand and soil with a dry wash through it, shrubs along the wash, and graded ground inside the wall."""
    shape, g = frame.shape, frame.gsd
    soil = _fractal(rng, shape, (220 / g, 70 / g, 20 / g), (1.0, 0.5, 0.25))
    wash = np.exp(-((_fractal(rng, shape, (320 / g, 130 / g), (1.0, 0.35)) / 0.2) ** 2))
    detail = _fractal(rng, shape, (6 / g, 2.5 / g), (1.0, 0.6))
    t = np.clip(0.5 + 0.28 * soil, 0.0, 1.0)
    sand = np.asarray(SAND_DARK, np.float32) + t[..., None] * np.subtract(SAND_LIGHT, SAND_DARK, dtype=np.float32)
    img = np.asarray(sand, np.float32)
    _mix(img, SILT, 0.55 * wash)
    img *= (1 + 0.035 * detail + 0.02 * grain)[..., None]
    inside = np.zeros(shape, np.uint8)
    cv2.fillPoly(inside, [_fixed(frame.px(_rect(*COMPOUND)))], 255, cv2.LINE_AA, 4)
    graded = inside.astype(np.float32) * (0.85 / 255)
    _mix(img, np.asarray(GRADED, np.float32) * (1 + 0.03 * grain)[..., None], graded)
    shrubs = _shrubs(rng, frame, _fractal(rng, shape, (90 / g, 30 / g), (1.0, 0.5)) + 2.4 * wash)
    _mix(img, np.asarray(SHRUB, np.float32) * (1 + 0.12 * grain)[..., None], shrubs * (1 - graded))
    return img


def _shrubs(rng: np.random.Generator, frame: _Frame, density: Image) -> Image:
    """Opacity of desert shrubs: random seed points grown into soft discs 1 to 3 m across."""
    per_pixel = 0.0015 * frame.gsd**2 * np.exp(1.2 * density)
    alpha = np.zeros(frame.shape, np.float32)
    for radius_m, share in ((0.55, 0.75), (1.2, 0.25)):
        seeds = (rng.random(frame.shape, dtype=np.float32) < per_pixel * share).astype(np.float32)
        sigma = radius_m / frame.gsd
        blob = np.asarray(cv2.GaussianBlur(seeds, (0, 0), sigma), np.float32) * (2 * math.pi * sigma**2 * 1.6)
        np.maximum(alpha, np.clip(blob, 0.0, 1.0), out=alpha)
    return 0.85 * alpha


def _grain(rng: np.random.Generator, shape: tuple[int, int]) -> Image:
    """Per-pixel surface texture shared by every surface (zero mean, unit deviation)."""
    white = rng.standard_normal(shape, dtype=np.float32)
    grain = np.asarray(cv2.GaussianBlur(white, (0, 0), 0.6), np.float32)
    grain /= max(float(grain.std()), 1e-6)
    return grain


def _parking_lines() -> list[Points]:
    """White bay lines on the car park."""
    lines = []
    for v in sorted({bay[1] for bay in CAR_BAYS}):
        for k in range(27):
            u = -106.0 - 1.3 + 2.6 * k
            lines.append(_rect(u - 0.1, v - 2.5, u + 0.1, v + 2.5))
    return lines


def _render_ground(seed: int, frame: _Frame) -> tuple[Image, Image]:
    """Terrain, roads and yards: everything on the ground that is the same on every date."""
    rng = np.random.default_rng([seed, _TERRAIN])
    grain = _grain(rng, frame.shape)
    img = _terrain(rng, frame, grain)
    for rect, colour, texture in SURFACES:
        _fill(img, grain, frame.px(_rect(*rect)), colour, texture)
    for line in _parking_lines():
        _fill(img, grain, frame.px(line), (232, 232, 228), 0.0)
    return img, grain


def _render_day(ground: Image, grain: Image, frame: _Frame, day: _Day, seed: int) -> Image:
    """The site on one date, as the ground would look from straight above, before the camera."""
    img = ground.copy()
    for i, spec in enumerate(BUILDINGS):
        if spec.removed is not None and day.index >= spec.removed:
            _paint(img, grain, frame, _rubble_parts(spec, seed, i))
    sun = _sun_for(day, frame)
    prisms = [
        *_wall_prisms(),
        *(
            _building_prism(spec, i, seed, sun)
            for i, spec in enumerate(BUILDINGS)
            if _stands(spec.appears, spec.removed, day.index)
        ),
        *(_body_prism(b) for b in (*day.containers, *day.vehicles)),
    ]
    _cast_shadows(img, frame, prisms, sun)
    for prism in prisms:
        _paint(img, grain, frame, prism.parts)
    return img


# ---------------------------------------------------------------------------------------------
# Clouds and the camera: what changes between acquisitions, not on the ground
# ---------------------------------------------------------------------------------------------

BLUR_PX = 0.6  # Gaussian sigma of the camera's blur
OPTICS_PAD = 8  # mirrored border for the Fourier shift: several times the largest shift
NOISE_DN = 3.0  # half-width of the uniform sensor noise (1.7 DN rms)
CLOUD_EDGE = 0.35  # softness of thick cloud edges, in units of the cloud field's deviation
CLOUD_BASE_M = 180.0  # cloud base height: how far from its cloud a shadow falls


@dataclass(frozen=True)
class _Clouds:
    """One date's cloud field over the scene and a border a quarter of its size around it.

    The border lets cloud shadows fall in from clouds outside the frame. ``level`` is the field's
    quantile over the scene, so exactly the planned fraction of the scene is thick cloud.
    """

    field: Image
    pad: int
    shape: tuple[int, int]
    level: float

    @classmethod
    def make(cls, seed: int, index: int, shape: tuple[int, int], gsd: float, fraction: float) -> _Clouds:
        pad = max(shape) // 4
        rng = np.random.default_rng([seed, _CLOUDS, index])
        padded = (shape[0] + 2 * pad, shape[1] + 2 * pad)
        field_ = _fractal(rng, padded, (180 / gsd, 70 / gsd, 28 / gsd, 10 / gsd), (1.0, 0.55, 0.3, 0.15))
        inner = field_[pad : pad + shape[0], pad : pad + shape[1]]
        return cls(field_, pad, shape, float(np.quantile(inner, 1 - fraction)))

    def opacity(self, above: float = 0.0, edge: float = CLOUD_EDGE, offset: tuple[int, int] = (0, 0)) -> Image:
        """Opacity ramping through one half where the field is ABOVE the level, over EDGE.

        OFFSET (dy, dx) looks at the field that many pixels away: the clouds whose shadow falls here.
        """
        dy, dx = self.pad - offset[0], self.pad - offset[1]
        window = self.field[dy : dy + self.shape[0], dx : dx + self.shape[1]]
        ramp = (window - self.level - above) / edge + 0.5
        return np.asarray(np.clip(ramp, 0.0, 1.0), np.float32)


def _add_clouds(img: Image, day: _Day, frame: _Frame, seed: int) -> None:
    """Thick cumulus, greyer towards its edges, thin veils around it, and its shadows on the ground."""
    clouds = _Clouds.make(seed, day.index, frame.shape, frame.gsd, day.cloud_fraction)
    azimuth = math.radians(day.sun_azimuth)
    reach = min(CLOUD_BASE_M / math.tan(math.radians(day.sun_elevation)) / frame.gsd, clouds.pad)
    thick = clouds.opacity()
    shadow = clouds.opacity(offset=(round(reach * math.cos(azimuth)), round(-reach * math.sin(azimuth))))
    img *= (1 - 0.55 * shadow * (1 - thick))[..., None]
    _mix(img, HAZE, 0.3 * clouds.opacity(above=-0.9, edge=1.2))
    cloud = (
        np.asarray([244.0, 246.0, 250.0], np.float32) * (0.86 + 0.14 * clouds.opacity(above=0.9, edge=1.8))[..., None]
    )
    _mix(img, cloud, thick)


def _optics(img: Image, shift: tuple[float, float], blur_px: float) -> Image:
    """Blur by the optics and move by the misregistration in one pass, in the frequency domain.

    A Fourier shift is exact for a band-limited image, and the recorded shift is ground truth:
    bicubic or Lanczos resampling would leave a bias of about 0.1 px that phase correlation sees.
    The border is mirrored first so that the periodic transform does not wrap one edge onto the
    other, out to a size the FFT is fast at.
    """
    rows, cols = img.shape[:2]
    size = (
        scipy.fft.next_fast_len(rows + 2 * OPTICS_PAD, real=True),
        scipy.fft.next_fast_len(cols + 2 * OPTICS_PAD, real=True),
    )
    padding = ((OPTICS_PAD, size[0] - rows - OPTICS_PAD), (OPTICS_PAD, size[1] - cols - OPTICS_PAD), (0, 0))
    padded = np.pad(img, padding, mode="reflect")
    dx, dy = shift
    ky, kx = scipy.fft.fftfreq(size[0]), scipy.fft.rfftfreq(size[1])
    along_y = np.exp(-2 * (math.pi * blur_px * ky) ** 2 - 2j * math.pi * ky * dy)
    along_x = np.exp(-2 * (math.pi * blur_px * kx) ** 2 - 2j * math.pi * kx * dx)
    spectrum = scipy.fft.rfft2(padded, axes=(0, 1), workers=-1)
    spectrum *= np.outer(along_y, along_x).astype(np.complex64)[..., None]
    moved = scipy.fft.irfft2(spectrum, s=size, axes=(0, 1), workers=-1)
    return np.ascontiguousarray(moved[OPTICS_PAD : OPTICS_PAD + rows, OPTICS_PAD : OPTICS_PAD + cols], np.float32)


def _expose(img: Image, day: _Day, frame: _Frame, seed: int) -> NDArray[np.uint8]:
    """The camera: optics blur, misregistration, clouds, haze, exposure and colour cast, noise.

    Haze, exposure and cast fold into one gain and offset per band, and the noise is uniform
    rather than Gaussian: both for speed, as eight scenes must render in a few seconds.
    """
    img = _optics(img, day.shift, BLUR_PX)
    if day.cloud_fraction > 0:
        _add_clouds(img, day, frame, seed)
    gain = np.asarray(day.gain, np.float32)
    img *= (1 - day.haze) * gain
    img += day.haze * HAZE * gain + (day.offset - NOISE_DN)
    noise = np.random.default_rng([seed, _SENSOR, day.index]).random(img.shape, dtype=np.float32)
    img += noise * (2 * NOISE_DN)
    np.clip(img, 0, 255, out=img)
    return np.rint(img, out=img).astype(np.uint8)


# ---------------------------------------------------------------------------------------------
# Writing and the ground-truth records
# ---------------------------------------------------------------------------------------------


def _tags(day: _Day, seed: int) -> dict[str, str]:
    return {
        "TIFFTAG_DATETIME": f"{day.acquired:%Y:%m:%d %H:%M:%S}",
        "TIFFTAG_SOFTWARE": "sitewatch demo generator",
        "DATETIME": day.acquired.isoformat().replace("+00:00", "Z"),
        "PROVIDER": PROVIDER,
        "SENSOR": SENSOR,
        "LICENSE": LICENSE,
        "ATTRIBUTION": ATTRIBUTION,
        "SYNTHETIC": "yes",
        "SUN_AZIMUTH": f"{day.sun_azimuth:.2f}",
        "SUN_ELEVATION": f"{day.sun_elevation:.2f}",
        "DEMO_SEED": str(seed),
    }


def _write_scene(path: Path, pixels: NDArray[np.uint8], frame: _Frame, day: _Day, seed: int) -> None:
    """One tiled, DEFLATE-compressed RGB GeoTIFF, written beside PATH and renamed onto it."""
    profile = {
        "driver": "GTiff",
        "width": frame.width,
        "height": frame.height,
        "count": 3,
        "dtype": "uint8",
        "crs": f"EPSG:{EPSG}",
        "transform": frame.transform,
        "tiled": True,
        "blockxsize": 256,
        "blockysize": 256,
        "compress": "deflate",
        "predictor": 2,
        "zlevel": 1,  # half the time of the default level for 1.5 % more bytes: the noise dominates
        "photometric": "RGB",
    }
    with gdal_env(), atomic_path(path, make_parents=True) as tmp, rasterio.open(tmp, "w", **profile) as dst:
        dst.write(np.moveaxis(pixels, -1, 0))
        dst.update_tags(**_tags(day, seed))
        dst.descriptions = ("red", "green", "blue")


def _record(body: _Body, frame: _Frame, shift: tuple[float, float]) -> DemoObject:
    px = frame.px(body.footprint())
    utm = frame.utm(px)
    return DemoObject(
        cls=body.cls,
        kind=body.kind,
        zone=body.zone,
        corners_px=tuple((float(x) + shift[0], float(y) + shift[1]) for x, y in px),
        corners_utm=tuple((float(e), float(n)) for e, n in utm),
        colour=body.colour,
        length_m=body.length,
        width_m=body.width,
    )


def _scene_record(path: Path, day: _Day, frame: _Frame) -> DemoScene:
    return DemoScene(
        index=day.index,
        path=path,
        acquired=day.acquired,
        shift_px=day.shift,
        cloudy=day.cloud_fraction > 0,
        cloud_fraction=day.cloud_fraction,
        sun_azimuth=day.sun_azimuth,
        sun_elevation=day.sun_elevation,
        vehicles=tuple(_record(b, frame, day.shift) for b in day.vehicles),
        containers=tuple(_record(b, frame, day.shift) for b in day.containers),
    )


def _to_wgs84(polygon: Polygon) -> Polygon:
    to_lonlat = Transformer.from_crs(EPSG, 4326, always_xy=True)

    def convert(xy: NDArray[np.float64]) -> NDArray[np.float64]:
        lon, lat = to_lonlat.transform(xy[:, 0], xy[:, 1])
        return np.column_stack([lon, lat])

    converted: Polygon = shapely.transform(polygon, convert)
    return converted


def _events(buildings: Sequence[DemoBuilding]) -> tuple[DemoEvent, ...]:
    events = []
    for b in buildings:
        if b.appears > 0:
            events.append(DemoEvent("appeared", b.polygon_utm, DATES[b.appears - 1], DATES[b.appears], b.name))
        if b.removed is not None:
            events.append(DemoEvent("removed", b.polygon_utm, DATES[b.removed - 1], DATES[b.removed], b.name))
    return tuple(sorted(events, key=lambda e: e.date_after))


def _site_record(seed: int, frame: _Frame, scenes: tuple[DemoScene, ...]) -> DemoSite:
    buildings = tuple(
        DemoBuilding(s.name, frame.polygon_utm(s.footprint()), s.height, s.roof, s.appears, s.removed)
        for s in BUILDINGS
    )
    red = next(v for v in scenes[RED_TRAILER_INDEX].vehicles if v.kind == "red covered trailer")
    return DemoSite(
        name="Demo works (synthetic)",
        seed=seed,
        epsg=EPSG,
        width=frame.width,
        height=frame.height,
        gsd=frame.gsd,
        transform=frame.transform,
        site=_to_wgs84(frame.polygon_utm(_rect(*_site_rect()))),
        zones={name: _to_wgs84(frame.polygon_utm(_rect(*rect))) for name, rect in ZONES.items()},
        scenes=scenes,
        buildings=buildings,
        events=_events(buildings),
        surge_date=DATES[SURGE_INDEX],
        red_trailer_date=DATES[RED_TRAILER_INDEX],
        red_trailer=red,
    )


def generate(out_dir: Path, seed: int = 7, size_px: int = 1024, gsd: float = 0.5) -> DemoSite:
    """Render the demo site's scenes into OUT_DIR as ``demo_YYYY-MM-DD.tif`` and return the truth.

    Args:
        out_dir: Folder for the scenes (created if needed; scenes of the same dates are replaced).
        seed: Same seed, same pixels: the layout's angle, terrain, vehicles, containers, clouds,
            misregistration, illumination and noise all follow from it. The scripted events and
            dates do not.
        size_px: Width and height of every scene.
        gsd: Pixel size in metres.

    Raises:
        InputError: If the scene is too small to hold the site with a margin.
    """
    out_dir = Path(out_dir)
    frame = _make_frame(seed, size_px, gsd)
    days = _plan(seed, frame)
    ground, grain = _render_ground(seed, frame)
    out_dir.mkdir(parents=True, exist_ok=True)
    scenes = []
    for day in days:
        path = out_dir / f"demo_{day.acquired:%Y-%m-%d}.tif"
        _write_scene(path, _expose(_render_day(ground, grain, frame, day, seed), day, frame, seed), frame, day, seed)
        scenes.append(_scene_record(path, day, frame))
    return _site_record(seed, frame, tuple(scenes))
