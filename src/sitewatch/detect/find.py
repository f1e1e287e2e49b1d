"""Search by description: objects of a colour and size ("a red trailer, 12-20 m") on a site's dates.

Training-free: pixels of the colour (judged in CIELAB against the local background, see
:mod:`sitewatch.detect.colour`) are grouped into connected components; each gets an oriented box
(``cv2.minAreaRect``) measured in metres, is filtered by the length (and width) asked for, and is
scored by colour strength × shape fit. Shape fit is the share of the box the colour fills (a tarp
or a roof is a filled rectangle; a tangle of paint is not) times how well the length and width
fit: 1 inside the range, down to 0.7 at the edge of a tolerance around it. The tolerance (10 % of
the range's lower bound, at least one pixel) is there because the coloured part of an object is
usually a little shorter than the object an analyst describes (a red tarp on a trailer whose cab is
white), and because lengths given by eye are rounded. An object's edge is where a pixel is half
covered by it (linear unmixing of object and ground colour), so blur does not widen its box.

Dates whose pixels are too coarse for the object (its shortest length under
:data:`MIN_RESOLVABLE_PX` pixels) are reported as "not resolvable at this GSD", never searched.
:func:`find_objects` is pure (arrays in, candidates out); :func:`search` is the edge that reads a
site's observations and stores the results as detections, with an evidence chip each.
"""

from __future__ import annotations

import base64
import math
import re
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from affine import Affine
from rasterio.coords import BoundingBox
from shapely.geometry import Polygon
from shapely.geometry.base import BaseGeometry

from sitewatch.catalog.models import Detection, Observation, Scene, Site
from sitewatch.detect.colour import (
    ColourRange,
    Floats,
    Mask,
    colour_range,
    local_background,
    match_strength,
    stretch,
    to_lab,
)
from sitewatch.errors import InputError
from sitewatch.grid import SiteGrid, to_crs
from sitewatch.io.files import atomic_path
from sitewatch.workspace import Workspace, slug

#: The class and source of every find result in the detections table.
CLASS = "colour-match"
SOURCE = "find"
#: The shortest length asked for must span at least this many pixels, or the date is not searched.
MIN_RESOLVABLE_PX = 3.0
#: Tolerance around the length and width ranges, as a share of the range's lower bound (at least 1 px).
SLACK = 0.1
#: Shape fit at the outer edge of the tolerance (1 inside the range).
EDGE_FIT = 0.7
#: The local background is the median over a window this many times the longest length asked for.
BACKGROUND_LENGTHS = 2.5
#: Components smaller than this are noise, whatever the GSD.
MIN_COMPONENT_PX = 4
#: An object's pixels are those at least half covered by it (see :func:`_cover`).
HALF = 0.5
#: Its colour is the median of its strongest pixels (this top share of the component).
CORE_SHARE = 0.25

_SPAN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(?:m\s*)?(?:-|\.\.)\s*(\d+(?:\.\d+)?)\s*m?\s*$")


@dataclass(frozen=True)
class Span:
    """A range of metres, both ends included."""

    low: float
    high: float

    def __str__(self) -> str:
        return f"{self.low:g}-{self.high:g}m"

    def tolerance(self, gsd: float) -> float:
        """How far outside the range a measurement may fall and still count (module docstring)."""
        return max(SLACK * self.low, gsd)

    def fit(self, value: float, gsd: float) -> float:
        """1 inside the range, falling to :data:`EDGE_FIT` at the edge of the tolerance, 0 beyond."""
        tol = self.tolerance(gsd)
        excess = max(self.low - value, value - self.high, 0.0)
        return 0.0 if excess > tol else 1.0 - (1.0 - EDGE_FIT) * excess / tol


def parse_span(text: str, what: str = "--length") -> Span:
    """A range such as ``12-20m`` or ``2.5..4`` (metres).

    Raises:
        InputError: If TEXT is not a range of positive numbers, low to high.
    """
    found = _SPAN.match(text)
    if found is None:
        raise InputError(what, f"{text!r} is not a range of metres such as 12-20m")
    low, high = float(found[1]), float(found[2])
    if low <= 0 or high < low:
        raise InputError(what, f"{text!r} must run from a positive low to a high at least as large")
    return Span(low, high)


@dataclass(frozen=True)
class Query:
    """What to look for: a colour, a length range and optionally a width range, zone and dates."""

    colour: str
    length: Span
    width: Span | None = None
    zone: str | None = None
    date_from: datetime | None = None
    date_to: datetime | None = None

    def to_json(self) -> dict[str, Any]:
        """The query as JSON (how a watch rule stores it)."""
        return {
            "colour": self.colour,
            "length": str(self.length),
            "width": None if self.width is None else str(self.width),
            "zone": self.zone,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Query:
        """Read back :meth:`to_json` (dates are not kept: a rule watches new observations)."""
        width = data.get("width")
        return cls(
            colour=str(data["colour"]),
            length=parse_span(str(data["length"])),
            width=None if width is None else parse_span(str(width), "--width"),
            zone=data.get("zone"),
        )


@dataclass(frozen=True)
class Candidate:
    """One object of the colour and size asked for, in one image."""

    box: Polygon  # oriented box, in the CRS of the transform given
    length_m: float
    width_m: float
    lab: tuple[float, float, float]  # median CIELAB of its pixels (after haze removal)
    colour_strength: float
    shape_fit: float
    pixels: int

    @property
    def score(self) -> float:
        """Colour strength × shape fit, 0..1."""
        return self.colour_strength * self.shape_fit


def resolvable(gsd: float, length: Span) -> bool:
    """Whether objects of LENGTH span enough pixels at GSD to be told from noise."""
    return length.low / gsd >= MIN_RESOLVABLE_PX


def find_objects(
    rgb: Floats,
    valid: Mask,
    transform: Affine,
    gsd: float,
    colour: ColourRange,
    length: Span,
    width: Span | None = None,
) -> list[Candidate]:
    """Objects of COLOUR and LENGTH (and WIDTH) in RGB ``(3, rows, cols)``, best score first.

    RGB may be in any units (it is stretched per band, module :mod:`~sitewatch.detect.colour`);
    TRANSFORM maps pixel corners to the CRS the boxes are given in.
    """
    image = stretch(rgb, valid)
    lab = to_lab(image)
    window = min(round(BACKGROUND_LENGTHS * length.high / gsd), max(valid.shape))
    ground = local_background(image, window)
    strength = match_strength(lab, to_lab(ground), colour)
    mask = ((strength > 0) & valid).astype(np.uint8)
    joined = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, np.ones((3, 3), np.uint8))  # bridge texture speckle
    count, labels, stats, _ = cv2.connectedComponentsWithStats(joined, connectivity=8)
    shortest = length.low - length.tolerance(gsd)
    found = []
    for k in range(1, count):
        x0, y0, w, h, area = (int(v) for v in stats[k])
        if area < MIN_COMPONENT_PX or math.hypot(w, h) * gsd < shortest:
            continue
        cut = (slice(y0, y0 + h), slice(x0, x0 + w))
        inside = (labels[cut] == k) & (_cover(image[cut], ground[cut], strength[cut], labels[cut] == k) >= HALF)
        if np.count_nonzero(inside) < MIN_COMPONENT_PX:
            continue
        rows, cols = np.nonzero(inside)
        points = np.column_stack([cols + x0, rows + y0]).astype(np.float32)
        pixels = int(np.count_nonzero(inside))
        (cx, cy), (side_a, side_b), angle = cv2.minAreaRect(points)
        grow = _footprint(side_a, side_b, pixels)
        rect = ((cx, cy), (side_a + grow, side_b + grow), angle)
        long_m, short_m = max(rect[1]) * gsd, min(rect[1]) * gsd
        fit = length.fit(long_m, gsd) * (1.0 if width is None else width.fit(short_m, gsd))
        if fit == 0.0:
            continue
        fill = min(1.0, pixels / ((side_a + 1.0) * (side_b + 1.0)))
        measured = np.median(lab[cut][inside], axis=0)
        corners = [transform @ (float(x) + 0.5, float(y) + 0.5) for x, y in cv2.boxPoints(rect)]
        found.append(
            Candidate(
                box=Polygon(corners),
                length_m=long_m,
                width_m=short_m,
                lab=(float(measured[0]), float(measured[1]), float(measured[2])),
                colour_strength=min(1.0, float(np.median(strength[cut][inside]))),
                shape_fit=fill * fit,
                pixels=pixels,
            )
        )
    return sorted(found, key=lambda c: c.score, reverse=True)


def _cover(image: Floats, ground: Floats, strength: Floats, member: Mask) -> Floats:
    """Per pixel, the share of it the object covers, by linear unmixing in stretched RGB.

    A sensor pixel on an object's edge is a linear mix of the object's colour and the ground's, so
    the share is the pixel's projection onto the line from the ground's colour to the object's
    core colour. Lab is not linear in mixing (a pixel a third red already looks clearly red), so
    the edge is drawn here, at half cover, rather than at a Lab threshold.
    """
    core = member & (strength >= np.quantile(strength[member], 1.0 - CORE_SHARE))
    direction = np.median(image[core], axis=0) - np.median(ground[core], axis=0)
    norm = float(np.dot(direction, direction))
    if norm <= 0.0:
        return member.astype(np.float32)
    share: Floats = (((image - ground) @ direction) / norm).astype(np.float32)
    return share


def _footprint(side_a: float, side_b: float, pixels: int) -> float:
    """How much to add to each side of a box through pixel centres so that it covers the object's
    pixels: the growth that makes its area the pixel count, between 0 and 1 pixel. Centres of an
    axis-aligned object span one pixel less than it; those of a rotated one, less than that."""
    total = side_a + side_b
    grow = (-total + math.sqrt(total * total - 4.0 * (side_a * side_b - pixels))) / 2.0
    return min(max(grow, 0.0), 1.0)


# --- the edge: a site's observations in, detections out ------------------------------------------


@dataclass(frozen=True)
class Found:
    """One search result: the stored detection, its date and zone, and its evidence chip."""

    detection: Detection
    acquired: datetime
    zone: str | None
    chip: Path | None = None


@dataclass(frozen=True)
class Unsearched:
    """A date that was not searched, and why ("not resolvable at this GSD", cloudy, ...)."""

    observation_id: int
    acquired: datetime
    reason: str


@dataclass(frozen=True)
class FindResult:
    """A search of one site: results best first (all stored as detections), and dates left out."""

    site: str
    query: Query
    results: tuple[Found, ...]
    unsearched: tuple[Unsearched, ...]


def search(ws: Workspace, site_name: str, query: Query, *, limit: int = 10, chips: bool = True) -> FindResult:
    """Search every usable observation of SITE_NAME in the query's dates; store and rank the results.

    Every match is stored as a detection (replacing an earlier search's of the same colour on the
    same observations); the best LIMIT are returned, each with an evidence chip (a PNG in the
    workspace's reports folder) when CHIPS.

    Raises:
        NotFound: If the site, or the zone asked for, does not exist.
        UnknownName: If the colour is not a known name.
    """
    from sitewatch.activity.index import chosen_zones
    from sitewatch.analyze import usable

    query = replace(query, colour=colour_range(query.colour).name)
    site = ws.catalog.site(site_name)
    if query.zone is not None:
        chosen_zones(site, [query.zone])
    observations = [
        obs
        for obs in ws.catalog.observations(site)
        if (query.date_from is None or obs.acquired >= query.date_from)
        and (query.date_to is None or obs.acquired <= query.date_to)
    ]
    keep, skipped = usable(ws, observations)
    unsearched = [Unsearched(o.id or 0, o.acquired, skipped[o.id or 0]) for o in observations if o.id in skipped]
    found: list[Found] = []
    for obs in keep:
        matches, reason = search_observation(ws, site, obs, query)
        if reason is not None:
            unsearched.append(Unsearched(obs.id or 0, obs.acquired, reason))
            continue
        stored = ws.catalog.replace_detections(
            site, source=SOURCE, cls=CLASS, colour=query.colour, observation_ids=[obs.id or 0], detections=matches
        )
        found.extend(Found(d, obs.acquired, d.attrs.get("zone")) for d in stored)
    ranked = sorted(found, key=lambda f: (-f.detection.score, f.acquired))[:limit]
    if chips:
        by_id = {obs.id: obs for obs in keep}
        ranked = [
            Found(f.detection, f.acquired, f.zone, write_chip(ws, site, by_id[f.detection.observation_id], f, rank))
            for rank, f in enumerate(ranked, start=1)
        ]
    return FindResult(site.name, query, tuple(ranked), tuple(sorted(unsearched, key=lambda u: u.acquired)))


def search_observation(ws: Workspace, site: Site, obs: Observation, query: Query) -> tuple[list[Detection], str | None]:
    """The detections QUERY finds in one observation (not stored), or why it cannot be searched."""
    from sitewatch.activity.index import stored_fit
    from sitewatch.ingest.pipeline import scene_masks
    from sitewatch.masks import quality_masks
    from sitewatch.observations import read_layer, read_sensor_masks

    grid = SiteGrid.of(site)
    gsd = grid.gsd_at(obs.level)
    if not resolvable(gsd, query.length):
        return [], f"not resolvable at this GSD ({gsd:g} m: {query.length} is under {MIN_RESOLVABLE_PX:g} pixels)"
    scene = ws.catalog.scene(obs.scene_id)
    rgb = scene.rgb
    if rgb is None:
        return [], "no red, green and blue bands named in the scene"
    raw = read_layer(ws, obs, grid, obs.level)
    shape, transform = grid.shape_at(obs.level), grid.transform_at(obs.level)
    sensor = read_sensor_masks(scene_masks(ws, scene), grid.crs, transform, shape, ws.settings.limits)
    quality = quality_masks(
        raw.pixels, raw.valid, dtype=scene.dtype, band_names=scene.band_names, gsd=gsd, sensor=sensor
    )
    pixels = raw.pixels
    fit = stored_fit(obs, len(pixels))
    if fit is not None:  # onto the reference's radiometry, as the activity index does
        pixels = pixels * fit[0] + fit[1]
    inside = _zone_shapes(site)
    candidates = find_objects(
        pixels[list(rgb)], quality.usable, transform, gsd, colour_range(query.colour), query.length, query.width
    )
    detections = []
    for cand in candidates:
        zone = next((name for name, shape_ in inside.items() if shape_.contains(cand.box.centroid)), None)
        if query.zone is not None and zone != query.zone:
            continue
        detections.append(
            Detection(
                site_id=site.id or 0,
                observation_id=obs.id or 0,
                cls=CLASS,
                score=round(cand.score, 4),
                geometry=cand.box,
                length_m=round(cand.length_m, 2),
                width_m=round(cand.width_m, 2),
                source=SOURCE,
                colour=colour_range(query.colour).name,
                attrs={
                    "zone": zone,
                    "lab": [round(v, 1) for v in cand.lab],
                    "colour_strength": round(cand.colour_strength, 3),
                    "shape_fit": round(cand.shape_fit, 3),
                    "pixels": cand.pixels,
                    "gsd_m": gsd,
                    "query": query.to_json(),
                },
            )
        )
    return detections, None


def _zone_shapes(site: Site) -> dict[str, BaseGeometry]:
    """The site's zones in the site grid CRS, by name."""
    return {zone.name: to_crs(zone.geometry, "EPSG:4326", site.epsg) for zone in site.zones}


def write_chip(ws: Workspace, site: Site, obs: Observation, found: Found, rank: int) -> Path:
    """An evidence chip of one result (the observation around its box, outlined and captioned),
    as a PNG in the workspace's reports folder beside the site report."""
    from sitewatch.io.raster import open_raster
    from sitewatch.report.chips import Annotation, Outline, chip_view, display_bands, render_view, stretch_of
    from sitewatch.report.site import SYNTHETIC_MARK

    scene: Scene = ws.catalog.scene(obs.scene_id)
    path = ws.store / obs.path
    with open_raster(path, ws.settings.limits) as src:
        stretch = stretch_of(src, display_bands(src, scene.band_names))
        left, bottom, right, top = src.bounds
    det = found.detection
    view = chip_view(det.geometry, BoundingBox(left, bottom, right, top), obs.gsd)
    label = f"#{rank} {det.colour} {det.length_m:.1f} x {det.width_m:.1f} m"
    where = f"zone {found.zone}" if found.zone else "outside the zones"
    provider = scene.provider or "unknown provider"
    caption = (
        f"{obs.acquired:%Y-%m-%d %H:%M} UTC | {provider} | {obs.gsd:.2f} m | {where} | score {det.score:.2f}",
        f"{scene.attribution or 'no attribution recorded'} | {scene.licence or 'licence not recorded'}",
    )
    synthetic = SYNTHETIC_MARK in provider.lower()
    uri = render_view(
        path,
        view,
        stretch=stretch,
        outlines=[Outline(det.geometry, (0, 255, 255), label)],
        annotation=Annotation(
            f"{obs.acquired:%Y-%m-%d}",
            caption,
            {"Title": f"{site.name}: {label}", "Source": provider, "Copyright": scene.attribution or ""},
            warning="SYNTHETIC DEMO IMAGERY: NOT A REAL PLACE OR EVENT" if synthetic else None,
        ),
    )
    out = ws.reports / f"{slug(site.name)}-find" / f"{rank:02d}-{obs.acquired:%Y-%m-%d}-{det.id}.png"
    with atomic_path(out, make_parents=True) as tmp:
        tmp.write_bytes(base64.b64decode(uri.split(",", 1)[1]))
    return out
