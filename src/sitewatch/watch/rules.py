"""Watch rules of every kind: what each watches for, how it is stored and described, and adding,
listing and removing them.

A rule belongs to one site and has a name unique there. Three kinds:

- ``change``: a change of one type (appeared, removed, modified, or any) covering at least an area,
  in one zone or anywhere on the site ("any appeared change over 200 m² in zone 'assembly hall'");
- ``activity``: an anomaly of the activity index or of the vehicle count, in one zone or the whole
  site ("activity index anomaly at site X");
- ``find``: a search by description ("a red object 12–20 m long in zone 'loading area'"), saved by
  ``sitewatch find --save-rule`` or added here.

A rule watches what arrives after it is saved: every observation the site has when it is added
counts as seen (see :mod:`sitewatch.watch.evaluate`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sitewatch.catalog.models import Site, WatchRule
from sitewatch.detect.colour import colour_range
from sitewatch.detect.find import FindResult, Query, parse_span
from sitewatch.errors import InputError, NotFound
from sitewatch.workspace import Workspace, slug

KINDS = ("change", "activity", "find")
CHANGE_TYPES = ("appeared", "removed", "modified", "any")
SERIES = ("index", "vehicles")  # the activity index, or the vehicle count
DIRECTIONS = ("any", "high", "low")  # which anomalies an activity rule fires on
#: The options of ``sitewatch watch add`` that belong to each kind.
KIND_OPTIONS = {
    "change": ("--change", "--min-area"),
    "activity": ("--series", "--direction"),
    "find": ("--color", "--length", "--width"),
}


def _where(zone: str | None) -> str:
    return "anywhere on the site" if zone is None else f"in zone {zone!r}"


def _choice(value: str, allowed: tuple[str, ...], option: str) -> None:
    if value not in allowed:
        raise InputError(option, f"{value!r} is not one of {', '.join(allowed)}")


@dataclass(frozen=True)
class ChangeWatch:
    """Changes of one type (or any) whose area, inside ZONE where one is named, is at least MIN_AREA_M2."""

    change: str = "any"  # one of CHANGE_TYPES
    min_area_m2: float = 0.0
    zone: str | None = None

    def __post_init__(self) -> None:
        _choice(self.change, CHANGE_TYPES, "--change")
        if not math.isfinite(self.min_area_m2) or self.min_area_m2 < 0:
            raise InputError("--min-area", f"{self.min_area_m2!r} must be a number of square metres, 0 or more")

    def to_json(self) -> dict[str, Any]:
        """The rule's query as stored."""
        return {"change": self.change, "min_area_m2": self.min_area_m2, "zone": self.zone}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ChangeWatch:
        """Read back :meth:`to_json`."""
        return cls(data["change"], float(data["min_area_m2"]), data.get("zone"))

    def describe(self) -> str:
        """The rule in words."""
        what = "any change" if self.change == "any" else f"any {self.change} change"
        return f"{what} over {self.min_area_m2:g} m² {_where(self.zone)}"

    def default_name(self) -> str:
        """A name made of the rule's terms, for rules added without one."""
        return slug(f"{self.change}-{self.min_area_m2:g}m2-{self.zone or 'site'}").lower()


@dataclass(frozen=True)
class ActivityWatch:
    """An anomaly (high, low or either) of one activity series of ZONE or of the whole site."""

    series: str = "index"  # one of SERIES
    zone: str | None = None
    direction: str = "any"  # one of DIRECTIONS

    def __post_init__(self) -> None:
        _choice(self.series, SERIES, "--series")
        _choice(self.direction, DIRECTIONS, "--direction")

    def to_json(self) -> dict[str, Any]:
        """The rule's query as stored."""
        return {"series": self.series, "zone": self.zone, "direction": self.direction}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ActivityWatch:
        """Read back :meth:`to_json`."""
        return cls(data["series"], data.get("zone"), data.get("direction", "any"))

    def describe(self) -> str:
        """The rule in words."""
        what = "activity index" if self.series == "index" else "vehicle count"
        how = "anomaly" if self.direction == "any" else f"{self.direction} anomaly"
        return f"{what} {how} {'at the whole site' if self.zone is None else f'in zone {self.zone!r}'}"

    def default_name(self) -> str:
        """A name made of the rule's terms, for rules added without one."""
        return slug(f"{self.series}-{self.direction}-{self.zone or 'site'}").lower()


Watch = ChangeWatch | ActivityWatch | Query


def build_watch(
    kind: str,
    *,
    zone: str | None = None,
    change: str | None = None,
    min_area_m2: float | None = None,
    series: str | None = None,
    direction: str | None = None,
    colour: str | None = None,
    length: str | None = None,
    width: str | None = None,
) -> Watch:
    """What a rule of KIND watches for, from the options of ``sitewatch watch add``.

    Raises:
        InputError: If KIND is unknown, an option belongs to another kind, or a find rule lacks
            its colour or length.
        UnknownName: If the colour is not a known name.
    """
    _choice(kind, KINDS, "--kind")
    given = {
        "--change": change,
        "--min-area": min_area_m2,
        "--series": series,
        "--direction": direction,
        "--color": colour,
        "--length": length,
        "--width": width,
    }
    for option, value in given.items():
        if value is not None and option not in KIND_OPTIONS[kind]:
            raise InputError(option, f"does not apply to {kind} rules (theirs: {', '.join(KIND_OPTIONS[kind])})")
    if kind == "change":
        return ChangeWatch(change or "any", 0.0 if min_area_m2 is None else min_area_m2, zone)
    if kind == "activity":
        return ActivityWatch(series or "index", zone, direction or "any")
    if colour is None or length is None:
        raise InputError("--kind find", "a find rule needs --color and --length")
    return Query(
        colour=colour_range(colour).name,
        length=parse_span(length, "--length"),
        width=None if width is None else parse_span(width, "--width"),
        zone=zone,
    )


def kind_of(watch: Watch) -> str:
    """The kind of rule WATCH makes."""
    if isinstance(watch, ChangeWatch):
        return "change"
    if isinstance(watch, ActivityWatch):
        return "activity"
    return "find"


def watch_of(rule: WatchRule) -> Watch:
    """What a stored rule watches for.

    Raises:
        InputError: If the rule's kind is unknown.
    """
    if rule.kind == "change":
        return ChangeWatch.from_json(rule.query)
    if rule.kind == "activity":
        return ActivityWatch.from_json(rule.query)
    if rule.kind == "find":
        return Query.from_json(rule.query)
    raise InputError(f"watch rule {rule.name!r}", f"unknown kind {rule.kind!r} (known: {', '.join(KINDS)})")


def describe(watch: Watch) -> str:
    """A rule in words, as ``sitewatch watch list`` shows it."""
    if isinstance(watch, Query):
        width = f", {watch.width} wide" if watch.width is not None else ""
        return f"a {watch.colour} object {watch.length} long{width} {_where(watch.zone)}"
    return watch.describe()


def _default_name(watch: Watch) -> str:
    if isinstance(watch, Query):
        return slug(f"{watch.colour}-{watch.length}-{watch.zone or 'site'}").lower()
    return watch.default_name()


def _check_zone(site: Site, zone: str | None) -> None:
    known = [z.name for z in site.zones]
    if zone is not None and zone not in known:
        raise NotFound(f"site {site.name!r} has no zone {zone!r} (zones: {', '.join(known) or 'none'})")


def add_rule(ws: Workspace, site_name: str, watch: Watch, name: str | None = None) -> WatchRule:
    """Add a rule to a site; it fires on observations that arrive from now on, so every observation
    the site has now counts as seen. NAME defaults to one made of the rule's terms.

    Raises:
        NotFound: If the site, or the zone the rule names, does not exist.
        InputError: If the name is empty or too long.
        AlreadyExists: If the site already has a rule of that name.
    """
    site = ws.catalog.site(site_name)
    _check_zone(site, watch.zone)
    chosen = (name if name is not None else _default_name(watch)).strip()
    if not chosen or len(chosen) > 200 or any(ord(c) < 32 for c in chosen):
        raise InputError("--name", f"{name!r} is not a usable rule name (1 to 200 printable characters)")
    seen = tuple(obs.id or 0 for obs in ws.catalog.observations(site))
    rule = WatchRule(site.id or 0, chosen, kind_of(watch), watch.to_json(), datetime.now(UTC), seen=seen)
    return ws.catalog.add_rule(rule)


def save_search(ws: Workspace, result: FindResult, name: str) -> WatchRule:
    """Save the search that gave RESULT as find rule NAME (``sitewatch find --save-rule``).

    Raises:
        AlreadyExists: If the site already has a rule of that name.
    """
    return add_rule(ws, result.site, result.query, name)


@dataclass(frozen=True)
class RuleEntry:
    """A rule with its site's name, as listed."""

    site: str
    rule: WatchRule

    @property
    def description(self) -> str:
        """The rule in words."""
        return describe(watch_of(self.rule))


def list_rules(ws: Workspace, site_name: str | None = None) -> list[RuleEntry]:
    """Every rule, by site then name; only SITE_NAME's if given.

    Raises:
        NotFound: If SITE_NAME does not exist.
    """
    sites = [ws.catalog.site(site_name)] if site_name is not None else ws.catalog.sites()
    return [RuleEntry(site.name, rule) for site in sites for rule in ws.catalog.rules(site)]


def remove_rule(ws: Workspace, name: str, site_name: str | None = None) -> RuleEntry:
    """Remove the rule called NAME (of SITE_NAME, needed only where two sites have one of that name).
    Its alerts stay in the catalog and the log.

    Raises:
        NotFound: If there is no such rule, or the name is ambiguous; the message says which exist.
    """
    entries = list_rules(ws, site_name)
    matching = [entry for entry in entries if entry.rule.name == name]
    if not matching:
        known = ", ".join(sorted({entry.rule.name for entry in entries})) or "none"
        raise NotFound(f"no watch rule {name!r} (rules: {known})")
    if len(matching) > 1:
        sites = ", ".join(entry.site for entry in matching)
        raise NotFound(f"watch rule {name!r} exists in sites {sites}: name one with --site")
    ws.catalog.remove_rule(matching[0].rule)
    return matching[0]
