"""``sitewatch ingest``: files, folders, STAC JSON files and STAC API searches into the workspace."""

from __future__ import annotations

import dataclasses
from typing import Annotated, Any

import typer

from sitewatch.cli.common import JsonOption, WorkspaceOption, open_workspace, print_json, progress_bar


def ingest(
    paths: Annotated[
        list[str] | None,
        typer.Argument(help="Rasters, folders, STAC Item/Collection/Catalog JSON files or http(s) URLs."),
    ] = None,
    site: Annotated[list[str] | None, typer.Option("--site", "-s", help="Only these sites (repeatable).")] = None,
    datetime_: Annotated[
        str | None, typer.Option("--datetime", help="Acquisition time (ISO 8601, UTC if no zone).")
    ] = None,
    bounds: Annotated[str | None, typer.Option("--bounds", help="LEFT,BOTTOM,RIGHT,TOP for plain images.")] = None,
    crs: Annotated[
        str | None, typer.Option("--crs", help="CRS of --bounds or of a world file (e.g. EPSG:32615).")
    ] = None,
    stac: Annotated[str | None, typer.Option("--stac", help="STAC API URL to search by site footprint.")] = None,
    collection: Annotated[list[str] | None, typer.Option("--collection", help="STAC collection (repeatable).")] = None,
    date_from: Annotated[str | None, typer.Option("--from", help="Search start date.")] = None,
    date_to: Annotated[str | None, typer.Option("--to", help="Search end date.")] = None,
    allow_host: Annotated[
        list[str] | None, typer.Option("--allow-host", help="Extra host remote assets may come from.")
    ] = None,
    no_copy: Annotated[
        bool, typer.Option("--no-copy", help="Reference scenes by path and hash instead of copying.")
    ] = False,
    workspace: WorkspaceOption = None,
    as_json: JsonOption = False,
) -> None:
    """Ingest imagery: each scene is hashed, stored, and put on the grid of every site it covers."""
    from sitewatch.ingest.pipeline import ingest as run_ingest
    from sitewatch.ingest.resolve import IngestRequest, downloads, resolve_sources

    request = IngestRequest(
        inputs=tuple(paths or ()),
        site_names=tuple(site or ()),
        acquired=datetime_,
        bounds=bounds,
        crs=crs,
        stac_api=stac,
        collections=tuple(collection or ()),
        date_from=date_from,
        date_to=date_to,
        allow_hosts=tuple(allow_host or ()),
    )
    with open_workspace(workspace) as ws, downloads(ws) as download_dir:
        sources = resolve_sources(ws, request, download_dir)
        with progress_bar() as bar:
            task = bar.add_task("ingesting", total=len(sources))
            outcomes = run_ingest(
                ws,
                sources,
                site_names=request.site_names,
                copy=not no_copy,
                on_progress=lambda event: bar.update(task, completed=event.done),
            )
    _print(outcomes, as_json)
    if any(o.status == "failed" for o in outcomes):
        raise typer.Exit(1)


def _print(outcomes: list[Any], as_json: bool) -> None:
    if as_json:
        print_json({"scenes": [dataclasses.asdict(o) for o in outcomes]})
        return
    import sys

    for o in outcomes:
        if o.status == "ingested":
            typer.echo(f"ingested  {o.source}  ({o.acquired}) -> {', '.join(o.sites)}")
        elif o.status == "failed":
            print(f"error: {o.message}", file=sys.stderr)
        else:
            typer.echo(f"skipped   {o.source}: {o.message}")
    counts = {s: sum(o.status == s for o in outcomes) for s in ("ingested", "duplicate", "no-site", "failed")}
    typer.echo(", ".join(f"{n} {s}" for s, n in counts.items()))


def register(app: typer.Typer) -> None:
    """Add ``ingest``."""
    app.command()(ingest)
