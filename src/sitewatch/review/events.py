"""Site events: dated markers an analyst puts on a site ("summit 12 June"), listed in the report and
drawn on its activity charts, so a peak can be read against what was happening."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime

from sitewatch.catalog.models import SiteEvent
from sitewatch.review.text import as_utc, check_label, check_text
from sitewatch.workspace import Workspace


def add_event(ws: Workspace, site_name: str, when: datetime | date, label: str, note: str = "") -> SiteEvent:
    """Mark WHEN (a day: UTC midnight; a time: as given, naive taken as UTC) on a site.

    Raises:
        NotFound: If there is no such site.
        InputError: If the label or note fails its check.
    """
    site = ws.catalog.site(site_name)
    event = SiteEvent(
        site_id=site.id or 0,
        when=as_utc(when),
        label=check_label(label, "event label"),
        note=check_text(note, "event note"),
        created=datetime.now(UTC),
    )
    return ws.catalog.add_event(event)


def update_event(
    ws: Workspace,
    event_id: int,
    *,
    when: datetime | date | None = None,
    label: str | None = None,
    note: str | None = None,
) -> SiteEvent:
    """Change an event's date, label or note (None: keep it as it is).

    Raises:
        NotFound: If there is no such event.
        InputError: If the new label or note fails its check.
    """
    current = ws.catalog.event(event_id)
    return ws.catalog.update_event(
        replace(
            current,
            when=current.when if when is None else as_utc(when),
            label=current.label if label is None else check_label(label, "event label"),
            note=current.note if note is None else check_text(note, "event note"),
        )
    )


def remove_event(ws: Workspace, event_id: int) -> SiteEvent:
    """Remove an event; returns it as it was.

    Raises:
        NotFound: If there is no such event.
    """
    return ws.catalog.remove_event(event_id)


def list_events(ws: Workspace, site_name: str) -> list[SiteEvent]:
    """A site's events in date order."""
    return ws.catalog.events(ws.catalog.site(site_name))
