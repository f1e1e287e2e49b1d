"""``sitewatch monitor``: poll each site's sources (watched folders, STAC APIs) for new scenes; ingest,
analyze, alert."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from sitewatch.cli.common import JsonOption, WorkspaceOption, open_workspace, print_json

if TYPE_CHECKING:
    from sitewatch.watch.monitor import PassReport
    from sitewatch.workspace import Workspace


def monitor(
    once: Annotated[bool, typer.Option("--once", help="One pass, then exit (for cron).")] = False,
    every: Annotated[str, typer.Option("--every", help="Time between passes: 30m, 6h, 1d.")] = "6h",
    folder: Annotated[
        list[Path] | None, typer.Option("--folder", help="Folder to watch for every site (repeatable).")
    ] = None,
    stac: Annotated[
        str | None, typer.Option("--stac", help="STAC API to search over each site, after its latest image.")
    ] = None,
    collection: Annotated[list[str] | None, typer.Option("--collection", help="STAC collection (repeatable).")] = None,
    allow_host: Annotated[
        list[str] | None, typer.Option("--allow-host", help="Extra host STAC assets may come from.")
    ] = None,
    site: Annotated[list[str] | None, typer.Option("--site", "-s", help="Only these sites (repeatable).")] = None,
    objects: Annotated[
        str, typer.Option("--objects", help="Object detector for the counts (auto, or none to skip).")
    ] = "auto",
    workspace: WorkspaceOption = None,
    as_json: JsonOption = False,
) -> None:
    """Look for new scenes, ingest them, analyze the sites they show and evaluate the watch rules;
    record alerts (catalog and alerts.jsonl) and send them by webhook or e-mail if configured.
    Each site's saved sources (`sitewatch site source add`) are polled for it; --folder and --stac
    are polled for every site.
    A STAC item that fails is searched for again on the next passes, then given up (reported once).
    Safe to kill: the next run takes up where it stopped, without losing or repeating an alert."""
    from sitewatch.watch.monitor import Sources, monitor_once, parse_every
    from sitewatch.watch.monitor import monitor as run

    every_s = parse_every(every)
    sources = Sources(tuple(folder or ()), stac, tuple(collection or ()), tuple(allow_host or ()))
    detector = None if objects == "none" else objects
    with open_workspace(workspace) as ws:
        if once:
            report = monitor_once(ws, sources, site_names=site or (), objects=detector)
            _print(ws, report, as_json)
            if report.failures:
                raise typer.Exit(1)
            return
        run(ws, sources, every_s, lambda r: _print(ws, r, as_json), site_names=site or (), objects=detector)


def _print(ws: Workspace, report: PassReport, as_json: bool) -> None:
    from sitewatch.watch.alerts import alert_record
    from sitewatch.watch.monitor import MAX_TRIES

    names = {s.id: s.name for s in ws.catalog.sites()}
    if as_json:
        print_json(
            {
                "ingested": [dataclasses.asdict(o) for o in report.ingested],
                "analyzed": list(report.analyzed),
                "failures": list(report.failures),
                "alerts": [alert_record(a, names.get(a.site_id, "")) for a in report.alerts],
                "deliveries": [dataclasses.asdict(d) for d in report.deliveries],
                "repaired": [a.id for a in report.repaired],
                "retried": [
                    {
                        "site": names.get(f.site_id, ""),
                        "source": f.source,
                        "acquired": f.acquired.isoformat(),
                        "tries": f.tries,
                        "message": f.message,
                    }
                    for f in report.retried
                ],
            }
        )
        return
    for alert in report.repaired:
        typer.echo(f"logged alert #{alert.id}, which an interrupted run had not")
    for f in report.retried:
        typer.echo(f"retrying  {f.source}  ({f.acquired.isoformat()}): failed {f.tries} of {MAX_TRIES} tries before")
    for o in report.ingested:
        if o.status == "ingested":
            typer.echo(f"ingested  {o.source}  ({o.acquired}) -> {', '.join(o.sites)}")
        elif o.status != "failed":
            typer.echo(f"skipped   {o.source}: {o.message}")
    for line in report.failures:
        typer.echo(f"error: {line}", err=True)
    for alert in report.alerts:
        site = names.get(alert.site_id, "")
        typer.echo(f"ALERT #{alert.id} [{alert.rule}] {site}, {alert.acquired:%Y-%m-%d}: {alert.summary}")
    for d in report.deliveries:
        status = "sent" if d.error is None else f"not sent ({d.error}; tried again next run)"
        typer.echo(f"alert #{d.alert_id} by {d.channel}: {status}")
    new = sum(o.status == "ingested" for o in report.ingested)
    typer.echo(f"{new} new scenes, {len(report.analyzed)} sites analyzed, {len(report.alerts)} alerts")


def register(app: typer.Typer) -> None:
    """Add ``monitor``."""
    app.command()(monitor)
