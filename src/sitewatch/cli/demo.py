"""``sitewatch demo``: a complete workspace from synthetic imagery, with no network."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from sitewatch.cli.common import JsonOption, print_json


def demo(
    directory: Annotated[Path, typer.Argument(help="Folder for the demo workspace.")] = Path("sitewatch-demo"),
    seed: Annotated[int, typer.Option("--seed", help="Generator seed (same seed, same imagery).")] = 7,
    as_json: JsonOption = False,
) -> None:
    """Build a demo workspace: synthetic site, ingest, analyze and an HTML report."""
    from sitewatch.demo.build import DEMO_NOTICE, build_demo

    print(f"note: {DEMO_NOTICE}", file=sys.stderr)
    result = build_demo(directory, seed=seed, on_step=lambda msg: print(f"demo: {msg}", file=sys.stderr))
    failed = [o for o in result.ingested if o.status == "failed"]
    summary = {
        "workspace": str(result.workspace.resolve()),
        "site": result.truth.name,
        "synthetic": True,
        "scenes": len(result.ingested),
        "failed": len(failed),
        "changes": len(result.analysis.changes),
        "report": str(result.report.resolve()),
    }
    if as_json:
        print_json(summary)
    else:
        typer.echo(f"demo workspace: {summary['workspace']}  (SYNTHETIC imagery)")
        typer.echo(f"site {summary['site']!r}: {summary['scenes']} scenes, {summary['changes']} changes")
        typer.echo(f"report: {summary['report']}")
        typer.echo(f"try: SITEWATCH_WORKSPACE={summary['workspace']} sitewatch site show {result.truth.name!r}")
        typer.echo(f"open the workbench: sitewatch serve --workspace {summary['workspace']}  (http://127.0.0.1:8750/)")
    if failed:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add ``demo``."""
    app.command()(demo)
