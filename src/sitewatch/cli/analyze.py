"""``sitewatch analyze``: find, date and store change polygons for a site, persistent change first."""

from __future__ import annotations

from typing import Annotated

import typer

from sitewatch.cli.common import JsonOption, NoAlignOption, WorkspaceOption, open_workspace, print_json, progress_bar

#: The persistence classes, headline first (see :mod:`sitewatch.change.history`).
PERSISTENCE = ("persistent", "unconfirmed", "transient")


def analyze(
    site: Annotated[str, typer.Option("--site", "-s", help="Site to analyze.")],
    detector: Annotated[
        str,
        typer.Option(
            "--detector", help="Change detector (see `sitewatch change --help`); auto: the best for the imagery."
        ),
    ] = "auto",
    no_align: NoAlignOption = False,
    workspace: WorkspaceOption = None,
    as_json: JsonOption = False,
) -> None:
    """Align a site's observations, compare consecutive ones, follow each change through all of them;
    store the changes (persistent, transient or unconfirmed, dated) and export them as GeoJSON."""
    from sitewatch.analyze import analyze_site

    with open_workspace(workspace) as ws, progress_bar() as bar:
        task = bar.add_task(f"analyzing {site}", total=None)
        result = analyze_site(
            ws,
            site,
            detector=detector,
            align=not no_align,
            on_progress=lambda e: bar.update(task, total=e.total, completed=e.done),
        )
    if as_json:
        print_json(
            {
                "site": result.site,
                "detector": result.detector,
                "pairs": result.pairs,
                "changes": len(result.changes),
                "regions": result.regions,
                "by_kind": {k: sum(c.kind == k for c in result.changes) for k in ("appeared", "removed", "modified")},
                "by_persistence": {p: sum(c.persistence == p for c in result.changes) for p in PERSISTENCE},
                "skipped": result.skipped,
                "geojson": str(result.geojson) if result.geojson else None,
            }
        )
        return
    for obs_id, reason in result.skipped.items():
        typer.echo(f"left out observation {obs_id}: {reason}")
    counts = ", ".join(f"{sum(c.persistence == p for c in result.changes)} {p}" for p in PERSISTENCE)
    typer.echo(
        f"{result.site}: {len(result.changes)} changes ({counts}) from {result.regions} regions "
        f"in {result.pairs} pairs ({result.detector})"
    )
    headline = [c for c in result.changes if c.persistence != "transient"]
    headline.sort(key=lambda c: PERSISTENCE.index(c.persistence) if c.persistence in PERSISTENCE else 1)
    for change in headline[:10]:
        unseen = f"  (no view on {', '.join(f'{d:%Y-%m-%d}' for d in change.unseen)})" if change.unseen else ""
        typer.echo(
            f"  {change.persistence or 'not followed':12s} {change.kind:9s} {change.area_m2:9.0f} m²  "
            f"conf {change.confidence:.2f}  between {change.date_from:%Y-%m-%d} and {change.date_to:%Y-%m-%d}{unseen}"
        )
    if result.geojson:
        typer.echo(f"GeoJSON: {result.geojson}")


def register(app: typer.Typer) -> None:
    """Add ``analyze``."""
    app.command()(analyze)
