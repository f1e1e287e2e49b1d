"""Watch rules: saved searches that fire when a new observation of their site matches.

A rule keeps the ids of the observations it has evaluated (the search it was saved from counts),
so evaluating it again only looks at observations it has not seen, and never fires twice for one.
Its matches are stored as detections, tagged with the rule's name.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime

from sitewatch.catalog.models import Detection, Observation, WatchRule
from sitewatch.detect.find import FindResult, Query, search_observation
from sitewatch.workspace import Workspace

#: The only kind of rule so far: a ``find`` search.
FIND = "find"


@dataclass(frozen=True)
class RuleMatch:
    """A rule fired: the observation that matched and what it found there."""

    rule: str
    observation_id: int
    acquired: datetime
    detections: tuple[Detection, ...]


def save_rule(ws: Workspace, result: FindResult, name: str) -> WatchRule:
    """Save the search that gave RESULT as watch rule NAME; it fires on observations ingested from
    now on, so every observation the site has now counts as seen.

    Raises:
        AlreadyExists: If the site already has a rule of that name.
    """
    site = ws.catalog.site(result.site)
    seen = tuple(obs.id or 0 for obs in ws.catalog.observations(site))
    rule = WatchRule(site.id or 0, name, FIND, result.query.to_json(), datetime.now(UTC), seen=seen)
    return ws.catalog.add_rule(rule)


def evaluate_rules(ws: Workspace, site_name: str) -> list[RuleMatch]:
    """Run each of the site's watch rules on the usable observations it has not seen; store and
    return the new matches. Observations left out now (cloudy, unaligned) stay unseen, to be tried
    once they are usable; each is seen once it has been searched, matched or not."""
    from sitewatch.analyze import usable

    site = ws.catalog.site(site_name)
    rules = ws.catalog.rules(site)
    if not rules:
        return []
    keep, _ = usable(ws, ws.catalog.observations(site))
    matches: list[RuleMatch] = []
    for saved in rules:
        query = Query.from_json(saved.query)
        new: list[Observation] = [obs for obs in keep if obs.id not in saved.seen]
        current, seen = saved, list(saved.seen)
        for obs in new:
            found, _reason = search_observation(ws, site, obs, query)  # an unresolvable date matches nothing
            found = [replace(d, attrs={**d.attrs, "rule": saved.name}) for d in found]
            seen.append(obs.id or 0)
            current = ws.catalog.rule_evaluated(current, seen, obs.id if found else None, found)
            if found:
                matches.append(RuleMatch(saved.name, obs.id or 0, obs.acquired, tuple(found)))
    return matches
