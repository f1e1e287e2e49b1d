"""The site's change stage: compare consecutive usable observations, follow each change through the
whole series, and store the changes, persistent or transient and dated.

Pure work happens in :mod:`sitewatch.change` (arrays in, arrays and polygons out; the time series in
:mod:`sitewatch.change.history`); this module is the edge that reads observations from the store and
writes changes to the catalog and GeoJSON. Two observations are compared at the coarser of their
levels, on the site grid, so they line up; cloud, cloud shadow and saturated pixels are left out.
Radiometry is the detector's business (CVA standardises each band of each date); the alignment stage
records each observation's fit. Observations left out (cloudy, unaligned, mostly empty) still count
in the series, as dates that could not show anything: a change across one is dated more widely.
"""

from __future__ import annotations

import itertools
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from shapely.geometry import mapping

from sitewatch.catalog.models import Alert, Change, Observation, Scene, Site
from sitewatch.change import registry
from sitewatch.change.history import Candidate, Event, Stack, follow
from sitewatch.change.registry import AUTO
from sitewatch.change.vectorize import ChangePolygon
from sitewatch.detect.base import AUTO as AUTO_OBJECTS
from sitewatch.detect.inventory import InventoryResult, inventory_site
from sitewatch.errors import InputError
from sitewatch.grid import SiteGrid, to_crs
from sitewatch.io.files import atomic_path
from sitewatch.observations import Layer, ObservationDone, read_clear_layer
from sitewatch.watch.evaluate import evaluate_rules
from sitewatch.workspace import Workspace, slug

log = logging.getLogger(__name__)

#: Observations with less valid data than this are not compared (reason kept in the result).
MIN_VALID_FRACTION = 0.5


@dataclass(frozen=True)
class PairDone:
    """Progress event: one more pair of observations compared."""

    before: Observation
    after: Observation
    changes: int
    done: int
    total: int


@dataclass(frozen=True)
class AnalysisResult:
    """What ``analyze`` did for one site."""

    site: str
    detector: str
    pairs: int
    changes: list[Change]
    skipped: dict[int, str]  # observation id -> reason
    geojson: Path | None
    regions: int = 0  # change regions the pairs gave, before they were followed and merged into changes
    alerts: tuple[Alert, ...] = ()  # raised by watch rules on observations new to them
    objects: InventoryResult | None = None  # the detection stage (vehicles, containers); None when not run


def usable(ws: Workspace, observations: Sequence[Observation]) -> tuple[list[Observation], dict[int, str]]:
    """Observations fit to compare, and the reason each other one was left out."""
    keep, skipped = [], {}
    for obs in observations:
        if obs.valid_fraction < MIN_VALID_FRACTION:
            skipped[obs.id or 0] = f"only {obs.valid_fraction:.0%} of the site has data"
        elif "cloudy" in obs.flags:
            skipped[obs.id or 0] = "cloudy (thick cloud over much of the site)"
        elif not obs.reliable:
            skipped[obs.id or 0] = f"could not be aligned ({obs.align_reason})"
        else:
            keep.append(obs)
    return keep, skipped


def analyze_site(
    ws: Workspace,
    site_name: str,
    *,
    detector: str = AUTO,
    align: bool = True,
    objects: str | None = AUTO_OBJECTS,
    on_progress: Callable[[PairDone], None] | None = None,
    on_objects: Callable[[ObservationDone], None] | None = None,
) -> AnalysisResult:
    """Find change between consecutive usable observations, follow it through all of them; store and export it;
    then count objects on every date (the detection stage, :mod:`sitewatch.detect.inventory`).

    Each change region of a pair is followed through the site's series (see
    :mod:`sitewatch.change.history`): a change that stays is persistent, one that comes and goes is
    transient (one object's appearance and departure become one change), and each is dated to the
    last observation without it and the first with it. With ALIGN (the default) the observations are
    co-registered to their reference first, and any that cannot be aligned are left out with the
    reason. DETECTOR ``auto`` picks the best detector valid for the site's bands and GSD.

    OBJECTS names the object detector (``auto``: the learned one where installed, else the classic);
    None skips the detection stage. Dates it has already done with the same model are not redone,
    and dates too coarse for it are recorded as not resolvable, so counting adds little to a rerun.
    Last, the site's watch rules are evaluated on the observations new to them
    (:mod:`sitewatch.watch.evaluate`); the alerts they raise are in the result.

    Raises:
        InputError: If the detector named cannot run on this site's imagery (the message says why).
        NotFound: If the object detector named is unknown or not installed.
    """
    from sitewatch.change import get_detector, vectorize

    if align:
        from sitewatch.align.stage import align_site

        align_site(ws, site_name, only_new=True)
    site = ws.catalog.site(site_name)
    every = ws.catalog.observations(site)
    observations, skipped = usable(ws, every)
    scenes = {obs.id or 0: ws.catalog.scene(obs.scene_id) for obs in every}
    if site.base_gsd is None:
        return AnalysisResult(site.name, detector, 0, [], skipped, None)
    grid = SiteGrid.of(site)
    coarsest = grid.gsd_at(max((obs.level for obs in observations), default=0))
    name = _resolve(detector, [scenes[obs.id or 0] for obs in observations], coarsest)
    method = get_detector(name)()
    rgb = scenes[observations[0].id or 0].rgb if observations else None
    bands = list(rgb) if method.bands == "rgb" and rgb is not None else None
    pairs = list(itertools.pairwise(observations))
    masked: dict[tuple[int, int], Layer] = {}

    def layer(obs: Observation, level: int) -> Layer:
        """OBS at LEVEL with cloud, cloud shadow and saturation taken out of its valid mask (cached:
        most observations are in two pairs, and every one is in the time series)."""
        key = (obs.id or 0, level)
        if key not in masked:
            clear = read_clear_layer(ws, obs, scenes[obs.id or 0], grid, level)
            masked[key] = Layer(clear.pixels if bands is None else clear.pixels[bands], clear.valid)
        return masked[key]

    index = {obs.id or 0: i for i, obs in enumerate(every)}
    found: dict[int, list[tuple[Candidate, ChangePolygon]]] = {}  # level -> pair regions
    for number, (before, after) in enumerate(pairs, start=1):
        level = max(before.level, after.level)
        a, b = layer(before, level), layer(after, level)
        gsd = grid.gsd_at(level)
        result = method.detect(a.pixels, b.pixels, a.valid & b.valid, gsd)
        regions = vectorize(result, a.pixels, b.pixels, grid.transform_at(level), gsd)
        found.setdefault(level, []).extend(
            (Candidate(r.geometry, index[before.id or 0], index[after.id or 0], r.kind), r) for r in regions
        )
        if on_progress is not None:
            on_progress(PairDone(before, after, len(regions), number, len(pairs)))
    changes: list[Change] = []
    for level, followed in sorted(found.items()):
        images: list[np.ndarray | None] = []
        valid: list[np.ndarray | None] = []
        for obs in every:
            seen = obs.id not in skipped and obs.level <= level  # a coarser image is never blown up
            images.append(layer(obs, level).pixels if seen else None)
            valid.append(layer(obs, level).valid if seen else None)
        stack = Stack(images, valid, grid.transform_at(level), rgb=(0, 1, 2) if bands is not None else rgb)
        events = follow(stack, [candidate for candidate, _ in followed])
        changes.extend(
            _change(site, every, event, [followed[i][1] for i in event.members], name, grid.gsd_at(level))
            for event in events
        )
    stored = [c for c in ws.catalog.replace_changes(site, name, changes) if c.detector == name]
    geojson = export_changes(ws, site, stored, scenes)
    counted = None if objects is None else inventory_site(ws, site.name, detector=objects, on_progress=on_objects)
    fired = tuple(evaluate_rules(ws, site.name, detector=name))
    total = sum(map(len, found.values()))
    return AnalysisResult(site.name, name, len(pairs), stored, skipped, geojson, total, fired, counted)


def _resolve(detector: str, scenes: Sequence[Scene], gsd: float) -> str:
    """The detector to run: DETECTOR itself, or for ``auto`` the best valid one for SCENES at GSD.

    Raises:
        InputError: If the detector cannot run on these scenes (wrong bands, GSD out of range, no model).
    """
    band_count = min((scene.bands for scene in scenes), default=1)
    has_rgb = bool(scenes) and all(scene.rgb is not None for scene in scenes)
    name = registry.resolve(detector, band_count, has_rgb, gsd)
    why = registry.valid_for(registry.get(name), band_count, has_rgb, gsd) if scenes else None
    if why is not None:
        raise InputError(f"detector {name!r}", why)
    return name


def _change(
    site: Site,
    observations: Sequence[Observation],
    event: Event,
    regions: Sequence[ChangePolygon],
    detector: str,
    gsd: float,
) -> Change:
    """The catalog record of one followed EVENT, made of its pair REGIONS (in the event's order)."""
    trace = event.trace
    before, after = observations[trace.last_before], observations[trace.first_after]
    first = regions[0]
    single_area = first.area_m2 if first.area_m2 is not None else first.area_px * gsd * gsd
    return Change(
        site_id=site.id or 0,
        before_id=before.id or 0,
        after_id=after.id or 0,
        kind=event.kind,
        geometry=event.geometry,
        area_m2=single_area if len(regions) == 1 else float(event.geometry.area),
        confidence=max(r.confidence for r in regions),
        date_from=before.acquired,
        date_to=after.acquired,
        detector=detector,
        attrs={"pair_regions": float(len(regions))},
        persistence=trace.persistence,
        persistence_reason=trace.reason,
        unseen=tuple(observations[t].acquired for t in trace.unseen),
        ended=None if trace.ended is None else observations[trace.ended].acquired,
        history=tuple((obs.id or 0, state) for obs, state in zip(observations, trace.states, strict=True)),
    )


def change_properties(change: Change) -> dict[str, Any]:
    """What every export of a change says about it (GeoJSON files, the workbench): kind, measures,
    the interval it happened in, the dates that widen it, and how it held up over time."""
    return {
        "kind": change.kind,
        "area_m2": round(change.area_m2, 1),
        "confidence": round(change.confidence, 3),
        "date_from": change.date_from.isoformat(),
        "date_to": change.date_to.isoformat(),
        "persistence": change.persistence,
        "persistence_reason": change.persistence_reason,
        "unseen_dates": [when.isoformat() for when in change.unseen],
        "ended": None if change.ended is None else change.ended.isoformat(),
        "detector": change.detector,
    }


def changes_geojson(site: Site, changes: Sequence[Change], scenes_by_obs: dict[int, Scene]) -> dict[str, Any]:
    """Changes as a WGS84 FeatureCollection carrying dates, persistence, provider and attribution of both images.

    ``date_from`` and ``date_to`` bound when the change happened; ``unseen_dates`` are observations
    in between that could not show the place (they are why the interval is that wide).
    """
    dates = {obs_id: scene.acquired for obs_id, scene in scenes_by_obs.items()}
    features = []
    for change in changes:
        before, after = scenes_by_obs.get(change.before_id), scenes_by_obs.get(change.after_id)
        props: dict[str, Any] = {
            "site": site.name,
            **change_properties(change),
            "history": [
                {"date": dates[obs_id].isoformat(), "state": state}
                for obs_id, state in change.history
                if obs_id in dates
            ],
        }
        for role, scene in (("before", before), ("after", after)):
            if scene is not None:
                props[f"{role}_provider"] = scene.provider
                props[f"{role}_attribution"] = scene.attribution
                props[f"{role}_licence"] = scene.licence
        geometry = to_crs(change.geometry, site.epsg, "EPSG:4326")
        features.append({"type": "Feature", "geometry": mapping(geometry), "properties": props})
    return {"type": "FeatureCollection", "features": features}


def export_changes(ws: Workspace, site: Site, changes: Sequence[Change], scenes_by_obs: dict[int, Scene]) -> Path:
    """Write the site's changes as GeoJSON in the workspace's exports folder."""
    out = ws.exports / f"{slug(site.name)}-changes.geojson"
    with atomic_path(out, make_parents=True) as tmp:
        tmp.write_text(json.dumps(changes_geojson(site, changes, scenes_by_obs), indent=1), encoding="utf-8")
    return out
