"""Annotations: an analyst's points and polygons on a site, labelled and noted, drawn on one image or on
the site in general; added, edited, removed, exported as GeoJSON and imported back.

Every geometry is user input (typed, clicked, or read from a file someone sent), so each is checked:
a Point, Polygon or MultiPolygon with finite lon/lat, valid, of at most MAX_VERTICES vertices, and on
or within about NEAR_SITE_M of the site (its bounding box, enlarged), since a mark anywhere else on
Earth is a mistake (lon and lat swapped, the wrong site). An import is checked whole before anything
is written, and written in one transaction.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import replace
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import shapely
from pyproj import Geod
from shapely.errors import ShapelyError
from shapely.geometry import Point, box, mapping, shape
from shapely.geometry.base import BaseGeometry
from shapely.validation import explain_validity

from sitewatch.catalog.db import utc_text
from sitewatch.catalog.models import Annotation, Observation, Site
from sitewatch.errors import GeometryError, InputError
from sitewatch.io.files import atomic_path
from sitewatch.review import text
from sitewatch.review.text import as_utc, check_label, check_name, check_text, parse_when
from sitewatch.settings import DEFAULT_LIMITS, Limits
from sitewatch.sites.geometry import load_geojson
from sitewatch.workspace import Workspace, slug

MAX_LABEL = text.MAX_LABEL  # the limits of every analyst's text (events share them)
MAX_NOTE = text.MAX_NOTE
GEOMETRY_TYPES = ("Point", "Polygon", "MultiPolygon")
MAX_VERTICES = 10_000
#: Features in one import. The file itself is capped by ``Limits.max_json_bytes``, the cap of every
#: GeoJSON document sitewatch reads: this count and MAX_VERTICES bound the work inside it, and an
#: export of a busy site with long notes (5,000 notes of 5,000 characters is 25 MB) still imports back.
MAX_FEATURES = 5_000
NEAR_SITE_M = 1_000.0
_METRES_PER_DEGREE = 111_320.0  # of latitude; of longitude, times the cosine of the latitude


def check_annotation_geometry(geometry: BaseGeometry, where: str) -> BaseGeometry:
    """GEOMETRY in 2D if it can be an annotation: a Point, Polygon or MultiPolygon, not empty, of at most
    MAX_VERTICES vertices, finite lon/lat degrees, valid.

    Raises:
        GeometryError: Naming WHERE and the first problem found.
    """
    if geometry.geom_type not in GEOMETRY_TYPES:
        raise GeometryError(where, f"an annotation is a Point or a Polygon, not a {geometry.geom_type}")
    if geometry.is_empty:
        raise GeometryError(where, f"empty {geometry.geom_type}")
    vertices = int(shapely.get_num_coordinates(geometry))
    if vertices > MAX_VERTICES:
        raise GeometryError(where, f"{vertices} vertices ({MAX_VERTICES} at most)")
    flat = shapely.force_2d(geometry)
    coords = shapely.get_coordinates(flat)
    if not np.isfinite(coords).all():
        raise GeometryError(where, "a coordinate is not a finite number")
    if (np.abs(coords[:, 0]) > 180).any() or (np.abs(coords[:, 1]) > 90).any():
        raise GeometryError(where, "coordinates are not lon/lat degrees (GeoJSON is WGS84 longitude, latitude)")
    if not flat.is_valid:
        raise GeometryError(where, f"invalid {flat.geom_type} ({explain_validity(flat)})")
    return flat


def parse_annotation_geometry(data: dict[str, Any], where: str) -> BaseGeometry:
    """A GeoJSON geometry object as a checked annotation geometry (see :func:`check_annotation_geometry`).

    Raises:
        GeometryError: If DATA is not a Point, Polygon or MultiPolygon object, is malformed or fails a check.
    """
    return check_annotation_geometry(_shape(data, where), where)


def parse_point(value: str, source: str = "--point") -> BaseGeometry:
    """A point from ``LON,LAT`` in degrees.

    Raises:
        GeometryError: If VALUE is not two numbers, or not lon/lat.
    """
    try:
        lon, lat = (float(v) for v in value.split(","))
    except ValueError as exc:
        raise GeometryError(source, f"expected LON,LAT in degrees, got {value[:40]!r}") from exc
    return check_annotation_geometry(Point(lon, lat), source)


def read_annotation_geometry(path: Path, limits: Limits = DEFAULT_LIMITS) -> BaseGeometry:
    """The one geometry of a GeoJSON file: a geometry, a Feature, or a FeatureCollection of one feature.

    Raises:
        GeometryError: If the file is missing, too large, not GeoJSON, holds several features, or its
            geometry cannot be an annotation.
    """
    data: Any = load_geojson(path, limits)
    if data.get("type") == "FeatureCollection":
        features = data.get("features")
        if not isinstance(features, list) or len(features) != 1:
            raise GeometryError(path, "expected one feature (import several with `sitewatch annotate import`)")
        data = features[0]
    if isinstance(data, dict) and data.get("type") == "Feature":
        data = data.get("geometry")
    return parse_annotation_geometry(data, str(path))


def describe_place(geometry: BaseGeometry) -> str:
    """Where an annotation is, in words: a point's lat, lon; a polygon's area and centre."""
    centre = geometry.centroid
    where = f"{centre.y:.5f}, {centre.x:.5f}"
    if geometry.geom_type == "Point":
        return where
    area, _ = Geod(ellps="WGS84").geometry_area_perimeter(geometry)
    return f"{geometry.geom_type.lower()} of {abs(area):,.0f} m² around {where}"


def image_on(ws: Workspace, site_name: str, when: datetime | date) -> Observation:
    """The site's image of WHEN: the one taken at that time, else the first of that (UTC) day.

    Raises:
        NotFound: If there is no such site.
        InputError: If the site has no image that day (the message names the nearest).
    """
    site = ws.catalog.site(site_name)
    observations = ws.catalog.observations(site)
    moment = as_utc(when)
    found = _image_on(observations, moment)
    if found is None:
        nearest = min(observations, key=lambda o: abs(o.acquired - moment), default=None)
        hint = "it has no images yet" if nearest is None else f"the nearest is {nearest.acquired.date()}"
        raise InputError(str(moment.date()), f"site {site_name!r} has no image that day ({hint})")
    return found


def add_annotation(
    ws: Workspace,
    site_name: str,
    geometry: BaseGeometry,
    label: str,
    note: str = "",
    *,
    scene_id: int | None = None,
    author: str | None = None,
) -> Annotation:
    """Mark a point or polygon on a site; with SCENE_ID, on that image of it.

    Raises:
        NotFound: If there is no such site.
        InputError: If the label, note, author or geometry fails its check, the geometry is not near the
            site, or the scene is not an image of the site.
    """
    site = ws.catalog.site(site_name)
    now = datetime.now(UTC)
    [stored] = ws.catalog.add_annotations(
        [_annotation(site, _images(ws, site), geometry, label, note, scene_id, author, "annotation", now)]
    )
    return stored


def update_annotation(
    ws: Workspace, annotation_id: int, *, label: str | None = None, note: str | None = None
) -> Annotation:
    """Change an annotation's label or note (None: keep it as it is).

    Raises:
        NotFound: If there is no such annotation.
        InputError: If the new label or note fails its check.
    """
    current = ws.catalog.annotation(annotation_id)
    return ws.catalog.update_annotation(
        replace(
            current,
            label=current.label if label is None else check_label(label, "annotation label"),
            note=current.note if note is None else check_text(note, "annotation note"),
            updated=datetime.now(UTC),
        )
    )


def remove_annotation(ws: Workspace, annotation_id: int) -> Annotation:
    """Remove an annotation; returns it as it was.

    Raises:
        NotFound: If there is no such annotation.
    """
    return ws.catalog.remove_annotation(annotation_id)


def list_annotations(ws: Workspace, site_name: str) -> list[Annotation]:
    """A site's annotations, oldest first."""
    return ws.catalog.annotations(ws.catalog.site(site_name))


def annotation_feature(site: Site, annotation: Annotation) -> dict[str, Any]:
    """One annotation as a GeoJSON Feature (lon/lat), as exported and imported back."""
    return {
        "type": "Feature",
        "geometry": mapping(annotation.geometry),
        "properties": {
            "id": annotation.id,
            "label": annotation.label,
            "note": annotation.note,
            "scene_id": annotation.scene_id,
            "image_date": None if annotation.acquired is None else utc_text(annotation.acquired),
            "author": annotation.author,
            "created": utc_text(annotation.created),
            "updated": utc_text(annotation.updated),
            "site": site.name,
        },
    }


def annotations_geojson(ws: Workspace, site_name: str) -> dict[str, Any]:
    """A site's annotations as a GeoJSON FeatureCollection in lon/lat (see :func:`annotation_feature`)."""
    site = ws.catalog.site(site_name)
    return {
        "type": "FeatureCollection",
        "features": [annotation_feature(site, a) for a in ws.catalog.annotations(site)],
    }


def export_annotations(ws: Workspace, site_name: str, out: Path | None = None) -> Path:
    """Write a site's annotations as GeoJSON to OUT (default: the workspace's exports folder), atomically.

    Raises:
        InputError: If OUT cannot be written.
    """
    data = annotations_geojson(ws, site_name)
    target = out if out is not None else ws.exports / f"{slug(site_name)}-annotations.geojson"
    with atomic_path(target, make_parents=out is None) as tmp:
        tmp.write_text(json.dumps(data, indent=1, ensure_ascii=False), encoding="utf-8")
    return target


def import_annotations(
    ws: Workspace, site_name: str, data: bytes, *, source: str, limits: Limits = DEFAULT_LIMITS
) -> list[Annotation]:
    """Add the annotations of a GeoJSON FeatureCollection (or one Feature), all or none.

    Each feature needs ``properties.label``; ``note`` and ``author`` are taken if given. The image is
    ``scene_id`` if that scene is an image of this site (an export of this workspace), else the site's
    image of ``image_date`` (another workspace of the same imagery), else none: then ``image_date``, if
    given, is kept as the date. Ids and times are new.

    Raises:
        NotFound: If there is no such site.
        InputError: Naming SOURCE, the feature and the problem, if anything in DATA fails a check.
    """
    site = ws.catalog.site(site_name)
    features = _features(data, source, limits)
    images = _images(ws, site)
    now = datetime.now(UTC)
    annotations = [_imported(site, images, item, f"{source} features[{n}]", now) for n, item in enumerate(features)]
    return ws.catalog.add_annotations(annotations)


def import_annotations_file(
    ws: Workspace, site_name: str, path: Path, *, limits: Limits = DEFAULT_LIMITS
) -> list[Annotation]:
    """:func:`import_annotations` of a file, read no further than the size limit.

    Raises:
        InputError: If the file cannot be read, or as :func:`import_annotations`.
    """
    try:
        with path.open("rb") as stream:
            data = stream.read(limits.max_json_bytes + 1)
    except OSError as exc:
        raise InputError(path, f"cannot read ({exc.strerror or exc})") from exc
    return import_annotations(ws, site_name, data, source=str(path), limits=limits)


def _images(ws: Workspace, site: Site) -> dict[int, Observation]:
    """The site's images, by scene id (an annotation names the scene: observations get rebuilt)."""
    return {obs.scene_id: obs for obs in ws.catalog.observations(site)}


def _image_on(observations: Iterable[Observation], when: datetime) -> Observation | None:
    ordered = sorted(observations, key=lambda o: (o.acquired, o.id or 0))
    exact = next((o for o in ordered if o.acquired == when), None)
    return exact or next((o for o in ordered if o.acquired.date() == when.date()), None)


def _shape(data: Any, where: str) -> BaseGeometry:
    """A GeoJSON Point, Polygon or MultiPolygon object as shapely, unchecked."""
    if not isinstance(data, dict):
        raise GeometryError(where, "no geometry object")
    kind = data.get("type")
    if kind not in GEOMETRY_TYPES:
        raise GeometryError(where, f"an annotation is a Point or a Polygon, not {str(kind)[:40]!r}")
    try:
        return shape(data)
    except (ValueError, TypeError, AttributeError, KeyError, IndexError, ShapelyError) as exc:
        raise GeometryError(where, f"malformed {kind} ({exc})") from exc


def _near_site(site: Site, geometry: BaseGeometry, where: str) -> None:
    """Refuse GEOMETRY unless it meets the site's bounding box enlarged by about NEAR_SITE_M (in degrees:
    no reprojection, so a polygon spanning half the globe costs nothing to refuse)."""
    west, south, east, north = site.geometry.bounds
    dlat = NEAR_SITE_M / _METRES_PER_DEGREE
    dlon = dlat / max(math.cos(math.radians(max(abs(south), abs(north)))), 0.01)
    if not box(west - dlon, south - dlat, east + dlon, north + dlat).intersects(geometry):
        raise GeometryError(
            where, f"not within {NEAR_SITE_M / 1000:g} km of site {site.name!r} (lon and lat swapped, or another site?)"
        )


def _annotation(
    site: Site,
    images: dict[int, Observation],
    geometry: BaseGeometry,
    label: str,
    note: str,
    scene_id: int | None,
    author: str | None,
    where: str,
    now: datetime,
    acquired: datetime | None = None,
) -> Annotation:
    """A checked, unstored annotation; ACQUIRED is its date where it names no image of the site."""
    checked = check_annotation_geometry(geometry, f"{where} geometry")
    _near_site(site, checked, f"{where} geometry")
    if scene_id is not None and scene_id not in images:
        raise InputError(f"{where} scene_id", f"scene {scene_id} is not an image of site {site.name!r}")
    return Annotation(
        site_id=site.id or 0,
        geometry=checked,
        label=check_label(label, f"{where} label"),
        note=check_text(note, f"{where} note"),
        scene_id=scene_id,
        acquired=acquired if scene_id is None else images[scene_id].acquired,
        author=check_name(author, f"{where} author"),
        created=now,
        updated=now,
    )


def _features(data: bytes, source: str, limits: Limits) -> list[Any]:
    """The features of a GeoJSON FeatureCollection or Feature, size- and count-limited."""
    if len(data) > limits.max_json_bytes:
        raise InputError(source, f"larger than the {limits.max_json_bytes} byte limit for GeoJSON")
    try:
        doc = json.loads(data.decode("utf-8-sig"))
    except (ValueError, RecursionError) as exc:  # JSON and Unicode errors are ValueErrors
        raise InputError(source, f"not valid JSON ({exc})") from exc
    kind = doc.get("type") if isinstance(doc, dict) else None
    if kind == "Feature":
        return [doc]
    if kind != "FeatureCollection" or not isinstance(doc.get("features"), list):
        raise InputError(source, "not a GeoJSON FeatureCollection or Feature")
    features: list[Any] = doc["features"]
    if len(features) > MAX_FEATURES:
        raise InputError(source, f"{len(features)} features ({MAX_FEATURES} at most in one import)")
    return features


def _imported(site: Site, images: dict[int, Observation], item: Any, where: str, now: datetime) -> Annotation:
    """One feature of an import as a checked, unstored annotation."""
    if not isinstance(item, dict) or item.get("type") != "Feature":
        raise InputError(where, "not a GeoJSON Feature")
    props = item.get("properties")
    if not isinstance(props, dict) or not isinstance(props.get("label"), str):
        raise InputError(where, "has no properties.label (every annotation needs a label)")
    for key in ("note", "author"):
        if not isinstance(props.get(key), str | None):
            raise InputError(f"{where} {key}", "is not a string or null")
    scene_id, acquired = _image_of(props, images, where)
    if item.get("geometry") is None:
        raise GeometryError(f"{where} geometry", "missing (a Point or Polygon object is needed)")
    geometry = _shape(item["geometry"], f"{where} geometry")  # checked with the rest, below
    return _annotation(
        site,
        images,
        geometry,
        props["label"],
        props.get("note") or "",
        scene_id,
        props.get("author"),
        where,
        now,
        acquired,
    )


def _image_of(props: dict[str, Any], images: dict[int, Observation], where: str) -> tuple[int | None, datetime | None]:
    """The scene and date an imported feature was drawn on (see :func:`import_annotations`)."""
    scene_id = props.get("scene_id")
    if scene_id is not None and (isinstance(scene_id, bool) or not isinstance(scene_id, int)):
        raise InputError(f"{where} scene_id", f"{str(scene_id)[:40]!r} is not a scene id (an integer) or null")
    if scene_id in images:
        return scene_id, images[scene_id].acquired
    text = props.get("image_date")
    if text is None:
        return None, None
    if not isinstance(text, str):
        raise InputError(f"{where} image_date", "is not a date string or null")
    when = parse_when(text, f"{where} image_date")
    found = _image_on(images.values(), when)
    return (None, when) if found is None else (found.scene_id, found.acquired)
