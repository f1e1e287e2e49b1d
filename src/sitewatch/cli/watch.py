"""``sitewatch watch ...``: watch rules (add, list, remove) and where alerts are sent (notify)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from sitewatch.cli.common import JsonOption, WorkspaceOption, open_workspace, print_json

if TYPE_CHECKING:
    from sitewatch.watch.rules import RuleEntry

watch_app = typer.Typer(help="Watch rules: what raises an alert, and where alerts go.", no_args_is_help=True)


def _row(entry: RuleEntry) -> dict[str, Any]:
    rule = entry.rule
    return {
        "name": rule.name,
        "site": entry.site,
        "kind": rule.kind,
        "rule": entry.description,
        "query": rule.query,
        "created": rule.created.isoformat(),
        "last_fired_observation_id": rule.last_fired_observation_id,
    }


@watch_app.command("add")
def add(
    site: Annotated[str, typer.Option("--site", "-s", help="Site the rule watches.")],
    kind: Annotated[str, typer.Option("--kind", help="change, activity or find.")] = "change",
    name: Annotated[str | None, typer.Option("--name", help="Rule name (default: made of its terms).")] = None,
    zone: Annotated[str | None, typer.Option("--zone", "-z", help="Only this zone (default: the whole site).")] = None,
    change: Annotated[
        str | None, typer.Option("--change", help="change: appeared, removed, modified or any (default).")
    ] = None,
    min_area: Annotated[
        float | None, typer.Option("--min-area", help="change: least area in m² (inside the zone, if one).")
    ] = None,
    series: Annotated[
        str | None, typer.Option("--series", help="activity: index (default) or vehicles (the count).")
    ] = None,
    direction: Annotated[
        str | None, typer.Option("--direction", help="activity: anomalies that are high, low or any (default).")
    ] = None,
    color: Annotated[str | None, typer.Option("--color", "--colour", help="find: colour, e.g. red.")] = None,
    length: Annotated[str | None, typer.Option("--length", help="find: length range, e.g. 12-20m.")] = None,
    width: Annotated[str | None, typer.Option("--width", help="find: width range, e.g. 2-4m.")] = None,
    workspace: WorkspaceOption = None,
    as_json: JsonOption = False,
) -> None:
    """Add a watch rule: it raises an alert when an observation arriving from now on matches."""
    from sitewatch.watch.rules import RuleEntry, add_rule, build_watch

    watch = build_watch(
        kind,
        zone=zone,
        change=change,
        min_area_m2=min_area,
        series=series,
        direction=direction,
        colour=color,
        length=length,
        width=width,
    )
    with open_workspace(workspace) as ws:
        entry = RuleEntry(site, add_rule(ws, site, watch, name))
    if as_json:
        print_json(_row(entry))
        return
    typer.echo(f"added watch rule {entry.rule.name!r} to {site}: {entry.description}")


@watch_app.command("list")
def list_(
    site: Annotated[str | None, typer.Option("--site", "-s", help="Only this site's rules.")] = None,
    workspace: WorkspaceOption = None,
    as_json: JsonOption = False,
) -> None:
    """List the watch rules, by site and name."""
    from sitewatch.watch.rules import list_rules

    with open_workspace(workspace) as ws:
        entries = list_rules(ws, site)
    if as_json:
        print_json({"rules": [_row(entry) for entry in entries]})
        return
    for entry in entries:
        typer.echo(f"{entry.rule.name}  [{entry.site}, {entry.rule.kind}]  {entry.description}")
    if not entries:
        typer.echo("no watch rules (add one with `sitewatch watch add`)")


@watch_app.command("remove")
def remove(
    name: Annotated[str, typer.Argument(help="Rule name.")],
    site: Annotated[
        str | None, typer.Option("--site", "-s", help="The rule's site (needed only if two have that name).")
    ] = None,
    workspace: WorkspaceOption = None,
) -> None:
    """Remove a watch rule; the alerts it raised stay."""
    from sitewatch.watch.rules import remove_rule

    with open_workspace(workspace) as ws:
        entry = remove_rule(ws, name, site)
    typer.echo(f"removed watch rule {name!r} of {entry.site} (its alerts stay)")


@watch_app.command("notify")
def notify(
    webhook: Annotated[
        str | None,
        typer.Option(
            "--webhook",
            help="POST each alert as JSON to this URL (hosts with private addresses need SITEWATCH_ALLOWED_HOSTS).",
        ),
    ] = None,
    smtp: Annotated[str | None, typer.Option("--smtp", help="E-mail each alert through this HOST:PORT relay.")] = None,
    mail_to: Annotated[list[str] | None, typer.Option("--mail-to", help="E-mail recipient (repeatable).")] = None,
    mail_from: Annotated[str, typer.Option("--mail-from", help="E-mail sender.")] = "sitewatch@localhost",
    off: Annotated[list[str] | None, typer.Option("--off", help="Stop sending by webhook or email.")] = None,
    workspace: WorkspaceOption = None,
    as_json: JsonOption = False,
) -> None:
    """Send alerts raised from now on by webhook and e-mail too (they always go to alerts.jsonl);
    without options, show where they go. `sitewatch monitor` delivers them and retries failures."""
    from sitewatch.errors import InputError
    from sitewatch.watch.notify import configure, email_target, webhook_target

    if mail_to and smtp is None:
        raise InputError("--mail-to", "needs --smtp HOST:PORT")
    with open_workspace(workspace) as ws:
        targets = [] if smtp is None else [email_target(smtp, mail_to or [], mail_from)]
        if webhook is not None:
            targets.append(webhook_target(webhook, ws.settings.allowed_hosts))
        configured = configure(ws, targets, off or [])
    rows = [{"channel": t.channel, **t.config, "since": t.configured.isoformat()} for t in configured]
    if as_json:
        print_json({"targets": rows})
        return
    for row in rows:
        where = row["url"] if row["channel"] == "webhook" else f"{', '.join(row['to'])} via {row['host']}:{row['port']}"
        typer.echo(f"{row['channel']}: {where} (alerts since {row['since'][:19]})")
    if not rows:
        typer.echo("alerts go to alerts.jsonl only (add --webhook URL or --smtp HOST:PORT --mail-to ADDR)")


def register(app: typer.Typer) -> None:
    """Add the ``watch`` group."""
    app.add_typer(watch_app, name="watch")
