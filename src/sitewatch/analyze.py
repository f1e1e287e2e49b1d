"""The site's change stage: compare consecutive usable observations and store dated change polygons.

Pure work happens in :mod:`sitewatch.change` (arrays in, arrays and polygons out); this module is
the edge that reads observations from the store and writes changes to the catalog and GeoJSON.
Two observations are compared at the coarser of their levels, on the site grid, so they line up;
cloud, cloud shadow and saturated pixels are left out. Radiometry is the detector's business
(CVA standardises each band of each date); the alignment stage records each observation's fit.
"""

from __future__ import annotations

import itertools
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shapely.geometry import mapping

from sitewatch.catalog.models import Change, Observation, Scene, Site
from sitewatch.grid import SiteGrid, to_crs
from sitewatch.ingest.pipeline import scene_masks
from sitewatch.io.files import atomic_path
from sitewatch.masks import quality_masks
from sitewatch.observations import Layer, read_layer, read_sensor_masks
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
    detector: str = "cva",
    align: bool = True,
    on_progress: Callable[[PairDone], None] | None = None,
) -> AnalysisResult:
    """Find change between consecutive usable observations of a site; store and export it.

    With ALIGN (the default) the site's observations are co-registered to their reference first,
    and any that cannot be aligned are left out with the reason.
    """
    from sitewatch.change import get_detector, vectorize

    if align:
        from sitewatch.align.stage import align_site

        align_site(ws, site_name, only_new=True)
    site = ws.catalog.site(site_name)
    method = get_detector(detector)()
    observations, skipped = usable(ws, ws.catalog.observations(site))
    scenes = {obs.id or 0: ws.catalog.scene(obs.scene_id) for obs in observations}
    found: list[Change] = []
    if site.base_gsd is None:
        return AnalysisResult(site.name, detector, 0, [], skipped, None)
    grid = SiteGrid.of(site)
    pairs = list(itertools.pairwise(observations))
    masked: dict[tuple[int, int], Layer] = {}

    def layer(obs: Observation, level: int) -> Layer:
        """OBS at LEVEL with cloud, cloud shadow and saturation taken out of its valid mask (cached:
        most observations are in two pairs)."""
        key = (obs.id or 0, level)
        if key not in masked:
            raw = read_layer(ws, obs, grid, level)
            scene = scenes[obs.id or 0]
            sensor = read_sensor_masks(
                scene_masks(ws, scene), grid.crs, grid.transform_at(level), grid.shape_at(level), ws.settings.limits
            )
            quality = quality_masks(
                raw.pixels,
                raw.valid,
                dtype=scene.dtype,
                band_names=scene.band_names,
                gsd=grid.gsd_at(level),
                sensor=sensor,
            )
            masked[key] = Layer(raw.pixels, quality.usable)
        return masked[key]

    for number, (before, after) in enumerate(pairs, start=1):
        level = max(before.level, after.level)
        a, b = layer(before, level), layer(after, level)
        valid = a.valid & b.valid
        gsd = grid.gsd_at(level)
        result = method.detect(a.pixels, b.pixels, valid, gsd)
        regions = vectorize(result, a.pixels, b.pixels, grid.transform_at(level), gsd)
        pair_changes = [
            Change(
                site_id=site.id or 0,
                before_id=before.id or 0,
                after_id=after.id or 0,
                kind=region.kind,
                geometry=region.geometry,
                area_m2=region.area_m2 if region.area_m2 is not None else region.area_px * gsd * gsd,
                confidence=region.confidence,
                date_from=before.acquired,
                date_to=after.acquired,
                detector=detector,
            )
            for region in regions
        ]
        found.extend(pair_changes)
        if on_progress is not None:
            on_progress(PairDone(before, after, len(pair_changes), number, len(pairs)))
    stored = ws.catalog.replace_changes(site, detector, found)
    geojson = export_changes(ws, site, stored, scenes)
    return AnalysisResult(site.name, detector, len(pairs), stored, skipped, geojson)


def changes_geojson(site: Site, changes: Sequence[Change], scenes_by_obs: dict[int, Scene]) -> dict[str, Any]:
    """Changes as a WGS84 FeatureCollection carrying dates, provider and attribution of both images."""
    features = []
    for change in changes:
        before, after = scenes_by_obs.get(change.before_id), scenes_by_obs.get(change.after_id)
        props: dict[str, Any] = {
            "site": site.name,
            "kind": change.kind,
            "area_m2": round(change.area_m2, 1),
            "confidence": round(change.confidence, 3),
            "date_from": change.date_from.isoformat(),
            "date_to": change.date_to.isoformat(),
            "detector": change.detector,
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
