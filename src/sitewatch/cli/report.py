"""``sitewatch report``: a self-contained HTML page of a site's dates, changes and evidence."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from sitewatch.cli.common import JsonOption, WorkspaceOption, open_workspace, print_json


def report(
    site: Annotated[str, typer.Option("--site", "-s", help="Site to report on.")],
    output: Annotated[
        Path | None, typer.Option("-o", "--output", help="HTML file (default: reports/SITE.html).")
    ] = None,
    workspace: WorkspaceOption = None,
    as_json: JsonOption = False,
) -> None:
    """Write the site's HTML report: dates, before/after chips with change outlines, provenance."""
    from sitewatch.report import write_site_report

    with open_workspace(workspace) as ws:
        path = write_site_report(ws, site, output)
    if as_json:
        print_json({"site": site, "report": str(path)})
    else:
        typer.echo(f"report: {path}")


def register(app: typer.Typer) -> None:
    """Add ``report``."""
    app.command()(report)
