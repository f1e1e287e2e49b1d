"""``sitewatch monitor``: poll each site's sources for new scenes, ingest, analyze, alert, deliver.

One pass (:func:`monitor_once`):

1. bring the alert log up to date (a killed run may have recorded alerts it did not log);
2. look for new scenes: raster files in the watched folders not tried before (a file is known by
   its path, size and modification time, so one still being copied is tried again once it has
   changed), and, with a STAC API, items over each site's footprint acquired after its latest
   observation, ingested oldest first (the search and its downloads are the STAC ingest's, with its
   host rules);
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
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sitewatch.catalog.models import Alert, MonitoredFile, Site
from sitewatch.detect.base import AUTO as AUTO_OBJECTS
from sitewatch.errors import InputError, SitewatchError
from sitewatch.ingest.pipeline import IngestOutcome, ingest
from sitewatch.ingest.resolve import RASTER_SUFFIXES, IngestRequest, downloads, file_source, resolve_sources
from sitewatch.watch.alerts import sync_log
from sitewatch.watch.notify import Delivery, deliver_pending
from sitewatch.workspace import Workspace

log = logging.getLogger(__name__)

_EVERY = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd])\s*$")
_UNITS_S = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_UNDATED = datetime.max.replace(tzinfo=UTC)  # items without a time sort last (ingest reads it from the file)


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
    """Where the monitor looks for new scenes: watched folders and, optionally, a STAC API."""

    folders: tuple[Path, ...] = ()
    stac_api: str | None = None
    collections: tuple[str, ...] = ()
    allow_hosts: tuple[str, ...] = ()  # extra hosts STAC assets may come from

    def __post_init__(self) -> None:
        if not self.folders and self.stac_api is None:
            raise InputError("monitor", "give a folder to watch (--folder DIR) or a STAC API (--stac URL)")


@dataclass(frozen=True)
class PassReport:
    """What one pass did."""

    ingested: tuple[IngestOutcome, ...]  # every new source tried (ingested, duplicate, no-site or failed)
    analyzed: tuple[str, ...]  # sites analyzed
    failures: tuple[str, ...]  # one line each: a source or site that failed (tried again next pass)
    alerts: tuple[Alert, ...]  # alerts raised in this pass
    deliveries: tuple[Delivery, ...]  # webhook and e-mail attempts
    repaired: tuple[Alert, ...]  # alerts a killed run had recorded but not logged, logged now


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


def _ingest_folders(ws: Workspace, folders: Sequence[Path], site_names: Sequence[str]) -> list[IngestOutcome]:
    """Ingest the folders' new files and remember what each gave."""
    files = new_files(ws, [folder for folder in folders if folder.is_dir()])
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


def _ingest_stac(ws: Workspace, sources: Sources, site: Site) -> list[IngestOutcome]:
    """Search the STAC API over SITE's footprint for items after its latest observation; ingest them."""
    latest = max((obs.acquired for obs in ws.catalog.observations(site)), default=None)
    request = IngestRequest(
        site_names=(site.name,),
        stac_api=sources.stac_api,
        collections=sources.collections,
        date_from=None if latest is None else (latest + timedelta(seconds=1)).isoformat(),
        allow_hosts=sources.allow_hosts,
    )
    with downloads(ws) as folder:
        found = resolve_sources(ws, request, folder)
        # Oldest first, whatever order the API answers in (often newest first): the next pass searches
        # after the latest image, so a pass killed part way must not leave an earlier scene behind it.
        found.sort(key=lambda source: source.acquired or _UNDATED)
        return ingest(ws, found, site_names=(site.name,)) if found else []


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
    """One pass over SOURCES for SITE_NAMES (default: every site); see the module docstring.

    OBJECTS is the object detector ``analyze`` counts with (None: no counting). A source or a site
    that fails is reported in the result and tried again next pass; it does not stop the others.

    Raises:
        NotFound: If a site named does not exist.
    """
    from sitewatch.analyze import analyze_site

    sites = [ws.catalog.site(name) for name in site_names] or ws.catalog.sites()
    repaired = sync_log(ws)
    outcomes = _ingest_folders(ws, sources.folders, site_names)
    failures = [f"{folder}: not a folder (tried again next pass)" for folder in sources.folders if not folder.is_dir()]
    if sources.stac_api is not None:
        for site in sites:
            try:
                outcomes.extend(_ingest_stac(ws, sources, site))
            except SitewatchError as exc:
                failures.append(f"{site.name}: STAC search failed: {exc}")
    failures += [f"{o.source}: {o.message}" for o in outcomes if o.status == "failed"]
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
        tuple(outcomes), tuple(analyzed), tuple(failures), tuple(alerts), tuple(deliveries), tuple(repaired)
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
    pass's report. Stop it with an interrupt: a pass cut short is taken up by the next run."""
    while True:
        started = time.monotonic()
        on_pass(monitor_once(ws, sources, site_names=site_names, objects=objects))
        time.sleep(max(0.0, every_s - (time.monotonic() - started)))
