"""``sitewatch models``: the installed models, what they read and the terms their output carries."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from sitewatch.cli.common import JsonOption, print_json

if TYPE_CHECKING:
    from sitewatch.models import ModelCard


def register(app: typer.Typer) -> None:
    """Add the ``models`` command to APP."""
    app.command("models")(list_models)


def list_models(
    folder: Annotated[
        Path | None,
        typer.Option(
            "--folder", help="List the models in this folder instead of the shipped ones.", show_default=False
        ),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """List the models: task, input bands and GSD, terms (of the most restrictive training data), metrics, size."""
    from sitewatch.models import find, shipped

    if folder is None:
        cards = shipped()
    elif not folder.is_dir():
        from sitewatch.errors import InputError

        raise InputError(folder, "not a folder")
    else:
        cards = [find(p.stem, folder) for p in sorted(folder.glob("*.onnx"))]
    rows = [_row(card) for card in cards]
    if as_json:
        print_json({"models": rows})
        return
    if not rows:
        typer.echo("no models installed")
    for row in rows:
        gsd = row["gsd_m"]
        typer.echo(f"{row['name']}  ({row['task']}, {row['size_mb']} MB)")
        if isinstance(gsd, list):
            typer.echo(f"  input: {row['bands']}, GSD {gsd[0]}-{gsd[1]} m")
        else:
            typer.echo(f"  input: {row['bands']}" + (f", GSD {gsd} m" if gsd else ""))
        typer.echo(f"  terms: {row['terms']}")
        lines = _metric_lines(row["metrics"])
        typer.echo("  metrics:" + ("" if lines else " none recorded"))
        for line in lines:
            typer.echo(f"    {line}")


def _metric_lines(metrics: dict[str, Any]) -> list[str]:
    """One line per protocol: pixel F1 per dataset (the card holds the full table and how it was made)."""
    lines = []
    for protocol, block in metrics.items():
        scores = block.get("scores", []) if isinstance(block, dict) else []
        figures = ", ".join(f"{s['dataset']} {s['f1']:.3f}" for s in scores if "f1" in s and "dataset" in s)
        lines.append(f"{protocol}: pixel F1 {figures}" if figures else f"{protocol}: {block}")
    return lines


def _row(card: ModelCard) -> dict[str, Any]:
    meta = card.metadata
    model_input = meta.get("input", {})
    return {
        "name": card.name,
        "task": meta.get("task", "unknown"),
        "bands": model_input.get("bands", "unknown"),
        "gsd_m": model_input.get("gsd_m"),
        "terms": meta.get("terms", "unknown"),
        "trained_on": meta.get("trained_on", []),
        "metrics": meta.get("metrics", {}),
        "size_mb": round(card.size_bytes / 1e6, 2),
        "path": str(card.path),
    }
