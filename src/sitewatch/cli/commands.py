"""The list of command modules; each has ``register(app)``. A new command group is one line here."""

from __future__ import annotations

import importlib

import typer

MODULES: tuple[str, ...] = (
    "sitewatch.cli.workspace",
    "sitewatch.cli.site",
    "sitewatch.cli.ingest",
    "sitewatch.cli.align",
    "sitewatch.cli.change",
    "sitewatch.cli.register",
    "sitewatch.cli.analyze",
    "sitewatch.cli.report",
    "sitewatch.cli.eval",
    "sitewatch.cli.demo",
)


def register(app: typer.Typer) -> None:
    """Add every command module that exists to APP."""
    for name in MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            continue
        module.register(app)
