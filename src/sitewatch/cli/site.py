"""``sitewatch site ...``: the watchlist of sites, their zones and their monitoring sources."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from sitewatch.cli.common import JsonOption, WorkspaceOption, open_workspace, print_json

site_app = typer.Typer(help="Manage the watchlist: sites, zones, sources, import and export.", no_args_is_help=True)
zone_app = typer.Typer(help="Named zones inside a site.", no_args_is_help=True)
source_app = typer.Typer(help="Where `sitewatch monitor` looks for a site's new scenes.", no_args_is_help=True)


def _outline(geojson: Path | None, bbox: str | None, point: str | None, radius: float | None) -> Any:
    from sitewatch.errors import GeometryError
    from sitewatch.sites import from_bbox, from_point, read_geojson_geometry

    given = [x for x in (geojson, bbox, point) if x is not None]
    if len(given) != 1:
        raise GeometryError("site", "give exactly one of --geojson, --bbox or --point (with --radius)")
    if geojson is not None:
        return read_geojson_geometry(geojson)
    if bbox is not None:
        return from_bbox(bbox)
    try:
        lon, lat = (float(v) for v in (point or "").split(","))
    except ValueError as exc:
        raise GeometryError("--point", f"expected LON,LAT in degrees, got {point!r}") from exc
    if radius is None:
        raise GeometryError("--point", "a point needs --radius in metres")
    return from_point(lon, lat, radius)


def _summary(site: Any, observations: int | None = None) -> dict[str, Any]:
    west, south, east, north = site.geometry.bounds
    out = {
        "name": site.name,
        "tags": list(site.tags),
        "bbox": [round(v, 6) for v in (west, south, east, north)],
        "grid": {"epsg": site.epsg, "origin": [site.origin_x, site.origin_y], "base_gsd": site.base_gsd},
        "zones": [z.name for z in site.zones],
    }
    if observations is not None:
        out["observations"] = observations
    return out


@site_app.command("add")
def add(
    name: Annotated[str, typer.Argument(help="Site name.")],
    geojson: Annotated[Path | None, typer.Option("--geojson", help="Outline from a GeoJSON file.")] = None,
    bbox: Annotated[str | None, typer.Option("--bbox", help="W,S,E,N in degrees (as a STAC bbox).")] = None,
    point: Annotated[str | None, typer.Option("--point", help="LON,LAT in degrees (with --radius).")] = None,
    radius: Annotated[float | None, typer.Option("--radius", help="Radius in metres around --point.")] = None,
    tag: Annotated[list[str] | None, typer.Option("--tag", "-t", help="A tag (repeatable).")] = None,
    gsd: Annotated[float | None, typer.Option("--gsd", help="Pin the site grid's pixel size (m).")] = None,
    workspace: WorkspaceOption = None,
    as_json: JsonOption = False,
) -> None:
    """Add a site from a GeoJSON file, a bbox, or a point and radius."""
    from sitewatch.sites import new_site

    site = new_site(name, _outline(geojson, bbox, point, radius), tags=tag or (), gsd=gsd)
    with open_workspace(workspace) as ws:
        site = ws.catalog.add_site(site)
    if as_json:
        print_json(_summary(site))
    else:
        typer.echo(f"added site {site.name!r}: grid EPSG:{site.epsg}, {site.extent_x:.0f} x {site.extent_y:.0f} m")


@site_app.command("list")
def list_sites(workspace: WorkspaceOption = None, as_json: JsonOption = False) -> None:
    """List the sites in the watchlist."""
    with open_workspace(workspace) as ws:
        rows = [_summary(s, len(ws.catalog.observations(s))) for s in ws.catalog.sites()]
    if as_json:
        print_json({"sites": rows})
        return
    from rich.console import Console
    from rich.table import Table

    table = Table("site", "tags", "zones", "grid", "observations")
    for row in rows:
        gsd = row["grid"]["base_gsd"]
        grid = f"EPSG:{row['grid']['epsg']} @ {gsd:g} m" if gsd else f"EPSG:{row['grid']['epsg']}"
        table.add_row(row["name"], ", ".join(row["tags"]), ", ".join(row["zones"]), grid, str(row["observations"]))
    Console().print(table)


@site_app.command("show")
def show(name: str, workspace: WorkspaceOption = None, as_json: JsonOption = False) -> None:
    """Show one site, its zones and its observations."""
    with open_workspace(workspace) as ws:
        site = ws.catalog.site(name)
        observations = ws.catalog.observations(site)
        info = _summary(site, len(observations))
        info["observation_list"] = [
            {
                "date": o.acquired.isoformat(),
                "gsd": o.gsd,
                "valid": round(o.valid_fraction, 3),
                "flags": list(o.flags),
            }
            for o in observations
        ]
    if as_json:
        print_json(info)
        return
    typer.echo(f"{info['name']}  tags: {', '.join(info['tags']) or '-'}  zones: {', '.join(info['zones']) or '-'}")
    typer.echo(f"  bbox {info['bbox']}  grid EPSG:{site.epsg} base GSD {site.base_gsd or '-'} m")
    for obs in info["observation_list"]:
        typer.echo(f"  {obs['date']}  {obs['gsd']:g} m  valid {obs['valid']:.0%}  {' '.join(obs['flags'])}")


@site_app.command("remove")
def remove(name: str, workspace: WorkspaceOption = None) -> None:
    """Remove a site with its zones, observations and changes (scenes stay in the store)."""
    with open_workspace(workspace) as ws:
        ws.catalog.remove_site(name)
    typer.echo(f"removed site {name!r}")


@site_app.command("export")
def export(
    output: Annotated[Path, typer.Option("-o", "--output", help="GeoJSON file to write.")],
    workspace: WorkspaceOption = None,
) -> None:
    """Export the whole watchlist (sites and zones) as GeoJSON."""
    from sitewatch.sites.watchlist import write_watchlist

    with open_workspace(workspace) as ws:
        sites = ws.catalog.sites()
    write_watchlist(sites, output)
    typer.echo(f"wrote {len(sites)} sites to {output}")


@site_app.command("import")
def import_(
    path: Annotated[Path, typer.Argument(help="Watchlist GeoJSON (as written by `site export`).")],
    workspace: WorkspaceOption = None,
) -> None:
    """Import a watchlist; every site is checked before any is added."""
    from sitewatch.errors import AlreadyExists
    from sitewatch.sites import import_watchlist

    sites = import_watchlist(path)
    with open_workspace(workspace) as ws:
        taken = {s.name for s in ws.catalog.sites()} & {s.name for s in sites}
        if taken:
            raise AlreadyExists(f"{path}: sites already in the workspace: {', '.join(sorted(taken))}")
        ws.catalog.add_sites(sites)
    typer.echo(f"imported {len(sites)} sites from {path}")


@zone_app.command("add")
def zone_add(
    site: Annotated[str, typer.Argument(help="Site name.")],
    name: Annotated[str, typer.Argument(help="Zone name, e.g. 'loading area'.")],
    geojson: Annotated[Path | None, typer.Option("--geojson")] = None,
    bbox: Annotated[str | None, typer.Option("--bbox", help="W,S,E,N in degrees.")] = None,
    workspace: WorkspaceOption = None,
) -> None:
    """Add a named zone inside a site."""
    from sitewatch.catalog.models import Zone
    from sitewatch.errors import GeometryError

    outline = _outline(geojson, bbox, None, None)
    with open_workspace(workspace) as ws:
        parent = ws.catalog.site(site)
        if not parent.geometry.buffer(1e-6).contains(outline):
            raise GeometryError(name, f"zone is not inside site {site!r}")
        ws.catalog.add_zone(site, Zone(name=name, geometry=outline))
    typer.echo(f"added zone {name!r} to site {site!r}")


@zone_app.command("remove")
def zone_remove(site: str, name: str, workspace: WorkspaceOption = None) -> None:
    """Remove a zone from a site."""
    with open_workspace(workspace) as ws:
        ws.catalog.remove_zone(site, name)
    typer.echo(f"removed zone {name!r} from site {site!r}")


@source_app.command("add")
def source_add(
    site: Annotated[str, typer.Argument(help="Site name.")],
    stac: Annotated[str | None, typer.Option("--stac", help="STAC API to search over the site.")] = None,
    collection: Annotated[list[str] | None, typer.Option("--collection", help="STAC collection (repeatable).")] = None,
    allow_host: Annotated[
        list[str] | None, typer.Option("--allow-host", help="Extra host STAC assets may come from.")
    ] = None,
    folder: Annotated[Path | None, typer.Option("--folder", help="Folder to watch for new rasters.")] = None,
    workspace: WorkspaceOption = None,
    as_json: JsonOption = False,
) -> None:
    """Save a STAC API or a folder as one of SITE's sources, polled by every `sitewatch monitor` pass."""
    from sitewatch.watch.sources import add_source, source_record

    with open_workspace(workspace) as ws:
        source = add_source(
            ws, site, stac=stac, collections=collection or (), allow_hosts=allow_host or (), folder=folder
        )
    if as_json:
        print_json(source_record(source, site))
    else:
        typer.echo(f"added {source.kind} source #{source.id} to site {site!r}: {source.target}")


@source_app.command("list")
def source_list(
    site: Annotated[str | None, typer.Argument(help="Only this site's sources.")] = None,
    workspace: WorkspaceOption = None,
    as_json: JsonOption = False,
) -> None:
    """List the saved sources, of one site or of every site."""
    from sitewatch.watch.sources import list_sources, source_record

    with open_workspace(workspace) as ws:
        names = {s.id: s.name for s in ws.catalog.sites()}
        rows = [source_record(source, names[source.site_id]) for source in list_sources(ws, site)]
    if as_json:
        print_json({"sources": rows})
        return
    from rich.console import Console
    from rich.table import Column, Table

    # Fold, not cut: a path or URL is what the user copies from here.
    table = Table("id", "site", "kind", Column("target", overflow="fold"), "collections", "allowed hosts")
    for row in rows:
        table.add_row(
            str(row["id"]),
            row["site"],
            row["kind"],
            row["target"],
            ", ".join(row["collections"]),
            ", ".join(row["allow_hosts"]),
        )
    Console().print(table)


@source_app.command("remove")
def source_remove(
    site: Annotated[str, typer.Argument(help="Site name.")],
    source_id: Annotated[int, typer.Argument(metavar="ID", help="The source's id, as listed.")],
    workspace: WorkspaceOption = None,
) -> None:
    """Remove one of SITE's saved sources (what it ingested stays)."""
    from sitewatch.watch.sources import remove_source

    with open_workspace(workspace) as ws:
        removed = remove_source(ws, site, source_id)
    typer.echo(f"removed {removed.kind} source #{removed.id} from site {site!r}: {removed.target}")


def register(app: typer.Typer) -> None:
    """Add the ``site`` group."""
    site_app.add_typer(zone_app, name="zone")
    site_app.add_typer(source_app, name="source")
    app.add_typer(site_app, name="site")
