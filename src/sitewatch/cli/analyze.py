"""``sitewatch analyze``: find, date and store change polygons for a site, persistent change first; then
count vehicles and containers on every date fine enough to show them."""

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
    objects: Annotated[
        str,
        typer.Option(
            "--objects",
            help="Object detector for the counts (auto: the learned one where installed, else classic; none: skip).",
        ),
    ] = "auto",
    no_align: NoAlignOption = False,
    workspace: WorkspaceOption = None,
    as_json: JsonOption = False,
) -> None:
    """Align a site's observations, compare consecutive ones, follow each change through all of them;
    store the changes (persistent, transient or unconfirmed, dated) and export them as GeoJSON. Then
    count objects per class on every usable date (dates already counted with the same model are kept)."""
    from sitewatch.analyze import analyze_site

    with open_workspace(workspace) as ws, progress_bar() as bar:
        task = bar.add_task(f"analyzing {site}", total=None)
        counting = bar.add_task(f"counting objects in {site}", total=None, visible=False)
        result = analyze_site(
            ws,
            site,
            detector=detector,
            align=not no_align,
            objects=None if objects == "none" else objects,
            on_progress=lambda e: bar.update(task, total=e.total, completed=e.done),
            on_objects=lambda e: bar.update(counting, total=e.total, completed=e.done, visible=True),
        )
    counted = result.objects
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
                "objects": None
                if counted is None
                else {
                    "detector": counted.detector,
                    "model": counted.model,
                    "dates": len(counted.runs),
                    "counted_now": counted.fresh,
                    "detections": counted.detections,
                    "not_resolvable": {run.observation_id: run.reason for run in counted.not_resolvable},
                    "seconds": round(counted.seconds, 2),
                },
                "alerts": [
                    {"rule": a.rule, "kind": a.kind, "acquired": a.acquired.isoformat(), "summary": a.summary}
                    for a in result.alerts
                ],
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
    if counted is not None:
        coarse = f", {len(counted.not_resolvable)} too coarse to resolve them" if counted.not_resolvable else ""
        typer.echo(
            f"objects: {counted.detections} on {len(counted.runs)} dates{coarse} ({counted.detector}; "
            f"{counted.fresh} dates counted now in {counted.seconds:.1f} s); see `sitewatch activity`"
        )
    for alert in result.alerts:
        typer.echo(f"alert [{alert.rule}] {alert.acquired:%Y-%m-%d}: {alert.summary}")


def register(app: typer.Typer) -> None:
    """Add ``analyze``."""
    app.command()(analyze)
