"""``sitewatch init``: create a workspace."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from sitewatch.cli.common import JsonOption, print_json


def init(
    directory: Annotated[Path, typer.Argument(help="Folder for the new workspace.")] = Path("."),
    as_json: JsonOption = False,
) -> None:
    """Create a workspace: an SQLite catalog and a store of Cloud-Optimised GeoTIFFs."""
    from sitewatch.workspace import Workspace

    with Workspace.create(directory) as ws:
        info = {
            "workspace": str(ws.root.resolve()),
            "catalog": str(ws.catalog.path),
            "journal": ws.catalog.journal_mode,
        }
    if as_json:
        print_json(info)
    else:
        typer.echo(f"created workspace {info['workspace']} (catalog journal: {info['journal']})")


def register(app: typer.Typer) -> None:
    """Add ``init``."""
    app.command()(init)
