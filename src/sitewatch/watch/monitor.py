"""``sitewatch monitor``: poll each site's sources for new scenes, ingest, analyze, alert, deliver.

A site's sources are those saved with it (:mod:`sitewatch.watch.sources`), polled for that site only,
and those given to the pass (the command line's), polled for every site the pass covers.

One pass (:func:`monitor_once`):

1. remove download folders killed runs left (:func:`~sitewatch.ingest.resolve.remove_stale_downloads`)
   and bring the alert log up to date (a killed run may have recorded alerts it did not log);
2. look for new scenes: raster files in the watched folders not tried before (a file is known by
   its path, size and modification time, so one still being copied is tried again once it has
   changed), and, on each STAC API, items over each site's footprint acquired after its latest
   observation, and the items that failed on that API in earlier passes, at their own time (see
   :func:`_ingest_stac`), ingested oldest first (the search and its downloads are the STAC
   ingest's, with its host rules);
3. ingest them (a scene already in the catalog, by content hash, is a duplicate, not a new scene);
4. analyze every site with work left: observations not yet aligned, or usable ones that one of its
   rules has not seen; the analysis ends by evaluating the rules (:mod:`sitewatch.watch.evaluate`);
5. deliver alerts not yet delivered (:mod:`sitewatch.watch.notify`).

Every step is recorded as it completes, and each decision is made from the catalog rather than from
what this process remembers, so a run killed at any point is taken up by the next: nothing is lost,
and the unique constraint on rule and image keeps any alert from being recorded twice.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sitewatch.catalog.models import Alert, MonitoredFile, Site, SiteSource, StacFailure
from sitewatch.detect.base import AUTO as AUTO_OBJECTS
from sitewatch.errors import InputError, SitewatchError
from sitewatch.ingest.pipeline import IngestOutcome, SceneDone, ingest
from sitewatch.ingest.resolve import (
    RASTER_SUFFIXES,
    IngestRequest,
    downloads,
    file_source,
    remove_stale_downloads,
    resolve_sources,
)
from sitewatch.ingest.sources import SceneSource
from sitewatch.ingest.stac import ItemError
from sitewatch.watch.alerts import sync_log
from sitewatch.watch.notify import Delivery, deliver_pending
from sitewatch.workspace import Workspace

log = logging.getLogger(__name__)

_EVERY = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd])\s*$")
_UNITS_S = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_UNDATED = datetime.max.replace(tzinfo=UTC)  # items without a time sort last (ingest reads it from the file)
#: Passes in which a STAC item may fail before the monitor gives up on it.
MAX_TRIES = 3
NOTHING_TO_WATCH = (
    "give a folder to watch (--folder DIR) or a STAC API (--stac URL), "
    "or save a site's own with `sitewatch site source add`"
)


def parse_every(text: str) -> float:
    """Seconds between passes from ``30m``, ``6h``, ``1d`` (or ``90s``).

    Raises:
        InputError: If TEXT is not a positive number followed by s, m, h or d.
    """
    found = _EVERY.match(text.lower())
    seconds = 0.0 if found is None else float(found[1]) * _UNITS_S[found[2]]
    if seconds <= 0:
        raise InputError("--every", f"{text!r} is not an interval such as 30m, 6h or 1d")
    return seconds


@dataclass(frozen=True)
class Sources:
    """Where the monitor looks for new scenes: watched folders and, optionally, a STAC API (none of
    either: only the sites' saved sources)."""

    folders: tuple[Path, ...] = ()
    stac_api: str | None = None
    collections: tuple[str, ...] = ()
    allow_hosts: tuple[str, ...] = ()  # extra hosts STAC assets may come from

    @property
    def empty(self) -> bool:
        """Whether there is neither a folder nor a STAC API."""
        return not self.folders and self.stac_api is None

    @classmethod
    def saved(cls, source: SiteSource) -> Sources:
        """A site's saved source, as what the monitor polls for that site."""
        if source.kind == "folder":
            return cls(folders=(Path(source.target),))
        return cls(stac_api=source.target, collections=source.collections, allow_hosts=source.allow_hosts)


@dataclass(frozen=True)
class PassReport:
    """What one pass did."""

    ingested: tuple[IngestOutcome, ...]  # every new source tried (ingested, duplicate, no-site or failed)
    analyzed: tuple[str, ...]  # sites analyzed
    failures: tuple[str, ...]  # one line each: a source or site that failed, and whether it is tried again
    alerts: tuple[Alert, ...]  # alerts raised in this pass
    deliveries: tuple[Delivery, ...]  # webhook and e-mail attempts
    repaired: tuple[Alert, ...]  # alerts a killed run had recorded but not logged, logged now
    retried: tuple[StacFailure, ...] = ()  # STAC items that failed before, searched for again (as they were)


def new_files(ws: Workspace, folders: Sequence[Path]) -> list[MonitoredFile]:
    """Raster files under FOLDERS not tried before with the same size and modification time.

    Hidden files and folders (names starting with a dot, such as partial downloads) are skipped.
    """
    known = ws.catalog.monitored_files()
    found = []
    for folder in folders:
        for path in sorted(folder.rglob("*")):
            if path.suffix.lower() not in RASTER_SUFFIXES or not path.is_file():
                continue
            if any(part.startswith(".") for part in path.relative_to(folder).parts):
                continue
            stat = path.stat()
            full = path.resolve()
            seen = known.get(full)
            if seen is None or (seen.size, seen.mtime_ns) != (stat.st_size, stat.st_mtime_ns):
                found.append(MonitoredFile(full, stat.st_size, stat.st_mtime_ns, "new"))
    return found


def _ingest_folder(ws: Workspace, folder: Path, site_names: Sequence[str]) -> list[IngestOutcome]:
    """Ingest FOLDER's new files for SITE_NAMES (none: every site) and remember what each gave."""
    files = new_files(ws, [folder])
    if not files:
        return []
    limits = ws.settings.limits
    sources = [file_source(f.path, acquired=None, bounds=None, crs=None, limits=limits) for f in files]
    outcomes = ingest(ws, sources, site_names=site_names)
    ws.catalog.remember_files(
        [
            MonitoredFile(f.path, f.size, f.mtime_ns, o.status, o.scene_id, o.message)
            for f, o in zip(files, outcomes, strict=True)
        ]
    )
    return outcomes


@dataclass(frozen=True)
class _StacPass:
    """What one site's STAC search gave: outcomes, failure lines, and the earlier failures it retried."""

    outcomes: list[IngestOutcome]
    failures: list[str]
    retried: list[StacFailure]


def _folder_scopes(
    sources: Sources, saved: dict[str, list[SiteSource]], site_names: Sequence[str]
) -> dict[Path, tuple[str, ...]]:
    """Each folder to watch (absolute) and the sites its new files are ingested for: the pass's own
    folders for every site it covers (SITE_NAMES; none: all), a saved one for the sites that saved it.

    A file is tried once whichever folder finds it, so each folder is polled once, for all its sites.
    """
    scopes = {folder.resolve(): tuple(site_names) for folder in sources.folders}
    given = set(scopes)
    for name, site_sources in saved.items():
        for folder in (Path(source.target) for source in site_sources if source.kind == "folder"):
            if folder not in given:
                scopes[folder] = (*scopes.get(folder, ()), name)
    return scopes


def _stac_searches(sources: Sources, saved: Sequence[SiteSource]) -> list[Sources]:
    """One site's STAC searches: the pass's API, then the site's own, each once."""
    searches = [replace(sources, folders=())] if sources.stac_api is not None else []
    searches += [Sources.saved(source) for source in saved if source.kind == "stac"]
    return list(dict.fromkeys(searches))


def _ingest_stac(ws: Workspace, sources: Sources, site: Site) -> _StacPass:
    """Search the STAC API over SITE's footprint for new items, and again for the items that failed
    on it before; ingest what is found, oldest first, and remember what fails.

    The search for new items starts just after the latest of the site's observations and its failed
    items, so it never meets a failed item again. Each failed item is searched for instead at its own
    instant (a search from start to end at its time): ingest tells a duplicate only by content hash,
    after downloading, so searching from the earliest failure on would download every item since it
    again, while this fetches little more than the item itself (and it follows the API's current
    answer, with the search's own host rules). An item is ingested or fails on its own: a download
    error or a refused href fails that item, not the search. A failure is recorded as it happens
    (before any newer item is ingested, so a killed pass loses none), cleared when the item is
    ingested, and counted once per pass in which the item is tried, or searched for and not found;
    after :data:`MAX_TRIES` it is reported as given up, once, and its row stays so that it is not
    searched for again. A search that fails counts no tries. Failures are kept per site and API, so
    a site watched on two APIs never searches one for the other's items.
    """
    api = sources.stac_api
    known = {f.source: f for f in ws.catalog.stac_failures(site, api)}
    retry = {source: f for source, f in known.items() if f.tries < MAX_TRIES}
    given_up = known.keys() - retry.keys()  # left out even if a search meets one (at another's instant)
    times = [obs.acquired for obs in ws.catalog.observations(site)] + [f.acquired for f in known.values()]
    latest = max(times, default=None)
    windows: list[tuple[datetime | None, datetime | None]] = [
        (t, t) for t in sorted({f.acquired for f in retry.values()})
    ]
    windows.append((None if latest is None else latest + timedelta(seconds=1), None))
    result = _StacPass([], [], list(retry.values()))
    with downloads(ws) as folder:
        found, refused = _search(ws, sources, site, windows, folder)
        for origin, error in refused.items():
            if origin not in given_up and origin not in found:
                result.outcomes.append(IngestOutcome(origin, "failed", str(error.error)))
                result.failures.append(_remember_failure(ws, site, api, origin, error.acquired, str(error.error)))

        def done(event: SceneDone) -> None:
            outcome = event.outcome
            if outcome.status == "failed":
                when = found[outcome.source].acquired
                result.failures.append(_remember_failure(ws, site, api, outcome.source, when, outcome.message))
            elif outcome.source in retry:
                ws.catalog.clear_stac_failure(site, outcome.source)

        # Oldest first, whatever order the API answers in (often newest first): the next pass searches
        # after the latest image, so a pass killed part way must not leave an earlier scene behind it.
        todo = sorted((s for s in found.values() if s.origin not in given_up), key=lambda s: s.acquired or _UNDATED)
        if todo:
            result.outcomes.extend(ingest(ws, todo, site_names=(site.name,), on_progress=done))
    for origin, failure in retry.items():
        if origin not in found and origin not in refused:
            message = "no longer found by the STAC search at its time"
            result.failures.append(_remember_failure(ws, site, api, origin, failure.acquired, message))
    return result


def _search(
    ws: Workspace,
    sources: Sources,
    site: Site,
    windows: Sequence[tuple[datetime | None, datetime | None]],
    folder: Path,
) -> tuple[dict[str, SceneSource], dict[str, ItemError]]:
    """Search the STAC API over SITE's footprint in each time window (start, end; None: open), with
    downloads into FOLDER; the items found and those that failed on their own, each once, by origin."""
    found: dict[str, SceneSource] = {}
    refused: dict[str, ItemError] = {}

    def refuse(error: ItemError) -> None:
        refused.setdefault(error.origin, error)

    for start, end in windows:
        request = IngestRequest(
            site_names=(site.name,),
            stac_api=sources.stac_api,
            collections=sources.collections,
            date_from=None if start is None else start.isoformat(),
            date_to=None if end is None else end.isoformat(),
            allow_hosts=sources.allow_hosts,
        )
        for source in resolve_sources(ws, request, folder, on_item_error=refuse):
            found.setdefault(source.origin, source)
    return found, refused


def _remember_failure(
    ws: Workspace, site: Site, api: str | None, source: str, acquired: datetime | None, message: str
) -> str:
    """Record a failed try of the STAC item SOURCE, found on API, for SITE; the pass report's line for it."""
    if acquired is None:  # not valid STAC (an item has a time): there is no time to search for it again at
        return f"{source}: {message}"
    failure = ws.catalog.record_stac_failure(site, source, acquired, message, api)
    if failure.tries < MAX_TRIES:
        return f"{source}: {message} (failed {failure.tries} of {MAX_TRIES} tries; tried again next pass)"
    return f"{source}: {message} (failed {MAX_TRIES} tries; given up)"


def _needs_analysis(ws: Workspace, site: Site) -> bool:
    """Whether SITE has observations not yet aligned, or usable ones one of its rules has not seen."""
    from sitewatch.analyze import usable

    observations = ws.catalog.observations(site)
    if any(obs.align_status == "pending" for obs in observations):
        return True
    keep, _ = usable(ws, observations)
    return any(obs.id not in rule.seen for rule in ws.catalog.rules(site) for obs in keep)


def monitor_once(
    ws: Workspace,
    sources: Sources,
    *,
    site_names: Sequence[str] = (),
    objects: str | None = AUTO_OBJECTS,
) -> PassReport:
    """One pass for SITE_NAMES (default: every site) over each site's saved sources and SOURCES, which
    apply to every one of them; see the module docstring.

    OBJECTS is the object detector ``analyze`` counts with (None: no counting). A source or a site
    that fails is reported in the result and tried again next pass (a STAC item in at most
    :data:`MAX_TRIES` passes); it does not stop the others.

    Raises:
        NotFound: If a site named does not exist.
        InputError: If SOURCES is empty and none of the sites has a saved source.
    """
    from sitewatch.analyze import analyze_site

    sites = [ws.catalog.site(name) for name in site_names] or ws.catalog.sites()
    saved = {site.name: ws.catalog.site_sources(site) for site in sites}
    if sources.empty and not any(saved.values()):
        raise InputError("monitor", NOTHING_TO_WATCH)
    remove_stale_downloads(ws)
    repaired = sync_log(ws)
    outcomes: list[IngestOutcome] = []
    failures: list[str] = []
    for folder, names in _folder_scopes(sources, saved, site_names).items():
        if folder.is_dir():
            outcomes += _ingest_folder(ws, folder, names)
        else:
            failures.append(f"{folder}: not a folder (tried again next pass)")
    failures += [f"{o.source}: {o.message}" for o in outcomes if o.status == "failed"]
    retried: list[StacFailure] = []
    for site in sites:
        for search in _stac_searches(sources, saved[site.name]):
            try:
                stac = _ingest_stac(ws, search, site)
            except SitewatchError as exc:
                failures.append(f"{site.name}: STAC search failed: {exc}")
                continue
            outcomes += stac.outcomes
            failures += stac.failures
            retried += stac.retried
    analyzed: list[str] = []
    alerts: list[Alert] = []
    for site in sites:
        if not _needs_analysis(ws, site):
            continue
        try:
            result = analyze_site(ws, site.name, objects=objects)
        except SitewatchError as exc:
            failures.append(f"{site.name}: analysis failed: {exc}")
            continue
        analyzed.append(site.name)
        alerts.extend(result.alerts)
    deliveries = deliver_pending(ws)
    return PassReport(
        tuple(outcomes),
        tuple(analyzed),
        tuple(failures),
        tuple(alerts),
        tuple(deliveries),
        tuple(repaired),
        tuple(retried),
    )


def monitor(
    ws: Workspace,
    sources: Sources,
    every_s: float,
    on_pass: Callable[[PassReport], None],
    *,
    site_names: Sequence[str] = (),
    objects: str | None = AUTO_OBJECTS,
) -> None:
    """Run a pass every EVERY_S seconds (counted from the start of each), for ever; ON_PASS gets each
    pass's report. Stop it with an interrupt: a pass cut short is taken up by the next run. Sources
    saved or removed while it runs count from the next pass; a pass that finds none to poll stops it
    (see :func:`monitor_once`)."""
    while True:
        started = time.monotonic()
        on_pass(monitor_once(ws, sources, site_names=site_names, objects=objects))
        time.sleep(max(0.0, every_s - (time.monotonic() - started)))
