"""Catalog records and library results as the JSON the workbench's pages read.

Geometries leave as WGS84 GeoJSON (change and detection polygons are stored in the site grid's
CRS), times as ISO 8601 UTC and days as ``YYYY-MM-DD``, the day being what an analyst picks and
what the page URLs carry. Numbers keep their units in the key (``area_m2``, ``gsd_m``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

from shapely.geometry import mapping
from shapely.geometry.base import BaseGeometry

from sitewatch.activity import INDEX, ActivitySeries, SeriesAnalysis, SiteActivity
from sitewatch.activity.series import MAD_TO_SIGMA
from sitewatch.analyze import change_properties
from sitewatch.catalog.models import Alert, Change, Detection, Observation, Review, Site, SiteEvent, SiteSource
from sitewatch.grid import to_crs
from sitewatch.report.chips import kind_colour
from sitewatch.report.html import alignment_text
from sitewatch.report.site import SiteRecords
from sitewatch.watch.alerts import alert_record
from sitewatch.watch.sources import source_record
from sitewatch.web.tiles import observation_bounds_wgs84, tile_url

if TYPE_CHECKING:
    from sitewatch.detect.inventory import DateCounts
    from sitewatch.watch.rules import RuleEntry

KINDS = ("appeared", "removed", "modified")


def day(when: datetime) -> date:
    """The UTC day of a catalog time."""
    return when.astimezone(UTC).date()


def geojson(geometry: BaseGeometry) -> dict[str, Any]:
    """A WGS84 shapely geometry as a GeoJSON geometry object."""
    return dict(mapping(geometry))


def to_wgs84(site: Site, geometry: BaseGeometry) -> dict[str, Any]:
    """A site-grid geometry (metres) as WGS84 GeoJSON."""
    return geojson(to_crs(geometry, site.epsg, "EPSG:4326"))


def site_url(name: str, view: str = "", **params: str | None) -> str:
    """The page of a site (VIEW: ``compare``, ``search`` or the site page), with query PARAMS."""
    path = f"/sites/{quote(name, safe='')}" + (f"/{view}" if view else "")
    query = urlencode({k: v for k, v in params.items() if v is not None})
    return f"{path}?{query}" if query else path


def compare_url(name: str, before: date | None, after: date, zone: str | None = None) -> str:
    """The compare view of a site between two days (BEFORE None: the site's first image)."""
    return site_url(
        name, "compare", before=None if before is None else before.isoformat(), after=after.isoformat(), zone=zone
    )


def kind_colours() -> dict[str, str]:
    """CSS colours of the change kinds, the report's own (one legend everywhere)."""
    return {kind: "#{:02x}{:02x}{:02x}".format(*kind_colour(kind)) for kind in KINDS}


def site_json(records: SiteRecords, *, open_alerts: int, sparkline: dict[str, Any] | None) -> dict[str, Any]:
    """A site as the watchlist lists it: outline, zones, latest image, open alerts, activity sparkline."""
    site, observations = records.site, records.observations
    latest = observations[-1] if observations else None
    west, south, east, north = site.geometry.bounds
    return {
        "name": site.name,
        "url": site_url(site.name),
        "tags": list(site.tags),
        "outline": geojson(site.geometry),
        "bbox": [west, south, east, north],
        "zones": [{"name": zone.name, "geometry": geojson(zone.geometry)} for zone in site.zones],
        "epsg": site.epsg,
        "observations": len(observations),
        "latest": None if latest is None else day(latest.acquired).isoformat(),
        "latest_acquired": None if latest is None else latest.acquired.isoformat(),
        "latest_tiles": None if latest is None else tile_url(site, latest),
        "open_alerts": open_alerts,
        "synthetic": records.synthetic,
        "sparkline": sparkline,
    }


def sparkline(activity: SiteActivity) -> dict[str, Any]:
    """The whole site's activity index by day, and which days were anomalies."""
    points = activity.area(None).index.points
    return {
        "dates": [day(p.date).isoformat() for p in points],
        "values": [round(p.value, 5) for p in points],
        "anomalies": [p.anomaly for p in points],
    }


def observation_json(site: Site, obs: Observation, records: SiteRecords, left_out: str | None) -> dict[str, Any]:
    """One image of the timeline: when, who, how fine, how clear, how aligned, and its tiles."""
    scene = records.scenes[obs.scene_id]
    return {
        "id": obs.id,
        "date": day(obs.acquired).isoformat(),
        "acquired": obs.acquired.isoformat(),
        "scene_id": obs.scene_id,
        "provider": scene.provider,
        "sensor": scene.sensor,
        "licence": scene.licence,
        "attribution": scene.attribution,
        "gsd_m": obs.gsd,
        "scene_gsd_m": scene.gsd,
        "valid_fraction": round(obs.valid_fraction, 4),
        "masked_fraction": round(obs.masked_fraction, 4),
        "flags": list(obs.flags),
        "align_status": obs.align_status,
        "align_reason": obs.align_reason,
        "alignment": alignment_text(obs),
        "usable": left_out is None,
        "left_out": left_out,
        "tiles": tile_url(site, obs),
        "bounds": list(observation_bounds_wgs84(site, obs)),
    }


def change_feature(site: Site, change: Change, review: Mapping[str, Any] | None) -> dict[str, Any]:
    """A change as a WGS84 Feature with its dates, measures, persistence and current review."""
    return {
        "type": "Feature",
        "id": change.id,
        "geometry": to_wgs84(site, change.geometry),
        "properties": {
            "id": change.id,
            **change_properties(change),
            "before_id": change.before_id,
            "after_id": change.after_id,
            "review": review,
        },
    }


def detection_feature(site: Site, det: Detection, zone: str | None) -> dict[str, Any]:
    """A detection (oriented box) as a WGS84 Feature."""
    return {
        "type": "Feature",
        "id": det.id,
        "geometry": to_wgs84(site, det.geometry),
        "properties": {
            "id": det.id,
            "class": det.cls,
            "score": det.score,
            "length_m": det.length_m,
            "width_m": det.width_m,
            "colour": det.colour,
            "source": det.source,
            "zone": zone,
        },
    }


def counts_json(counts: DateCounts | None, zones: Iterable[str | None]) -> list[dict[str, Any]]:
    """One date's counts per area (None: the whole site), with the share of it that could be seen."""
    if counts is None or counts.counts is None:
        return []
    return [
        {"zone": zone, "counts": counts.counts.get(zone, {}), "clear": counts.clear.get(zone)}
        for zone in zones
        if zone in counts.counts
    ]


def analysis_json(analysis: SeriesAnalysis) -> dict[str, Any]:
    """A series with its baseline band: the values, the baseline median, and the band outside which a
    value is an anomaly (median ± threshold · 1.4826 · MAD); its anomalies and change-points."""
    threshold = analysis.settings.threshold
    low: list[float | None] = []
    high: list[float | None] = []
    for p in analysis.points:
        if p.median is None or p.mad is None:
            low.append(None)
            high.append(None)
        else:
            spread = threshold * MAD_TO_SIGMA * p.mad
            low.append(p.median - spread)
            high.append(p.median + spread)
    return {
        "dates": [day(p.date).isoformat() for p in analysis.points],
        "values": [p.value for p in analysis.points],
        "median": [p.median for p in analysis.points],
        "low": low,
        "high": high,
        "z": [p.z for p in analysis.points],
        "anomalies": [
            {"date": day(p.date).isoformat(), "value": p.value, "anomaly": p.anomaly, "z": p.z}
            for p in analysis.anomalies
        ],
        "change_points": [
            {
                "last_before": day(c.last_before).isoformat(),
                "first_after": day(c.first_after).isoformat(),
                "direction": c.direction,
                "before": c.before,
                "after": c.after,
                "text": c.words(),
            }
            for c in analysis.change_points
        ],
        "window": analysis.settings.window,
        "threshold": threshold,
        "note": analysis.note,
    }


def series_json(series: ActivitySeries) -> dict[str, Any]:
    """One area's activity index and count columns, and the days each lacks, with the reason."""
    return {
        "zone": series.zone,
        "area": series.area,
        "index": analysis_json(series.index),
        "skipped": [{"date": day(s.acquired).isoformat(), "reason": s.reason} for s in series.skipped],
        "counted_by": series.counted_by,
        "counts": {name: analysis_json(series.columns[name]) for name in series.count_columns},
        "counts_skipped": [{"date": day(s.acquired).isoformat(), "reason": s.reason} for s in series.counts_skipped],
    }


def activity_json(activity: SiteActivity) -> dict[str, Any]:
    """A site's activity: the whole site's series first, then each zone's."""
    index = activity.index
    return {
        "site": index.site,
        "gsd_m": index.gsd,
        "column": INDEX,
        "persistent_note": index.persistent_note,
        "areas": [series_json(series) for series in activity.series],
    }


def alert_json(alert: Alert, site: str, evidence_url: str, acknowledged: str | None) -> dict[str, Any]:
    """An alert as the log writes it, with the compare view that shows its evidence."""
    return {
        **alert_record(alert, site),
        "day": day(alert.acquired).isoformat(),
        "evidence_url": evidence_url,
        "acknowledged": acknowledged,
    }


def evidence_days(alert: Alert, usable_days: Sequence[date]) -> tuple[date | None, date]:
    """The two days whose images show an alert's evidence: a change alert's own interval, else the
    last usable day before the alert's and the alert's (None: it was the site's first)."""
    changes = alert.evidence.get("changes") or []
    after = day(alert.acquired)
    if changes:
        return min(day(datetime.fromisoformat(str(c["date_from"]))) for c in changes), after
    earlier = [d for d in usable_days if d < after]
    return (max(earlier) if earlier else None), after


def review_json(review: Review) -> dict[str, Any]:
    """A verdict on a change."""
    return {
        "id": review.id,
        "change_id": review.change_id,
        "verdict": review.verdict,
        "reason": review.reason,
        "reviewer": review.reviewer,
        "created": review.created.isoformat(),
    }


def event_json(event: SiteEvent) -> dict[str, Any]:
    """An analyst's dated event."""
    return {
        "id": event.id,
        "date": day(event.when).isoformat(),
        "when": event.when.isoformat(),
        "label": event.label,
        "note": event.note,
        "created": event.created.isoformat(),
    }


def watching_json(site: str, sources: Sequence[SiteSource], rules: Sequence[RuleEntry]) -> dict[str, Any]:
    """How the monitor watches a site: where it looks for new scenes, and the rules it evaluates, in words."""
    return {
        "sources": [source_record(source, site) for source in sources],
        "rules": [{"name": e.rule.name, "kind": e.rule.kind, "description": e.description} for e in rules],
    }
