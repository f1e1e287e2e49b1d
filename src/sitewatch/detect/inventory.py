"""The detection stage: vehicles and containers on every date of a site that is fine enough to show them.

For each usable observation (:func:`sitewatch.analyze.usable`: cloudy, mostly empty and unaligned
ones are left out, each with its reason) the object detector (:mod:`sitewatch.detect.base`, run by
:func:`sitewatch.detect.sliced.detect_array`) looks at the observation as stored, aligned on the site
grid at its own level, so nothing is blown up or thrown away. What it finds is kept where the box's
centre lies inside the site on a clear pixel (no cloud, cloud shadow, saturation or no-data: the
same clear pixels every stage uses, :func:`sitewatch.observations.read_clear_layer`), and stored as
detections in the site grid's CRS with the source ``detector:<name>``.

Every pass is recorded (:class:`~sitewatch.catalog.models.DetectionRun`), found objects or not, with
the share of the site and of each zone that could be seen. That record is what tells 0 (looked,
found nothing) from "n/a" (too coarse: "not resolvable at 3 m"; never looked; too cloudy), and what
makes the stage idempotent: a pass is repeated only when the model, the observation's file (it is
rewritten when realigned) or the site's zones have changed, or when asked to; a new pass replaces the
observation's detections of that source.

:func:`count_in_areas` and :func:`site_counts` turn the stored detections into counts per class,
area and date for the activity series.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import numpy as np
from rasterio.features import geometry_mask
from shapely.geometry import Polygon
from shapely.geometry.base import BaseGeometry

from sitewatch import __version__
from sitewatch.catalog.models import Detection, DetectionRun, Observation, Scene, Site
from sitewatch.detect.base import AUTO, ObjectDetector, get, names
from sitewatch.detect.model import LearnedDetector
from sitewatch.detect.sliced import detect_array
from sitewatch.errors import NotFound
from sitewatch.grid import SiteGrid, to_crs
from sitewatch.observations import ObservationDone, read_clear_layer
from sitewatch.workspace import Workspace

if TYPE_CHECKING:
    from affine import Affine

#: Detections of an object detector are stored with this prefix before its name.
SOURCE_PREFIX = "detector:"
#: Why a date has no counts when the detection stage has not looked at it.
NOT_COUNTED = "objects not counted yet (run `sitewatch analyze`)"
#: ... or looked at an earlier version of it, or before the site's zones were as they are now.
STALE = "observation or zones changed since its objects were counted (run `sitewatch analyze`)"

#: Areas of a site: None is the whole site, else a zone's name.
Areas = Mapping[str | None, BaseGeometry]


def source_of(detector: str) -> str:
    """The detections' source for the detector named DETECTOR."""
    return f"{SOURCE_PREFIX}{detector}"


def model_id(detector: ObjectDetector) -> str:
    """What a detector's output depends on: its name and, for the learned one, its model file's hash.

    A new model gives a new identity, so its first run redoes every date.
    """
    if isinstance(detector, LearnedDetector):
        digest = hashlib.sha256()
        with detector.card.path.open("rb") as model:
            for block in iter(lambda: model.read(1 << 20), b""):
                digest.update(block)
        operating = detector.operating_score()
        return f"{detector.name} {detector.card.name} sha256:{digest.hexdigest()[:16]} op {operating:g}"
    return f"{detector.name} sitewatch {__version__}"


def site_areas(site: Site) -> dict[str | None, BaseGeometry]:
    """The whole site (None) and each zone, clipped to the site, in the site grid's CRS."""
    outline = to_crs(site.geometry, "EPSG:4326", site.epsg)
    areas: dict[str | None, BaseGeometry] = {None: outline}
    for zone in site.zones:
        areas[zone.name] = to_crs(zone.geometry, "EPSG:4326", site.epsg).intersection(outline)
    return areas


def count_in_areas(
    detections: Iterable[Detection], areas: Areas, classes: Sequence[str]
) -> dict[str | None, dict[str, int]]:
    """Detections per area and class; a detection is in an area when its box's centre is.

    Every class in CLASSES is counted, zero included; a detection of another class adds its own.
    """
    counts: dict[str | None, dict[str, int]] = {name: dict.fromkeys(classes, 0) for name in areas}
    for det in detections:
        centre = det.geometry.centroid
        for name, area in areas.items():
            if area.contains(centre):
                counts[name][det.cls] = counts[name].get(det.cls, 0) + 1
    return counts


# --- one observation ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Seen:
    """What the detector kept in one observation, with the share of each area it could see."""

    detections: list[Detection]
    counts: dict[str, int]
    clear: dict[str | None, float]
    resolvable: bool
    reason: str | None


def detect_in_layer(
    pixels: np.ndarray,
    clear: np.ndarray,
    transform: Affine,
    gsd: float,
    areas: Areas,
    detector: ObjectDetector,
    *,
    site_id: int = 0,
    observation_id: int = 0,
    rgb: tuple[int, int, int] | None = None,
) -> Seen:
    """Objects in one observation's ``(bands, rows, cols)`` PIXELS (CLEAR: the pixels that could be
    seen; TRANSFORM: its pixel-corner georeference), kept where their centre is clear and inside the
    site (``AREAS[None]``), as catalog detections in TRANSFORM's CRS. Pure: nothing is read or stored."""
    shape = clear.shape
    shares = {name: _clear_share(area, clear, transform) for name, area in areas.items()}
    if not detector.resolvable(gsd):
        reason = f"not resolvable at {gsd:g} m (the {detector.name} detector needs {detector.max_gsd:g} m or finer)"
        return Seen([], dict.fromkeys(detector.classes, 0), shares, False, reason)
    inside = clear & _mask(areas[None], shape, transform)
    kept: list[Detection] = []
    threshold = detector.operating_score()
    for found in detect_array(pixels, gsd, detector, rgb=rgb).detections:
        if found.score < threshold:
            continue
        col, row = (round(v) for v in found.centre)
        if not (0 <= row < shape[0] and 0 <= col < shape[1] and inside[row, col]):
            continue
        length, width = found.size_px()
        kept.append(
            Detection(
                site_id=site_id,
                observation_id=observation_id,
                cls=found.cls,
                score=round(float(found.score), 4),
                geometry=Polygon([transform @ (x + 0.5, y + 0.5) for x, y in found.corners]),
                length_m=round(length * gsd, 2),
                width_m=round(width * gsd, 2),
                source=source_of(detector.name),
                attrs={"gsd_m": gsd},
            )
        )
    counts = dict.fromkeys(detector.classes, 0)
    for det in kept:
        counts[det.cls] = counts.get(det.cls, 0) + 1
    return Seen(kept, counts, shares, True, None)


def _mask(area: BaseGeometry, shape: tuple[int, ...], transform: Affine) -> np.ndarray:
    """Pixels whose centre lies in AREA."""
    if area.is_empty:
        return np.zeros(shape, np.bool_)
    inside: np.ndarray = geometry_mask([area], out_shape=shape, transform=transform, invert=True)
    return inside


def _clear_share(area: BaseGeometry, clear: np.ndarray, transform: Affine) -> float:
    """Share of AREA's pixels that are clear (0 for an area off the grid)."""
    inside = _mask(area, clear.shape, transform)
    total = int(np.count_nonzero(inside))
    return round(int(np.count_nonzero(inside & clear)) / total, 4) if total else 0.0


# --- a site ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class InventoryResult:
    """What the detection stage did for one site."""

    site: str
    detector: str
    source: str
    model: str
    runs: tuple[DetectionRun, ...]  # the pass of every usable observation, in date order
    fresh: int  # passes made by this call (the others were already done with this model)
    skipped: dict[int, str]  # observation id -> why it was not looked at
    seconds: float

    @property
    def detections(self) -> int:
        """Objects stored over all dates."""
        return sum(sum(run.counts.values()) for run in self.runs)

    @property
    def not_resolvable(self) -> tuple[DetectionRun, ...]:
        """The passes whose GSD was too coarse for the detector."""
        return tuple(run for run in self.runs if not run.resolvable)


def inventory_site(
    ws: Workspace,
    site_name: str,
    *,
    detector: str | ObjectDetector = AUTO,
    force: bool = False,
    on_progress: Callable[[ObservationDone], None] | None = None,
) -> InventoryResult:
    """Run the object DETECTOR (a registry name, ``auto``, or an instance) over every usable
    observation of SITE_NAME and store what it finds (module docstring); with FORCE, look again at
    observations already done with this model.

    Raises:
        NotFound: If the site does not exist, or the detector named is unknown or not installed.
    """
    from sitewatch.analyze import usable

    started = time.perf_counter()
    method = get(detector) if isinstance(detector, str) else detector
    model, source = model_id(method), source_of(method.name)
    site = ws.catalog.site(site_name)
    keep, skipped = usable(ws, ws.catalog.observations(site))
    done = {run.observation_id: run for run in ws.catalog.detection_runs(site, source=source)}
    areas = site_areas(site)
    runs: list[DetectionRun] = []
    fresh = 0
    for number, obs in enumerate(keep, start=1):
        run = done.get(obs.id or 0)
        if force or run is None or run.model != model or not current(run, obs, areas):
            run = detect_observation(ws, site, obs, method, model, areas)
            fresh += 1
        runs.append(run)
        if on_progress is not None:
            on_progress(ObservationDone(obs, number, len(keep)))
    return InventoryResult(
        site.name, method.name, source, model, tuple(runs), fresh, skipped, time.perf_counter() - started
    )


def current(run: DetectionRun, obs: Observation, areas: Areas) -> bool:
    """Whether RUN looked at OBS as it is now (the same file) with the site's zones as they are now."""
    return run.observation_path == obs.path and set(run.clear) == set(areas)


def detect_observation(
    ws: Workspace, site: Site, obs: Observation, detector: ObjectDetector, model: str, areas: Areas
) -> DetectionRun:
    """Look at one observation (at its own level) and store the pass and its detections."""
    started = time.perf_counter()
    grid = SiteGrid.of(site)
    scene: Scene = ws.catalog.scene(obs.scene_id)
    layer = read_clear_layer(ws, obs, scene, grid, obs.level)  # a coarse one is small: read it for its clear shares
    seen = detect_in_layer(
        layer.pixels,
        layer.valid,
        grid.transform_at(obs.level),
        grid.gsd_at(obs.level),
        areas,
        detector,
        site_id=site.id or 0,
        observation_id=obs.id or 0,
        rgb=scene.rgb,
    )
    run = DetectionRun(
        site_id=site.id or 0,
        observation_id=obs.id or 0,
        source=source_of(detector.name),
        model=model,
        observation_path=obs.path,
        gsd=grid.gsd_at(obs.level),
        resolvable=seen.resolvable,
        reason=seen.reason,
        counts=seen.counts,
        clear=seen.clear,
        seconds=round(time.perf_counter() - started, 3),
        created=datetime.now(UTC),
    )
    return ws.catalog.record_detection_run(run, seen.detections)


# --- counts for the activity series ---------------------------------------------------------------


@dataclass(frozen=True)
class DateCounts:
    """One date's counts per area and class, or why it has none."""

    observation_id: int
    acquired: datetime
    counts: dict[str | None, dict[str, int]] | None  # None: no counts that date (REASON says why)
    clear: dict[str | None, float]  # share of each area that could be seen
    reason: str | None = None


@dataclass(frozen=True)
class SiteCounts:
    """A site's object counts per date, from one detector's stored passes."""

    source: str | None  # None when no detector has looked at the site
    classes: tuple[str, ...]
    dates: tuple[DateCounts, ...]


def site_counts(ws: Workspace, site: Site, *, detector: str | None = None) -> SiteCounts:
    """The stored counts of SITE per date, area and class, from DETECTOR's passes (default: the
    detector that looked at the site last). Reads only; dates never looked at say so.

    Raises:
        NotFound: If no detector has the name DETECTOR.
    """
    from sitewatch.analyze import usable

    if detector is not None and detector not in names():
        raise NotFound(f"no object detector {detector!r} (known: {', '.join(names())})")
    runs = ws.catalog.detection_runs(site, source=None if detector is None else source_of(detector))
    if detector is not None:
        source = source_of(detector)
    elif runs:
        source = runs[0].source
    else:
        return SiteCounts(None, (), ())
    observations = ws.catalog.observations(site)
    by_obs = {run.observation_id: run for run in runs if run.source == source}
    found: dict[int, list[Detection]] = {}
    for det in ws.catalog.detections(site, source=source):
        found.setdefault(det.observation_id, []).append(det)
    classes = tuple(dict.fromkeys(cls for run in by_obs.values() for cls in run.counts))
    _, skipped = usable(ws, observations)
    areas = site_areas(site)
    dates = []
    for obs in observations:
        run = by_obs.get(obs.id or 0)
        if obs.id in skipped or run is None or not current(run, obs, areas) or not run.resolvable:
            reason = skipped.get(obs.id or 0) or _why_not(run, obs, areas)
            dates.append(DateCounts(obs.id or 0, obs.acquired, None, {}, reason))
        else:
            counts = count_in_areas(found.get(obs.id or 0, []), areas, classes)
            dates.append(DateCounts(obs.id or 0, obs.acquired, counts, run.clear))
    return SiteCounts(source, classes, tuple(dates))


def _why_not(run: DetectionRun | None, obs: Observation, areas: Areas) -> str:
    """Why a usable observation has no counts from RUN (its detector's pass over it, if any)."""
    if run is None:
        return NOT_COUNTED
    if not current(run, obs, areas):
        return STALE
    return run.reason or "not resolvable"
