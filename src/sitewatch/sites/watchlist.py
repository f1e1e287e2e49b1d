"""New sites (with their grid frame) and the watchlist as one GeoJSON FeatureCollection."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from shapely.geometry import mapping
from shapely.geometry.base import BaseGeometry

from sitewatch.catalog.models import Site, Zone
from sitewatch.errors import GeometryError
from sitewatch.grid import grid_frame
from sitewatch.settings import DEFAULT_LIMITS, Limits
from sitewatch.sites.geometry import check_site_geometry, features_of, load_geojson


def new_site(
    name: str,
    geometry: BaseGeometry,
    *,
    tags: Sequence[str] = (),
    zones: Sequence[Zone] = (),
    gsd: float | None = None,
) -> Site:
    """A site record with its grid frame (local UTM zone, origin, extent); GSD pinned if given."""
    name = name.strip()
    if not name or len(name) > 200 or any(ord(c) < 32 for c in name):
        raise GeometryError("NAME", f"site names are 1–200 printable characters, got {name!r}")
    if gsd is not None and not (0.01 <= gsd <= 1000):
        raise GeometryError("--gsd", f"GSD must be between 0.01 and 1000 metres, got {gsd}")
    epsg, origin_x, origin_y, extent_x, extent_y = grid_frame(geometry)
    for zone in zones:
        if not geometry.buffer(1e-6).contains(zone.geometry):
            raise GeometryError(zone.name, "zone is not inside its site")
    return Site(
        name=name,
        geometry=geometry,
        epsg=epsg,
        origin_x=origin_x,
        origin_y=origin_y,
        extent_x=extent_x,
        extent_y=extent_y,
        base_gsd=gsd,
        gsd_pinned=gsd is not None,
        tags=tuple(sorted(set(tags))),
        zones=tuple(zones),
    )


def export_watchlist(sites: Sequence[Site]) -> dict[str, Any]:
    """Sites and zones as one FeatureCollection: ``kind`` is ``site`` or ``zone``, zones name their site."""
    features: list[dict[str, Any]] = []
    for site in sites:
        props: dict[str, Any] = {"kind": "site", "name": site.name, "tags": list(site.tags)}
        if site.gsd_pinned:
            props["gsd"] = site.base_gsd
        features.append({"type": "Feature", "geometry": mapping(site.geometry), "properties": props})
        for zone in site.zones:
            zone_props = {"kind": "zone", "name": zone.name, "site": site.name}
            features.append({"type": "Feature", "geometry": mapping(zone.geometry), "properties": zone_props})
    return {"type": "FeatureCollection", "features": features}


def import_watchlist(path: Path, limits: Limits = DEFAULT_LIMITS) -> list[Site]:
    """Sites (with zones) from a watchlist FeatureCollection; features without ``kind`` are sites."""
    features = features_of(load_geojson(path, limits), path)
    sites: dict[str, dict[str, Any]] = {}
    zones: list[tuple[str, Zone]] = []
    for number, (geometry, props) in enumerate(features):
        name = props.get("name")
        if not isinstance(name, str) or not name.strip():
            raise GeometryError(path, f"feature {number} has no 'name' property")
        check_site_geometry(geometry, f"{path} (feature {number})")
        if props.get("kind", "site") == "zone":
            site_name = props.get("site")
            if not isinstance(site_name, str):
                raise GeometryError(path, f"zone {name!r} does not name its 'site'")
            zones.append((site_name, Zone(name=name, geometry=geometry)))
        else:
            tags = props.get("tags", [])
            if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
                raise GeometryError(path, f"site {name!r}: 'tags' must be a list of strings")
            gsd = props.get("gsd")
            sites[name] = {
                "geometry": geometry,
                "tags": tags,
                "gsd": float(gsd) if gsd else None,
                "zones": [],
            }
    for site_name, zone in zones:
        if site_name not in sites:
            raise GeometryError(path, f"zone {zone.name!r} names unknown site {site_name!r}")
        sites[site_name]["zones"].append(zone)
    return [new_site(name, s["geometry"], tags=s["tags"], zones=s["zones"], gsd=s["gsd"]) for name, s in sites.items()]


def write_watchlist(sites: Sequence[Site], out: Path) -> Path:
    """Write the watchlist GeoJSON atomically."""
    from sitewatch.io.files import atomic_path

    with atomic_path(out) as tmp:
        tmp.write_text(json.dumps(export_watchlist(sites), indent=1), encoding="utf-8")
    return out
