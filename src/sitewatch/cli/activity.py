"""``sitewatch activity``: a site's or zone's activity index and object counts per class per date,
each against its baseline, with anomalies and change-points."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any

import typer

from sitewatch.cli.common import JsonOption, NoAlignOption, WorkspaceOption, open_workspace, print_json, progress_bar

if TYPE_CHECKING:
    from sitewatch.activity import ActivityIndex, ActivitySeries, Point


def activity(
    site: Annotated[str, typer.Option("--site", "-s", help="Site to measure.")],
    zone: Annotated[
        str | None, typer.Option("--zone", "-z", help="One zone of the site (default: the whole site).")
    ] = None,
    window: Annotated[
        int, typer.Option("--window", min=1, help="Earlier dates in each date's baseline (median and MAD).")
    ] = 5,
    objects: Annotated[
        str | None,
        typer.Option("--objects", help="Object detector whose counts to show (default: the last one `analyze` ran)."),
    ] = None,
    no_align: NoAlignOption = False,
    workspace: WorkspaceOption = None,
    as_json: JsonOption = False,
) -> None:
    """Print the activity index per date (share of clear pixels departing from the site's background),
    its baseline (median and MAD of earlier dates), robust z-score, anomaly flag and change-points;
    then the objects counted per class on each date (stored by `sitewatch analyze`), judged the same
    way, with n/a and the reason on dates that could not be counted."""
    from sitewatch.activity import BaselineSettings, site_activity

    baseline = BaselineSettings(window=window, min_history=min(window, BaselineSettings.min_history))
    with open_workspace(workspace) as ws, progress_bar() as bar:
        task = bar.add_task(f"activity of {site}", total=None)
        result = site_activity(
            ws,
            site,
            zones=[zone] if zone is not None else [],
            baseline=baseline,
            align=not no_align,
            objects=objects,
            on_progress=lambda e: bar.update(task, total=e.total, completed=e.done),
        )
    series = result.area(zone)
    if as_json:
        print_json(_summary(series, result.index))
        return
    _print_table(series, result.index)
    _print_counts(series)


def _summary(series: ActivitySeries, index: ActivityIndex) -> dict[str, Any]:
    """The series as one JSON object."""
    analysis = series.index
    return {
        "site": series.site,
        "zone": series.zone,
        "gsd_m": index.gsd,
        "window": analysis.settings.window,
        "threshold": analysis.settings.threshold,
        "dates": [
            {
                "date": point.date.isoformat(),
                "observation_id": series.observation_ids.get(point.date),
                "index": round(point.value, 5),
                "median": None if point.median is None else round(point.median, 5),
                "mad": None if point.mad is None else round(point.mad, 5),
                "z": None if point.z is None else round(point.z, 2),
                "anomaly": point.anomaly,
            }
            for point in analysis.points
        ],
        "skipped": [{"date": s.acquired.isoformat(), "reason": s.reason} for s in series.skipped],
        "change_points": [
            {
                "last_before": c.last_before.isoformat(),
                "first_after": c.first_after.isoformat(),
                "direction": c.direction,
                "before": round(c.before, 5),
                "after": round(c.after, 5),
                "text": c.words(),
            }
            for c in analysis.change_points
        ],
        "note": analysis.note,
        "persistent": index.persistent_note,
        "counts": _counts_summary(series),
    }


def _counts_summary(series: ActivitySeries) -> dict[str, Any] | None:
    """The count columns as JSON: per column its dates (value, baseline, z, anomaly) and change-points,
    and the dates with no counts (n/a) and why; None when no detector has counted the site."""
    if series.counted_by is None:
        return None
    return {
        "source": series.counted_by,
        "columns": {
            name: {
                "dates": [
                    {
                        "date": point.date.isoformat(),
                        "observation_id": series.observation_ids.get(point.date),
                        "count": round(point.value),
                        "median": point.median,
                        "mad": point.mad,
                        "z": None if point.z is None else round(point.z, 2),
                        "anomaly": point.anomaly,
                    }
                    for point in series.columns[name].points
                ],
                "change_points": [c.words(name) for c in series.columns[name].change_points],
                "note": series.columns[name].note,
            }
            for name in series.count_columns
        },
        "not_counted": [{"date": s.acquired.isoformat(), "reason": s.reason} for s in series.counts_skipped],
    }


def _print_table(series: ActivitySeries, index: ActivityIndex) -> None:
    """The series as a table: one line per date, skipped dates with their reason, then change-points."""
    analysis = series.index
    typer.echo(f"{series.site}, {series.area}: share of clear pixels departing from the site's background")
    typer.echo(
        f"baseline: median and MAD of up to {analysis.settings.window} earlier dates; "
        f"anomaly when |robust z| >= {analysis.settings.threshold}"
    )
    typer.echo(f"{'date':10}  {'index':>7}  {'median':>7}  {'MAD':>7}  {'z':>6}  flag")

    rows: list[tuple[datetime, Point | str]] = [(p.date, p) for p in analysis.points]
    rows += [(s.acquired, s.reason) for s in series.skipped]
    for when, row in sorted(rows, key=lambda r: r[0]):
        if isinstance(row, str):
            typer.echo(f"{when:%Y-%m-%d}  skipped: {row}")
            continue
        median = "-" if row.median is None else f"{row.median:.4f}"
        mad = "-" if row.mad is None else f"{row.mad:.4f}"
        z = "-" if row.z is None else f"{row.z:+.1f}"
        flag = f"ANOMALY ({row.anomaly})" if row.anomaly else ("no baseline yet" if row.z is None else "")
        typer.echo(f"{when:%Y-%m-%d}  {row.value:7.4f}  {median:>7}  {mad:>7}  {z:>6}  {flag}".rstrip())
    if analysis.note:
        typer.echo(analysis.note)
    if analysis.change_points:
        for change in analysis.change_points:
            typer.echo(f"change-point: {change.words()}")
    else:
        typer.echo("change-points: none")
    typer.echo(f"note: {index.persistent_note}")


def _print_counts(series: ActivitySeries) -> None:
    """The count columns as a table: one line per date (n/a with the reason where there is no count),
    anomalies flagged per column, then each column's change-points."""
    if series.counted_by is None:
        typer.echo("objects: not counted (run `sitewatch analyze`)")
        return
    names = series.count_columns
    typer.echo(f"objects per date in the {series.area}, counted by {series.counted_by}")
    widths = [max(len(name), 5) for name in names]
    typer.echo("  ".join([f"{'date':10}", *(f"{n:>{w}}" for n, w in zip(names, widths, strict=True)), "flag"]))
    points: dict[datetime, dict[str, Point]] = {}
    for name in names:
        for point in series.columns[name].points:
            points.setdefault(point.date, {})[name] = point
    rows: list[tuple[datetime, dict[str, Point] | str]] = [*points.items()]
    rows += [(s.acquired, s.reason) for s in series.counts_skipped]
    for when, row in sorted(rows, key=lambda r: r[0]):
        if isinstance(row, str):
            cells = [f"{'n/a':>{w}}" for w in widths]
            typer.echo("  ".join([f"{when:%Y-%m-%d}", *cells, row]))
            continue
        cells = [f"{row[n].value:>{w}.0f}" for n, w in zip(names, widths, strict=True)]
        flags = [_flag(n, row[n]) for n in names if row[n].anomaly]
        typer.echo("  ".join([f"{when:%Y-%m-%d}", *cells, "; ".join(flags)]).rstrip())
    for name in names:
        for change in series.columns[name].change_points:
            typer.echo(f"change-point: {change.words(name)}")
    notes = {series.columns[n].note for n in names} - {None}
    for note in sorted(n for n in notes if n):
        typer.echo(note)


def _flag(name: str, point: Point) -> str:
    """An anomaly of one count column, in words."""
    z = "" if point.z is None else f", z {point.z:+.1f}"
    return f"{name}: ANOMALY ({point.anomaly}{z})"


def register(app: typer.Typer) -> None:
    """Add ``activity``."""
    app.command()(activity)
