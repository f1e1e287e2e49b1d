"""Site and zone outlines in WGS84 lon/lat, from the three ways an analyst gives them."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from shapely.geometry import box, shape
from shapely.geometry.base import BaseGeometry
from shapely.ops import unary_union
from shapely.validation import explain_validity

from sitewatch.errors import GeometryError
from sitewatch.grid import to_crs, utm_epsg
from sitewatch.settings import DEFAULT_LIMITS, Limits

MAX_SITE_KM2 = 10_000.0  # a site is a place, not a country


def from_bbox(text: str) -> BaseGeometry:
    """A box from ``W,S,E,N`` in degrees, as a STAC bbox."""
    try:
        west, south, east, north = (float(v) for v in text.split(","))
    except ValueError as exc:
        raise GeometryError("--bbox", f"expected W,S,E,N in degrees, got {text!r}") from exc
    if not all(math.isfinite(v) for v in (west, south, east, north)):
        raise GeometryError("--bbox", f"non-finite value in {text!r}")
    if not (-180 <= west < east <= 180 and -90 <= south < north <= 90):
        raise GeometryError("--bbox", f"{text!r} is not W,S,E,N with W < E and S < N in degrees")
    return check_site_geometry(box(west, south, east, north), "--bbox")


def from_point(lon: float, lat: float, radius_m: float) -> BaseGeometry:
    """A circle of RADIUS_M metres around (LON, LAT), built in the local UTM zone."""
    if not (-180 <= lon <= 180 and -90 <= lat <= 90):
        raise GeometryError("--point", f"{lon},{lat} is not lon,lat in degrees")
    if not (0 < radius_m <= 50_000):
        raise GeometryError("--radius", f"radius must be in (0, 50000] metres, got {radius_m}")
    epsg = utm_epsg(lon, lat)
    centre = to_crs(shape({"type": "Point", "coordinates": (lon, lat)}), "EPSG:4326", epsg)
    return check_site_geometry(to_crs(centre.buffer(radius_m, quad_segs=16), epsg, "EPSG:4326"), "--point")


def load_geojson(path: Path, limits: Limits = DEFAULT_LIMITS) -> dict[str, Any]:
    """Parse a GeoJSON file, size-limited, as a dict (Feature, FeatureCollection or geometry)."""
    if not path.is_file():
        raise GeometryError(path, "no such file")
    if path.stat().st_size > limits.max_json_bytes:
        raise GeometryError(path, f"larger than the {limits.max_json_bytes} byte limit for GeoJSON")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise GeometryError(path, f"not valid JSON ({exc})") from exc
    if not isinstance(data, dict) or "type" not in data:
        raise GeometryError(path, "not GeoJSON: expected an object with a 'type'")
    crs = data.get("crs")
    if crs is not None and "CRS84" not in json.dumps(crs) and "4326" not in json.dumps(crs):
        raise GeometryError(path, "GeoJSON must be in WGS84 lon/lat (RFC 7946)")
    return data


def features_of(data: dict[str, Any], source: str | Path) -> list[tuple[BaseGeometry, dict[str, Any]]]:
    """(geometry, properties) of every feature in a parsed GeoJSON object."""
    kind = data.get("type")
    if kind == "FeatureCollection":
        items = data.get("features")
        if not isinstance(items, list):
            raise GeometryError(source, "FeatureCollection without a 'features' list")
    elif kind == "Feature":
        items = [data]
    else:
        items = [{"type": "Feature", "geometry": data, "properties": {}}]
    result = []
    for number, item in enumerate(items):
        if not isinstance(item, dict) or not isinstance(item.get("geometry"), dict):
            raise GeometryError(source, f"feature {number} has no geometry object")
        try:
            geometry = shape(item["geometry"])
        except (ValueError, TypeError, AttributeError, KeyError, IndexError) as exc:
            raise GeometryError(source, f"feature {number} has a malformed geometry ({exc})") from exc
        props = item.get("properties") or {}
        if not isinstance(props, dict):
            raise GeometryError(source, f"feature {number} has properties that are not an object")
        result.append((geometry, props))
    if not result:
        raise GeometryError(source, "no features")
    return result


def read_geojson_geometry(path: Path, limits: Limits = DEFAULT_LIMITS) -> BaseGeometry:
    """The union of every polygon in a GeoJSON file, as one site outline."""
    geometries = [g for g, _ in features_of(load_geojson(path, limits), path)]
    return check_site_geometry(unary_union(geometries), path)


def check_site_geometry(geometry: BaseGeometry, source: str | Path) -> BaseGeometry:
    """A valid, polygonal outline in lon/lat of a sensible size, or a GeometryError."""
    if geometry.is_empty:
        raise GeometryError(source, "empty geometry")
    if geometry.geom_type not in ("Polygon", "MultiPolygon"):
        raise GeometryError(source, f"a site or zone must be a polygon, got {geometry.geom_type}")
    if not geometry.is_valid:
        raise GeometryError(source, f"invalid polygon ({explain_validity(geometry)})")
    west, south, east, north = geometry.bounds
    if west < -180 or east > 180 or south < -90 or north > 90:
        raise GeometryError(source, "coordinates are not lon/lat degrees (GeoJSON is WGS84)")
    centre = geometry.centroid
    area_km2 = to_crs(geometry, "EPSG:4326", utm_epsg(centre.x, centre.y)).area / 1e6
    if area_km2 > MAX_SITE_KM2:
        raise GeometryError(source, f"{area_km2:.0f} km² is larger than a site ({MAX_SITE_KM2:.0f} km² at most)")
    return geometry
