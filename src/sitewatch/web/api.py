"""The JSON API under ``/api``: each route reads (or writes) through the library and serialises.

Handlers are plain functions, which FastAPI runs on its thread pool; each opens the workspace for
its own request (:func:`sitewatch.web.context.workspace`). Errors the library raises on purpose
become ``{"detail": one line}`` with a status (see :mod:`sitewatch.web.app`).
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, date, datetime, time
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from shapely.geometry.base import BaseGeometry
from starlette.concurrency import run_in_threadpool

from sitewatch.activity.index import chosen_zones
from sitewatch.analyze import usable
from sitewatch.catalog.models import Observation, Site
from sitewatch.detect.inventory import site_areas, site_counts
from sitewatch.errors import InputError, NotFound
from sitewatch.report.site import site_records
from sitewatch.web import serialise
from sitewatch.web.context import activity_cache, workspace
from sitewatch.web.security import MAX_UPLOAD_BYTES, read_body
from sitewatch.workspace import Workspace, slug

router = APIRouter(prefix="/api")

DayParam = Annotated[date | None, Query(description="A day, YYYY-MM-DD.")]
ZoneParam = Annotated[str | None, Query(max_length=200, description="A zone of the site.")]


def observation_on(observations: list[Observation], when: date, left_out: dict[int, str]) -> Observation:
    """The site's image of day WHEN: a usable one if there is one that day, the clearest first.

    Raises:
        NotFound: If no image was taken that day; the message lists the days there are.
    """
    that_day = [o for o in observations if serialise.day(o.acquired) == when]
    if not that_day:
        days = ", ".join(dict.fromkeys(serialise.day(o.acquired).isoformat() for o in observations)) or "none"
        raise NotFound(f"no image on {when.isoformat()} (days with images: {days})")
    return max(that_day, key=lambda o: (o.id not in left_out, o.valid_fraction - o.masked_fraction, o.acquired))


def zone_area(site: Site, name: str | None) -> BaseGeometry | None:
    """Zone NAME of SITE in the site grid's CRS (metres), as changes and detections are; None for None.

    Raises:
        NotFound: If the site has no such zone; the message lists its zones.
    """
    if name is None:
        return None
    chosen_zones(site, [name])
    return site_areas(site)[name]


def open_alerts(ws: Workspace) -> Counter[int]:
    """Alerts per site id that an analyst has not acknowledged."""
    acknowledged = ws.catalog.acknowledged()
    return Counter(alert.site_id for alert in ws.catalog.alerts() if alert.id not in acknowledged)


# --- sites ------------------------------------------------------------------------------------------


@router.get("/sites")
def sites(request: Request) -> list[dict[str, Any]]:
    """Every site for the watchlist. A sparkline is included where the site's activity is already
    computed for its current state; otherwise it is null and ``/api/sites/{name}/activity`` makes it."""
    cache = activity_cache(request)
    with workspace(request) as ws:
        alerts = open_alerts(ws)
        out = []
        for site in ws.catalog.sites():
            records = site_records(ws, site.name)
            known = cache.peek(ws, site.name)
            spark = None if known is None else serialise.sparkline(known)
            out.append(serialise.site_json(records, open_alerts=alerts[site.id or 0], sparkline=spark))
        return out


@router.get("/sites/{name:path}/changes")
def changes(
    request: Request, name: str, before: DayParam = None, after: DayParam = None, zone: ZoneParam = None
) -> dict[str, Any]:
    """The site's changes that happened between two images, as a FeatureCollection.

    A change is dated by the last image without it (``date_from``) and the first with it
    (``date_to``); it happened between BEFORE and AFTER when ``date_from`` is BEFORE or later and
    ``date_to`` is after BEFORE and not after AFTER. With ZONE, only changes touching that zone.
    """
    if before is not None and after is not None and after <= before:
        raise InputError("after", f"{after.isoformat()} must be later than before ({before.isoformat()})")
    with workspace(request) as ws:
        site = ws.catalog.site(name)
        area = zone_area(site, zone)
        reviews = _reviews(ws, site.name)
        features = []
        for change in ws.catalog.changes(site):
            start, end = serialise.day(change.date_from), serialise.day(change.date_to)
            if before is not None and (start < before or end <= before):
                continue
            if after is not None and end > after:
                continue
            if area is not None and not change.geometry.intersects(area):
                continue
            features.append(serialise.change_feature(site, change, reviews.get(change.id or 0)))
        return {
            "type": "FeatureCollection",
            "features": features,
            "site": site.name,
            "before": None if before is None else before.isoformat(),
            "after": None if after is None else after.isoformat(),
            "zone": zone,
        }


@router.get("/sites/{name:path}/detections")
def detections(request: Request, name: str, date: DayParam = None, zone: ZoneParam = None) -> dict[str, Any]:
    """The objects found on one day's image (default: the latest), as a FeatureCollection, with the
    counts per zone and class the activity series uses (none, with the reason, where not counted)."""
    with workspace(request) as ws:
        records = site_records(ws, name)
        site = records.site
        if not records.observations:
            raise NotFound(f"site {site.name!r} has no images yet")
        _, left_out = usable(ws, records.observations)
        when = date or serialise.day(records.observations[-1].acquired)
        obs = observation_on(records.observations, when, left_out)
        zone_area(site, zone)
        areas = site_areas(site)
        features = []
        for det in ws.catalog.detections(site, observation_id=obs.id):
            centre = det.geometry.centroid
            where = next((n for n, a in areas.items() if n is not None and a.contains(centre)), None)
            if zone is None or where == zone:
                features.append(serialise.detection_feature(site, det, where))
        counts = site_counts(ws, site)
        on_day = next((d for d in counts.dates if d.observation_id == obs.id), None)
        shown = [None, *(z.name for z in site.zones)] if zone is None else [zone]
        return {
            "type": "FeatureCollection",
            "features": features,
            "date": when.isoformat(),
            "observation_id": obs.id,
            "counted_by": counts.source,
            "counts": serialise.counts_json(on_day, shown),
            "not_counted": None if on_day is None else on_day.reason,
        }


@router.get("/sites/{name:path}/activity")
def activity(request: Request, name: str) -> dict[str, Any]:
    """The activity index and object counts of the whole site and each zone, each against its
    baseline, with anomalies and change-points; the sparkline; and the analyst's dated events."""
    from sitewatch.review.events import list_events

    cache = activity_cache(request)
    with workspace(request) as ws:
        result = cache.get(ws, name)
        return {
            **serialise.activity_json(result),
            "sparkline": serialise.sparkline(result),
            "events": [serialise.event_json(event) for event in list_events(ws, name)],
        }


class FindIn(BaseModel):
    """A search by description, as the search form sends it."""

    colour: str = Field(max_length=40)
    length: str = Field(max_length=40, description="metres, e.g. 12-20")
    width: str | None = Field(default=None, max_length=40)
    zone: str | None = Field(default=None, max_length=200)
    date_from: date | None = None
    date_to: date | None = None
    limit: int = Field(default=12, ge=1, le=50)


@router.post("/sites/{name:path}/find")
def find(request: Request, name: str, body: FindIn) -> dict[str, Any]:
    """Search the site's usable images for objects of a colour and size; the best results, each with
    its evidence chip (stored, as ``sitewatch find`` stores them), and the days not searched."""
    from sitewatch.detect.colour import colour_range
    from sitewatch.detect.find import Query, parse_span, search

    query = Query(
        colour=colour_range(body.colour).name,
        length=parse_span(body.length, "length"),
        width=None if not body.width else parse_span(body.width, "width"),
        zone=body.zone or None,
        date_from=None if body.date_from is None else datetime.combine(body.date_from, time(), UTC),
        date_to=None if body.date_to is None else datetime.combine(body.date_to, time.max, UTC),
    )
    with workspace(request) as ws:
        site = ws.catalog.site(name)
        result = search(ws, site.name, query, limit=body.limit)
        keep, _ = usable(ws, ws.catalog.observations(site))
        days = sorted({serialise.day(o.acquired) for o in keep})
        rows = []
        for found in result.results:
            det = found.detection
            when = serialise.day(found.acquired)
            earlier = [d for d in days if d < when]
            chip = None if found.chip is None else "/reports/" + quote(found.chip.relative_to(ws.reports).as_posix())
            rows.append(
                {
                    "detection_id": det.id,
                    "observation_id": det.observation_id,
                    "date": when.isoformat(),
                    "acquired": found.acquired.isoformat(),
                    "zone": found.zone,
                    "score": det.score,
                    "length_m": det.length_m,
                    "width_m": det.width_m,
                    "colour": det.colour,
                    "geometry": serialise.to_wgs84(site, det.geometry),
                    "chip": chip,
                    "compare_url": serialise.compare_url(site.name, earlier[-1] if earlier else None, when, found.zone),
                }
            )
        return {
            "site": site.name,
            "query": {**query.to_json(), "date_from": body.date_from, "date_to": body.date_to},
            "results": rows,
            "unsearched": [
                {"date": serialise.day(u.acquired).isoformat(), "reason": u.reason} for u in result.unsearched
            ],
        }


# --- alerts -------------------------------------------------------------------------------------------


@router.get("/alerts")
def alerts(request: Request) -> list[dict[str, Any]]:
    """Every alert, newest first, with the compare view that shows its evidence."""
    with workspace(request) as ws:
        names = {s.id: s for s in ws.catalog.sites()}
        acknowledged = ws.catalog.acknowledged()
        usable_days: dict[int, list[date]] = {}
        out = []
        for alert in sorted(ws.catalog.alerts(), key=lambda a: (a.acquired, a.id or 0), reverse=True):
            site = names.get(alert.site_id)
            if site is None:
                continue
            if alert.site_id not in usable_days:
                keep, _ = usable(ws, ws.catalog.observations(site))
                usable_days[alert.site_id] = [serialise.day(o.acquired) for o in keep]
            before, after = serialise.evidence_days(alert, usable_days[alert.site_id])
            zone = alert.evidence.get("zone")
            url = serialise.compare_url(site.name, before, after, zone if isinstance(zone, str) else None)
            when = acknowledged.get(alert.id or 0)
            out.append(serialise.alert_json(alert, site.name, url, None if when is None else when.isoformat()))
        return out


@router.post("/alerts/{alert_id}/ack")
def acknowledge(request: Request, alert_id: int) -> dict[str, Any]:
    """Mark an alert as seen and dealt with: it no longer counts as open."""
    with workspace(request) as ws:
        return {"id": alert_id, "acknowledged": ws.catalog.acknowledge_alert(alert_id).isoformat()}


# --- the analyst's records: reviews, annotations, events ---------------------------------------------


def _reviews(ws: Workspace, site_name: str) -> dict[int, dict[str, Any]]:
    """The current review of each reviewed change of the site, as JSON."""
    from sitewatch.review.reviews import current_reviews

    return {change_id: serialise.review_json(review) for change_id, review in current_reviews(ws, site_name).items()}


class ReviewIn(BaseModel):
    """A verdict on a change; a rejection says why."""

    verdict: str = Field(max_length=20)
    reason: str = Field(default="", max_length=5000)


@router.post("/sites/{name:path}/changes/{change_id}/review")
def review(request: Request, name: str, change_id: int, body: ReviewIn) -> dict[str, Any]:
    """Confirm or reject one of the site's current changes."""
    from sitewatch.review.reviews import review_change

    with workspace(request) as ws:
        return serialise.review_json(review_change(ws, name, change_id, body.verdict, body.reason))


class AnnotationIn(BaseModel):
    """A point or polygon (GeoJSON geometry, lon/lat) with a label and a note, on one image (scene) or
    on the site in general."""

    geometry: dict[str, Any]
    label: str = Field(max_length=5000)
    note: str = Field(default="", max_length=20000)
    scene_id: int | None = None


class AnnotationPatch(BaseModel):
    """A new label or note (absent: kept)."""

    label: str | None = Field(default=None, max_length=5000)
    note: str | None = Field(default=None, max_length=20000)


@router.get("/sites/{name:path}/annotations")
def site_annotations(request: Request, name: str) -> dict[str, Any]:
    """The site's annotations as a GeoJSON FeatureCollection, oldest first."""
    from sitewatch.review.annotations import annotations_geojson

    with workspace(request) as ws:
        return annotations_geojson(ws, name)


@router.get("/sites/{name:path}/annotations.geojson")
def annotations_download(request: Request, name: str) -> JSONResponse:
    """The site's annotations as a GeoJSON file to save (and import elsewhere)."""
    from sitewatch.review.annotations import annotations_geojson

    with workspace(request) as ws:
        data = annotations_geojson(ws, name)
        filename = f"{slug(ws.catalog.site(name).name)}-annotations.geojson"
    return JSONResponse(
        data,
        media_type="application/geo+json",
        headers={"content-disposition": f'attachment; filename="{filename}"'},
    )


@router.post("/sites/{name:path}/annotations")
def annotate(request: Request, name: str, body: AnnotationIn) -> dict[str, Any]:
    """Add an annotation; returns it as a GeoJSON Feature."""
    from sitewatch.review.annotations import add_annotation, annotation_feature, parse_annotation_geometry

    with workspace(request) as ws:
        geometry = parse_annotation_geometry(body.geometry, "geometry")
        stored = add_annotation(ws, name, geometry, body.label, body.note, scene_id=body.scene_id)
        return annotation_feature(ws.catalog.site(name), stored)


@router.patch("/annotations/{annotation_id}")
def edit_annotation(request: Request, annotation_id: int, body: AnnotationPatch) -> dict[str, Any]:
    """Change an annotation's label or note; returns it as a GeoJSON Feature."""
    from sitewatch.review.annotations import annotation_feature, update_annotation

    with workspace(request) as ws:
        stored = update_annotation(ws, annotation_id, label=body.label, note=body.note)
        return annotation_feature(ws.catalog.site_by_id(stored.site_id), stored)


@router.delete("/annotations/{annotation_id}")
def delete_annotation(request: Request, annotation_id: int) -> dict[str, Any]:
    """Remove an annotation."""
    from sitewatch.review.annotations import remove_annotation

    with workspace(request) as ws:
        removed = remove_annotation(ws, annotation_id)
        return {"id": removed.id, "removed": True}


@router.post("/sites/{name:path}/annotations/import")
async def import_geojson(request: Request, name: str) -> dict[str, Any]:
    """Add the annotations of an uploaded GeoJSON body (``application/geo+json``), all or none.

    At most :data:`MAX_UPLOAD_BYTES` are read (413 beyond); the library then checks every feature.
    """
    from sitewatch.review.annotations import annotation_feature, import_annotations

    data = await read_body(request, MAX_UPLOAD_BYTES)

    def add() -> dict[str, Any]:
        with workspace(request) as ws:
            added = import_annotations(ws, name, data, source="upload")
            site = ws.catalog.site(name)
            return {"imported": len(added), "features": [annotation_feature(site, a) for a in added]}

    return await run_in_threadpool(add)


class EventIn(BaseModel):
    """A dated marker on the site's activity chart."""

    date: date
    label: str = Field(max_length=5000)
    note: str = Field(default="", max_length=20000)


@router.get("/sites/{name:path}/events")
def events(request: Request, name: str) -> list[dict[str, Any]]:
    """The site's events in date order."""
    from sitewatch.review.events import list_events

    with workspace(request) as ws:
        return [serialise.event_json(event) for event in list_events(ws, name)]


@router.post("/sites/{name:path}/events")
def add_event(request: Request, name: str, body: EventIn) -> dict[str, Any]:
    """Put a dated event on the site."""
    from sitewatch.review.events import add_event as add

    with workspace(request) as ws:
        return serialise.event_json(add(ws, name, body.date, body.label, body.note))


@router.delete("/events/{event_id}")
def delete_event(request: Request, event_id: int) -> dict[str, Any]:
    """Remove an event."""
    from sitewatch.review.events import remove_event

    with workspace(request) as ws:
        removed = remove_event(ws, event_id)
        return {"id": removed.id, "removed": True}


# Last: a site's name may hold a slash, so /sites/{name} would also match every route above.
@router.get("/sites/{name:path}")
def site(request: Request, name: str) -> dict[str, Any]:
    """A site, its timeline of images (dates, provider, GSD, quality, alignment, tiles) and how the
    monitor watches it (saved sources and watch rules)."""
    from sitewatch.watch.rules import list_rules
    from sitewatch.watch.sources import list_sources

    with workspace(request) as ws:
        records = site_records(ws, name)
        _, left_out = usable(ws, records.observations)
        summary = serialise.site_json(records, open_alerts=open_alerts(ws)[records.site.id or 0], sparkline=None)
        timeline = [
            serialise.observation_json(records.site, obs, records, left_out.get(obs.id or 0))
            for obs in records.observations
        ]
        attributions = [obs["attribution"] for obs in timeline if obs["attribution"]]
        return {
            "site": summary,
            "observations": timeline,
            "attributions": list(dict.fromkeys(attributions)),
            "kind_colours": serialise.kind_colours(),
            "watching": serialise.watching_json(name, list_sources(ws, name), list_rules(ws, name)),
        }
