"""``sitewatch analyze``: find, date and store change polygons for a site."""

from __future__ import annotations

from typing import Annotated

import typer

from sitewatch.cli.common import JsonOption, NoAlignOption, WorkspaceOption, open_workspace, print_json, progress_bar


def analyze(
    site: Annotated[str, typer.Option("--site", "-s", help="Site to analyze.")],
    detector: Annotated[
        str, typer.Option("--detector", help="Change detector (see `sitewatch change --help`).")
    ] = "cva",
    no_align: NoAlignOption = False,
    workspace: WorkspaceOption = None,
    as_json: JsonOption = False,
) -> None:
    """Align a site's observations, compare consecutive ones; store changes and export them as GeoJSON."""
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
                "by_kind": {k: sum(c.kind == k for c in result.changes) for k in ("appeared", "removed", "modified")},
                "skipped": result.skipped,
                "geojson": str(result.geojson) if result.geojson else None,
            }
        )
        return
    for obs_id, reason in result.skipped.items():
        typer.echo(f"left out observation {obs_id}: {reason}")
    typer.echo(f"{result.site}: {len(result.changes)} changes in {result.pairs} pairs ({result.detector})")
    for change in result.changes[:10]:
        typer.echo(
            f"  {change.kind:9s} {change.area_m2:9.0f} m²  conf {change.confidence:.2f}  "
            f"between {change.date_from:%Y-%m-%d} and {change.date_to:%Y-%m-%d}"
        )
    if result.geojson:
        typer.echo(f"GeoJSON: {result.geojson}")


def register(app: typer.Typer) -> None:
    """Add ``analyze``."""
    app.command()(analyze)
