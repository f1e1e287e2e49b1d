"""Evaluating watch rules: each rule against the usable observations of its site it has not seen yet.

``sitewatch analyze`` calls :func:`evaluate_rules` last, once the site's changes and counts are
current. A rule looks at each observation once: the pass over one observation (its alert, if any,
and marking the observation seen) is one catalog transaction, so a run killed part way resumes
where it stopped. Observations left out of the analysis (cloudy, unaligned, mostly empty) stay
unseen, to be tried once they are usable. An image gives a rule at most one alert (a unique
constraint on rule and scene), so even evaluating an observation again never repeats one.

What matches in an observation, by kind of rule:

- ``change``: changes first seen in it (it is the first image that shows them), of the rule's type,
  covering at least the rule's area (inside its zone, where it names one). Changes already known to
  be transient (they came and went: vehicles, shadows) are left out; a change in the newest image
  cannot be judged yet (``unconfirmed``) and counts.
- ``activity``: the series' value on its date is an anomaly (in the rule's direction). Its
  baseline is made of earlier dates only, so later dates never change that verdict.
- ``find``: the search finds objects in it; they are stored as detections tagged with the rule.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from functools import cached_property
from typing import Any

from shapely.geometry import mapping
from shapely.geometry.base import BaseGeometry

from sitewatch.activity import SiteActivity, site_activity
from sitewatch.catalog.models import Alert, Change, Detection, Observation, Site, WatchRule
from sitewatch.detect.find import Query, search_observation
from sitewatch.errors import NotFound
from sitewatch.grid import to_crs
from sitewatch.watch.alerts import sync_log
from sitewatch.watch.rules import ActivityWatch, ChangeWatch, Watch, watch_of
from sitewatch.workspace import Workspace

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Finding:
    """What one rule matched in one observation: a line for people and the evidence behind it."""

    summary: str
    evidence: dict[str, Any]
    detections: tuple[Detection, ...] = ()  # find rules: stored with the alert


class _SiteView:
    """What a site's rules are matched against, read once per evaluation and only if a rule needs it."""

    def __init__(self, ws: Workspace, site: Site, detector: str | None) -> None:
        self.ws, self.site, self.detector = ws, site, detector

    @cached_property
    def changes(self) -> list[Change]:
        """The site's changes (of DETECTOR only, where one is named: the last analysis's)."""
        every = self.ws.catalog.changes(self.site)
        return [c for c in every if self.detector is None or c.detector == self.detector]

    @cached_property
    def activity(self) -> SiteActivity:
        """The activity series of the whole site and every zone (``analyze`` has aligned the observations)."""
        return site_activity(self.ws, self.site.name, align=False)

    def zone(self, name: str) -> BaseGeometry:
        """Zone NAME in the site grid's CRS (metres), as changes are.

        Raises:
            NotFound: If the site has no such zone (it was removed after the rule was added).
        """
        for zone in self.site.zones:
            if zone.name == name:
                return to_crs(zone.geometry, "EPSG:4326", self.site.epsg)
        raise NotFound(f"site {self.site.name!r} has no zone {name!r}")

    def wgs84(self, geometry: BaseGeometry) -> dict[str, Any]:
        """A site-grid geometry as GeoJSON, for evidence anyone can map."""
        return dict(mapping(to_crs(geometry, self.site.epsg, "EPSG:4326")))


def evaluate_rules(ws: Workspace, site_name: str, *, detector: str | None = None) -> list[Alert]:
    """Evaluate each of the site's rules on the usable observations it has not seen; record an alert
    where one matches, then bring the alert log up to date.

    DETECTOR names the change detector whose changes change rules look at (``analyze`` passes the
    one it ran); None: every stored change. A rule that cannot be evaluated (its zone was removed)
    is skipped with a warning in the log, its observations left unseen.

    Returns:
        The alerts recorded now, in order.
    """
    from sitewatch.analyze import usable

    site = ws.catalog.site(site_name)
    rules = ws.catalog.rules(site)
    keep, _ = usable(ws, ws.catalog.observations(site)) if rules else ([], {})
    view = _SiteView(ws, site, detector)
    alerts: list[Alert] = []
    for rule in rules:
        new = [obs for obs in keep if obs.id not in rule.seen]
        if new:
            try:
                alerts.extend(_evaluate(view, rule, new))
            except NotFound as exc:
                log.warning("watch rule %r of site %r skipped: %s", rule.name, site.name, exc)
    sync_log(ws)
    return alerts


def _evaluate(view: _SiteView, rule: WatchRule, observations: Sequence[Observation]) -> list[Alert]:
    """RULE over OBSERVATIONS, one transaction per observation; the alerts it raised."""
    watch = watch_of(rule)
    raised = []
    for obs in observations:
        finding = _match(view, rule.name, watch, obs)
        alert = None
        if finding is not None:
            alert = Alert(
                rule_id=rule.id,
                rule=rule.name,
                kind=rule.kind,
                site_id=view.site.id or 0,
                scene_id=obs.scene_id,
                observation_id=obs.id,
                acquired=obs.acquired,
                summary=finding.summary,
                evidence=finding.evidence,
                created=datetime.now(UTC),
            )
        detections = () if finding is None else finding.detections
        rule, fresh = view.ws.catalog.record_rule_pass(rule, obs, alert, detections)
        if fresh is not None:
            log.info("alert %s: %s", fresh.id, fresh.summary)
            raised.append(fresh)
    return raised


def _match(view: _SiteView, rule_name: str, watch: Watch, obs: Observation) -> Finding | None:
    if isinstance(watch, ChangeWatch):
        return _change_finding(view, watch, obs)
    if isinstance(watch, ActivityWatch):
        return _activity_finding(view, watch, obs)
    return _find_finding(view, rule_name, watch, obs)


def _where(zone: str | None) -> str:
    return "on the site" if zone is None else f"in zone {zone!r}"


def _change_finding(view: _SiteView, watch: ChangeWatch, obs: Observation) -> Finding | None:
    zone = None if watch.zone is None else view.zone(watch.zone)
    matched: list[tuple[Change, float]] = []
    for change in view.changes:
        if change.after_id != obs.id or change.persistence == "transient":
            continue
        if watch.change not in ("any", change.kind):
            continue
        area = change.area_m2 if zone is None else float(change.geometry.intersection(zone).area)
        if area > 0 and area >= watch.min_area_m2:
            matched.append((change, area))
    if not matched:
        return None
    kinds = "/".join(sorted({change.kind for change, _ in matched}))
    total = sum(area for _, area in matched)
    first = matched[0][0]
    if len(matched) == 1:
        summary = (
            f"{kinds} change of {total:,.0f} m² {_where(watch.zone)} between {first.date_from:%Y-%m-%d} "
            f"and {first.date_to:%Y-%m-%d}"
        )
    else:
        summary = (
            f"{len(matched)} {kinds} changes, {total:,.0f} m² in all, {_where(watch.zone)}, "
            f"first seen {obs.acquired:%Y-%m-%d}"
        )
    evidence = {
        "zone": watch.zone,
        "changes": [
            {
                "change_id": change.id,
                "kind": change.kind,
                "area_m2": round(change.area_m2, 1),
                "area_counted_m2": round(area, 1),
                "confidence": round(change.confidence, 3),
                "date_from": change.date_from.isoformat(),
                "date_to": change.date_to.isoformat(),
                "persistence": change.persistence,
                "detector": change.detector,
                "geometry": view.wgs84(change.geometry),
            }
            for change, area in matched
        ],
    }
    return Finding(summary, evidence)


def _activity_finding(view: _SiteView, watch: ActivityWatch, obs: Observation) -> Finding | None:
    column = view.activity.area(watch.zone).columns.get(watch.series)
    if column is None:  # no counts stored for this site: nothing to judge
        return None
    point = next((p for p in column.points if p.date == obs.acquired), None)
    if point is None or point.anomaly is None or watch.direction not in ("any", point.anomaly):
        return None
    what = "activity index" if watch.series == "index" else "vehicle count"
    baseline = "no baseline" if point.median is None else f"a baseline of {point.median:.3g}"
    z = "" if point.z is None else f" (robust z {point.z:+.1f})"
    summary = (
        f"{what} {point.anomaly} anomaly {_where(watch.zone)} on {obs.acquired:%Y-%m-%d}: "
        f"{point.value:.3g} against {baseline}{z}"
    )
    evidence = {
        "series": watch.series,
        "zone": watch.zone,
        "point": {
            "date": point.date.isoformat(),
            "value": point.value,
            "median": point.median,
            "mad": point.mad,
            "z": point.z,
            "anomaly": point.anomaly,
        },
    }
    return Finding(summary, evidence)


def _find_finding(view: _SiteView, rule_name: str, query: Query, obs: Observation) -> Finding | None:
    found, _reason = search_observation(view.ws, view.site, obs, query)  # an unresolvable date matches nothing
    if not found:
        return None
    tagged = tuple(replace(d, attrs={**d.attrs, "rule": rule_name}) for d in found)
    best = max(d.score for d in tagged)
    plural = "s" if len(tagged) > 1 else ""
    summary = (
        f"{len(tagged)} {query.colour} object{plural} {query.length} long {_where(query.zone)} "
        f"on {obs.acquired:%Y-%m-%d} (best score {best:.2f})"
    )
    evidence = {
        "detections": [
            {
                "score": d.score,
                "length_m": d.length_m,
                "width_m": d.width_m,
                "zone": d.attrs.get("zone"),
                "geometry": view.wgs84(d.geometry),
            }
            for d in tagged
        ]
    }
    return Finding(summary, evidence, tagged)
