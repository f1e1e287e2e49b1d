"""Options and helpers shared by every command (one place, as rasterio's ``rio/options.py``)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any

import typer

WorkspaceOption = Annotated[
    Path | None,
    typer.Option(
        "--workspace",
        "-w",
        help="Workspace folder (default: $SITEWATCH_WORKSPACE, else the current folder).",
        show_default=False,
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print the result as one JSON object.")]
NoAlignOption = Annotated[bool, typer.Option("--no-align", help="Do not co-register the images first.")]


def workspace_path(option: Path | None) -> Path:
    """The workspace folder: the option, else $SITEWATCH_WORKSPACE, else the current folder."""
    if option is not None:
        return option
    env = os.environ.get("SITEWATCH_WORKSPACE")
    return Path(env) if env else Path.cwd()


def print_json(value: Any) -> None:
    """One JSON object on stdout."""
    typer.echo(json.dumps(value, default=str))


def progress_bar() -> Any:
    """A rich progress bar on stderr, so stdout stays clean for --json."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
    )


def open_workspace(option: Path | None) -> Any:
    """Open the workspace named by the option, environment or current folder."""
    from sitewatch.settings import Settings
    from sitewatch.workspace import Workspace

    root = workspace_path(option)
    return Workspace.open(root, Settings.from_env(root))
