"""``sitewatch annotate|review|event ...``: the analyst's annotations, verdicts on changes, and dated
events (the library is :mod:`sitewatch.review`)."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from sitewatch.cli.common import JsonOption, WorkspaceOption, open_workspace, print_json

if TYPE_CHECKING:
    from sitewatch.catalog.models import SiteEvent
    from sitewatch.review.reviews import ReviewedChange

annotate_app = typer.Typer(
    help="Analyst annotations: points and polygons with a label and a note.", no_args_is_help=True
)
review_app = typer.Typer(
    help="Verdicts on detected changes: confirmed, or rejected with a reason.", no_args_is_help=True
)
event_app = typer.Typer(help="Dated events on a site, drawn on its activity charts.", no_args_is_help=True)


_PIPE_WIDTH = 200


def _print_table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> None:
    """A rich table of plain text: labels, notes and reasons are the user's words, never markup."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    table = Table(*header)
    for cells in rows:
        table.add_row(*(Text(cell) for cell in cells))
    console = Console() if sys.stdout.isatty() else Console(width=_PIPE_WIDTH)  # a file keeps every column whole
    console.print(table)


SiteArgument = Annotated[str, typer.Argument(help="Site name.")]
NoteOption = Annotated[str, typer.Option("--note", help="Anything more (several lines are fine).")]


# --- annotate ------------------------------------------------------------------------------------


@annotate_app.command("add")
def annotate_add(
    site: SiteArgument,
    label: Annotated[str, typer.Option("--label", "-l", help="What it is, in a few words.")],
    note: NoteOption = "",
    point: Annotated[str | None, typer.Option("--point", help="LON,LAT in degrees.")] = None,
    geojson: Annotated[
        Path | None, typer.Option("--geojson", help="A point or polygon from a GeoJSON file (one feature).")
    ] = None,
    date: Annotated[
        str | None, typer.Option("--date", help="The image it is drawn on, YYYY-MM-DD (default: the site in general).")
    ] = None,
    author: Annotated[str | None, typer.Option("--author", help="Who drew it.")] = None,
    workspace: WorkspaceOption = None,
    as_json: JsonOption = False,
) -> None:
    """Mark a point (--point) or a polygon (--geojson) on a site, or on one image of it (--date)."""
    from sitewatch.errors import GeometryError
    from sitewatch.review.annotations import (
        add_annotation,
        annotation_feature,
        describe_place,
        image_on,
        parse_point,
        read_annotation_geometry,
    )
    from sitewatch.review.text import parse_when

    if (point is None) == (geojson is None):
        raise GeometryError("annotation", "give exactly one of --point LON,LAT or --geojson FILE")
    with open_workspace(workspace) as ws:
        if geojson is not None:
            geometry = read_annotation_geometry(geojson, ws.settings.limits)
        else:
            geometry = parse_point(point or "")
        scene_id = None if date is None else image_on(ws, site, parse_when(date, "--date")).scene_id
        annotation = add_annotation(ws, site, geometry, label, note, scene_id=scene_id, author=author)
        feature = annotation_feature(ws.catalog.site(site), annotation)
    if as_json:
        print_json(feature)
        return
    on = "" if annotation.acquired is None else f", on the image of {annotation.acquired.date()}"
    typer.echo(
        f"added annotation {annotation.id} to {site}: {annotation.label!r} at {describe_place(annotation.geometry)}{on}"
    )


@annotate_app.command("list")
def annotate_list(site: SiteArgument, workspace: WorkspaceOption = None, as_json: JsonOption = False) -> None:
    """List a site's annotations (--json: as GeoJSON)."""
    from sitewatch.review.annotations import annotations_geojson, describe_place, list_annotations

    with open_workspace(workspace) as ws:
        if as_json:
            print_json(annotations_geojson(ws, site))
            return
        annotations = list_annotations(ws, site)
    if not annotations:
        typer.echo(f"no annotations on {site} (add one with `sitewatch annotate add`)")
        return
    _print_table(
        ("id", "label", "image", "author", "where", "note"),
        [
            (
                str(a.id),
                a.label,
                "-" if a.acquired is None else str(a.acquired.date()),
                a.author or "-",
                describe_place(a.geometry),
                a.note,
            )
            for a in annotations
        ],
    )


@annotate_app.command("remove")
def annotate_remove(
    annotation_id: Annotated[int, typer.Argument(help="Annotation id (see `annotate list`).")],
    workspace: WorkspaceOption = None,
) -> None:
    """Remove an annotation."""
    from sitewatch.review.annotations import remove_annotation

    with open_workspace(workspace) as ws:
        removed = remove_annotation(ws, annotation_id)
        site = ws.catalog.site_by_id(removed.site_id).name
    typer.echo(f"removed annotation {annotation_id} ({removed.label!r}) from {site}")


@annotate_app.command("export")
def annotate_export(
    site: SiteArgument,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="GeoJSON file (default: exports/SITE-annotations.geojson).")
    ] = None,
    workspace: WorkspaceOption = None,
) -> None:
    """Write a site's annotations as GeoJSON (lon/lat), to read into a GIS or import elsewhere."""
    from sitewatch.review.annotations import export_annotations

    with open_workspace(workspace) as ws:
        path = export_annotations(ws, site, out)
    typer.echo(f"annotations of {site}: {path}")


@annotate_app.command("import")
def annotate_import(
    site: SiteArgument,
    path: Annotated[Path, typer.Argument(help="GeoJSON FeatureCollection; each feature needs properties.label.")],
    workspace: WorkspaceOption = None,
) -> None:
    """Add the annotations of a GeoJSON file (as `annotate export` writes); every one is checked first."""
    from sitewatch.review.annotations import import_annotations_file

    with open_workspace(workspace) as ws:
        added = import_annotations_file(ws, site, path, limits=ws.settings.limits)
    typer.echo(f"imported {len(added)} annotations to {site} from {path}")


# --- review --------------------------------------------------------------------------------------

ChangeArgument = Annotated[int, typer.Argument(help="Change id (see `sitewatch review list SITE`).")]
ReviewerOption = Annotated[str | None, typer.Option("--reviewer", help="Who judged it.")]


def _judge(workspace: Path | None, site: str, change_id: int, verdict: str, reason: str, reviewer: str | None) -> None:
    from sitewatch.review.reviews import review_change

    with open_workspace(workspace) as ws:
        review = review_change(ws, site, change_id, verdict, reason, reviewer=reviewer)
    when = f"between {review.date_from.date()} and {review.date_to.date()}"
    typer.echo(f"{verdict} change {change_id} of {site} ({review.kind}, {when})")


@review_app.command("confirm")
def confirm(
    site: SiteArgument,
    change_id: ChangeArgument,
    reason: Annotated[str, typer.Option("--reason", help="What it is (optional).")] = "",
    reviewer: ReviewerOption = None,
    workspace: WorkspaceOption = None,
) -> None:
    """Confirm a change: it is real."""
    _judge(workspace, site, change_id, "confirmed", reason, reviewer)


@review_app.command("reject")
def reject(
    site: SiteArgument,
    change_id: ChangeArgument,
    reason: Annotated[str, typer.Option("--reason", help="Why it is not a change (shadow, misregistration, ...).")],
    reviewer: ReviewerOption = None,
    workspace: WorkspaceOption = None,
) -> None:
    """Reject a change: it is not one, and the reason says what it is."""
    _judge(workspace, site, change_id, "rejected", reason, reviewer)


def _change_row(item: ReviewedChange) -> dict[str, Any]:
    change, review = item.change, item.review
    return {
        "id": change.id,
        "kind": change.kind,
        "date_from": change.date_from.isoformat(),
        "date_to": change.date_to.isoformat(),
        "area_m2": round(change.area_m2, 1),
        "confidence": round(change.confidence, 3),
        "persistence": change.persistence,
        "detector": change.detector,
        "verdict": None if review is None else review.verdict,
        "reason": None if review is None else review.reason,
        "reviewer": None if review is None else review.reviewer,
        "reviewed": None if review is None else review.created.isoformat(),
    }


@review_app.command("list")
def review_list(site: SiteArgument, workspace: WorkspaceOption = None, as_json: JsonOption = False) -> None:
    """List the site's current changes with their verdicts."""
    from sitewatch.review.reviews import reviewed_changes

    with open_workspace(workspace) as ws:
        rows = [_change_row(item) for item in reviewed_changes(ws, site)]
    if as_json:
        print_json({"site": site, "changes": rows})
        return
    if not rows:
        typer.echo(f"no changes at {site} (run `sitewatch analyze`)")
        return
    _print_table(
        ("id", "kind", "between", "area m²", "persistence", "verdict", "reason", "reviewer"),
        [
            (
                str(row["id"]),
                row["kind"],
                f"{row['date_from'][:10]} and {row['date_to'][:10]}",
                f"{row['area_m2']:,.0f}",
                row["persistence"] or "-",
                row["verdict"] or "-",
                row["reason"] or "",
                row["reviewer"] or "",
            )
            for row in rows
        ],
    )
    verdicts = [row["verdict"] for row in rows]
    typer.echo(
        f"{len(rows)} changes: {verdicts.count('confirmed')} confirmed, {verdicts.count('rejected')} rejected, "
        f"{verdicts.count(None)} not reviewed"
    )


# --- event ---------------------------------------------------------------------------------------


def _event_row(event: SiteEvent) -> dict[str, Any]:
    from sitewatch.review.text import describe_when

    return {"id": event.id, "date": describe_when(event.when), "label": event.label, "note": event.note}


@event_app.command("add")
def event_add(
    site: SiteArgument,
    date: Annotated[str, typer.Option("--date", help="YYYY-MM-DD, or an ISO 8601 time (UTC unless it says).")],
    label: Annotated[str, typer.Option("--label", "-l", help="What happened, in a few words.")],
    note: NoteOption = "",
    workspace: WorkspaceOption = None,
) -> None:
    """Mark a date on a site ("summit"): listed in its report and drawn on its activity charts."""
    from sitewatch.review.events import add_event
    from sitewatch.review.text import parse_when

    when = parse_when(date, "--date")
    with open_workspace(workspace) as ws:
        event = add_event(ws, site, when, label, note)
    row = _event_row(event)
    typer.echo(f"added event {row['id']} to {site}: {row['date']} {row['label']!r}")


@event_app.command("list")
def event_list(site: SiteArgument, workspace: WorkspaceOption = None, as_json: JsonOption = False) -> None:
    """List a site's events in date order."""
    from sitewatch.review.events import list_events

    with open_workspace(workspace) as ws:
        rows = [_event_row(event) for event in list_events(ws, site)]
    if as_json:
        print_json({"site": site, "events": rows})
        return
    if not rows:
        typer.echo(f"no events at {site} (add one with `sitewatch event add`)")
        return
    _print_table(("id", "date", "label", "note"), [(str(r["id"]), r["date"], r["label"], r["note"]) for r in rows])


@event_app.command("remove")
def event_remove(
    event_id: Annotated[int, typer.Argument(help="Event id (see `event list`).")],
    workspace: WorkspaceOption = None,
) -> None:
    """Remove an event."""
    from sitewatch.review.events import remove_event

    with open_workspace(workspace) as ws:
        removed = remove_event(ws, event_id)
        site = ws.catalog.site_by_id(removed.site_id).name
    typer.echo(f"removed event {event_id} ({removed.label!r}) from {site}")


def register(app: typer.Typer) -> None:
    """Add the ``annotate``, ``review`` and ``event`` groups."""
    app.add_typer(annotate_app, name="annotate")
    app.add_typer(review_app, name="review")
    app.add_typer(event_app, name="event")
