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
    "sitewatch.cli.activity",
    "sitewatch.cli.find",
    "sitewatch.cli.watch",
    "sitewatch.cli.review",
    "sitewatch.cli.monitor",
    "sitewatch.cli.serve",
    "sitewatch.cli.detect",
    "sitewatch.cli.report",
    "sitewatch.cli.eval",
    "sitewatch.cli.demo",
    "sitewatch.cli.models",
    "sitewatch.cli.train",
)


def register(app: typer.Typer) -> None:
    """Add every command module's commands to APP."""
    for name in MODULES:
        importlib.import_module(name).register(app)
