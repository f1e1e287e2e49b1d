"""``sitewatch ingest``: files, folders, STAC JSON files and STAC API searches into the workspace."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from sitewatch.cli.common import JsonOption, WorkspaceOption, open_workspace, print_json, progress_bar


def ingest(
    paths: Annotated[
        list[Path] | None, typer.Argument(help="Rasters, folders, or STAC Item/Collection/Catalog JSON.")
    ] = None,
    site: Annotated[
        list[str] | None, typer.Option("--site", "-s", help="Only these sites (repeatable).")
    ] = None,
    datetime_: Annotated[
        str | None, typer.Option("--datetime", help="Acquisition time (ISO 8601, UTC if no zone).")
    ] = None,
    bounds: Annotated[
        str | None, typer.Option("--bounds", help="LEFT,BOTTOM,RIGHT,TOP for plain images.")
    ] = None,
    crs: Annotated[
        str | None, typer.Option("--crs", help="CRS of --bounds or of a world file (e.g. EPSG:32615).")
    ] = None,
    stac: Annotated[
        str | None, typer.Option("--stac", help="STAC API URL to search by site footprint.")
    ] = None,
    collection: Annotated[
        list[str] | None, typer.Option("--collection", help="STAC collection (repeatable).")
    ] = None,
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
    import shutil
    from uuid import uuid4

    from sitewatch.errors import InputError
    from sitewatch.ingest.pipeline import ingest as run_ingest

    if not paths and not stac:
        raise InputError("ingest", "give files or folders to ingest, or --stac URL")
    with open_workspace(workspace) as ws:
        download_dir = ws.root / ".downloads" / uuid4().hex
        try:
            sources = _sources(
                ws,
                paths or [],
                site or [],
                datetime_,
                bounds,
                crs,
                stac,
                collection or [],
                date_from,
                date_to,
                allow_host or [],
                download_dir,
            )
            with progress_bar() as bar:
                task = bar.add_task("ingesting", total=len(sources))
                outcomes = run_ingest(
                    ws,
                    sources,
                    site_names=site or [],
                    copy=not no_copy,
                    on_progress=lambda event: bar.update(task, completed=event.done),
                )
        finally:
            shutil.rmtree(download_dir, ignore_errors=True)
    _print(outcomes, as_json)
    if any(o.status == "failed" for o in outcomes):
        raise typer.Exit(1)


def _sources(
    ws: Any,
    paths: list[Path],
    sites: list[str],
    datetime_: str | None,
    bounds: str | None,
    crs: str | None,
    stac: str | None,
    collections: list[str],
    date_from: str | None,
    date_to: str | None,
    allow_host: list[str],
    download_dir: Path,
) -> list[Any]:
    from sitewatch.ingest.metadata import parse_datetime
    from sitewatch.ingest.resolve import expand_paths, file_source, parse_bounds, parse_crs

    acquired = parse_datetime(datetime_) if datetime_ else None
    box = parse_bounds(bounds) if bounds else None
    given_crs = parse_crs(crs) if crs else None
    limits = ws.settings.limits
    hosts = tuple(allow_host) + ws.settings.allowed_hosts
    sources = []
    for path in expand_paths(paths):
        if path.suffix.lower() == ".json":
            from sitewatch.ingest.stac import sources_from_stac_file
            from sitewatch.io.stac import HostPolicy

            sources.extend(
                sources_from_stac_file(path, download_dir, HostPolicy(allowed_hosts=hosts), limits)
            )
        else:
            sources.append(file_source(path, acquired=acquired, bounds=box, crs=given_crs, limits=limits))
    if stac:
        from urllib.parse import urlparse

        from shapely.ops import unary_union

        from sitewatch.ingest.stac import sources_from_stac_api
        from sitewatch.io.stac import HostPolicy

        targets = [ws.catalog.site(n) for n in sites] if sites else ws.catalog.sites()
        if not targets:
            from sitewatch.errors import InputError

            raise InputError(stac, "no sites to search for; add one with `sitewatch site add`")
        bbox = unary_union([s.geometry for s in targets]).bounds
        policy = HostPolicy(allowed_hosts=(urlparse(stac).hostname or "", *hosts))
        sources.extend(
            sources_from_stac_api(
                stac,
                collections,
                bbox,
                parse_datetime(date_from, "--from") if date_from else None,
                parse_datetime(date_to, "--to") if date_to else None,
                download_dir,
                policy,
                limits,
            )
        )
    return sources


def _print(outcomes: list[Any], as_json: bool) -> None:
    if as_json:
        print_json({"scenes": [o.__dict__ for o in outcomes]})
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
