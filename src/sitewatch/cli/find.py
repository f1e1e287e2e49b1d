"""``sitewatch find``: objects of a colour and size on a site's dates, ranked, stored as detections,
with an evidence chip each; optionally saved as a watch rule."""

from __future__ import annotations

from datetime import UTC, datetime, time
from typing import Annotated, Any

import typer

from sitewatch.cli.common import JsonOption, WorkspaceOption, open_workspace, print_json


def find(
    site: Annotated[str, typer.Option("--site", "-s", help="Site to search.")],
    color: Annotated[
        str, typer.Option("--color", "--colour", help="Colour: red, orange, yellow, green, blue, white, black, grey.")
    ],
    length: Annotated[str, typer.Option("--length", help="Length range of the object, e.g. 12-20m.")],
    width: Annotated[str | None, typer.Option("--width", help="Width range, e.g. 2-4m.")] = None,
    zone: Annotated[str | None, typer.Option("--zone", "-z", help="Only objects in this zone.")] = None,
    date_from: Annotated[
        datetime | None, typer.Option("--from", formats=["%Y-%m-%d"], help="First date (inclusive).")
    ] = None,
    date_to: Annotated[
        datetime | None, typer.Option("--to", formats=["%Y-%m-%d"], help="Last date (inclusive).")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="Results to show, best first.")] = 10,
    save_rule: Annotated[
        str | None, typer.Option("--save-rule", help="Save this search as a watch rule of this name.")
    ] = None,
    workspace: WorkspaceOption = None,
    as_json: JsonOption = False,
) -> None:
    """Find objects of a colour (judged in CIELAB against the local background, robust to haze and
    illumination) and size on a site's dates; rank them, store them as detections, write a chip each."""
    from sitewatch.detect.colour import colour_range
    from sitewatch.detect.find import Query, parse_span, search
    from sitewatch.watch.rules import save_search

    query = Query(
        colour=colour_range(color).name,
        length=parse_span(length, "--length"),
        width=None if width is None else parse_span(width, "--width"),
        zone=zone,
        date_from=None if date_from is None else datetime.combine(date_from.date(), time(), UTC),
        date_to=None if date_to is None else datetime.combine(date_to.date(), time.max, UTC),
    )
    with open_workspace(workspace) as ws:
        result = search(ws, site, query, limit=limit)
        rule = None if save_rule is None else save_search(ws, result, save_rule)
    rows = [
        {
            "date": f.acquired.isoformat(),
            "observation_id": f.detection.observation_id,
            "detection_id": f.detection.id,
            "zone": f.zone,
            "score": f.detection.score,
            "length_m": f.detection.length_m,
            "width_m": f.detection.width_m,
            "lab": f.detection.attrs.get("lab"),
            "box_wkt": f.detection.geometry.wkt,
            "chip": None if f.chip is None else str(f.chip),
        }
        for f in result.results
    ]
    unsearched = [{"date": u.acquired.isoformat(), "reason": u.reason} for u in result.unsearched]
    if as_json:
        summary: dict[str, Any] = {"site": result.site, "query": query.to_json(), "results": rows}
        print_json({**summary, "unsearched": unsearched, "rule": None if rule is None else rule.name})
        return
    typer.echo(f"{result.site}: {query.colour} objects {query.length} long" + (f" in zone {zone}" if zone else ""))
    typer.echo(f"{'#':>2}  {'date':10}  {'score':>5}  {'length':>7}  {'width':>6}  {'L*a*b*':>17}  zone")
    for rank, row in enumerate(rows, start=1):
        lab = "/".join(f"{v:.0f}" for v in row["lab"] or ())
        typer.echo(
            f"{rank:>2}  {row['date'][:10]}  {row['score']:5.2f}  {row['length_m']:6.1f}m  {row['width_m']:5.1f}m"
            f"  {lab:>17}  {row['zone'] or '-'}  {row['chip'] or ''}".rstrip()
        )
    if not rows:
        typer.echo("no matches")
    for item in unsearched:
        typer.echo(f"{item['date'][:10]}  not searched: {item['reason']}")
    if rule is not None:
        typer.echo(f"saved watch rule {rule.name!r}: it fires when a new observation matches")


def register(app: typer.Typer) -> None:
    """Add ``find``."""
    app.command()(find)
