"""``sitewatch align``: put every observation of a site on its reference observation."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from sitewatch.cli.common import JsonOption, WorkspaceOption, open_workspace, print_json, progress_bar


def align(
    site: Annotated[str, typer.Option("--site", "-s", help="Site to align.")],
    reference: Annotated[
        str | None,
        typer.Option("--reference", help="Pin the reference: the date (YYYY-MM-DD) of an observation; 'auto' unpins."),
    ] = None,
    workspace: WorkspaceOption = None,
    as_json: JsonOption = False,
) -> None:
    """Co-register a site's observations to one reference (chosen automatically: clearest and finest)."""
    from sitewatch.align.stage import align_site, pin_reference

    with open_workspace(workspace) as ws:
        if reference is not None:
            pin_reference(ws, site, reference)
        with progress_bar() as bar:
            task = bar.add_task(f"aligning {site}", total=None)
            result = align_site(ws, site, on_progress=lambda e: bar.update(task, total=e.total, completed=e.done))
    rows: list[dict[str, Any]] = [
        {
            "observation": o.id,
            "date": o.acquired.isoformat(),
            "status": o.align_status,
            "reason": o.align_reason,
            "model": (o.alignment or {}).get("model"),
            "shift_px": (o.alignment or {}).get("applied_shift_px"),
            "tie_points": (o.alignment or {}).get("tie_points"),
            "residual_rmse_px": (o.alignment or {}).get("residual_rmse_px"),
        }
        for o in result.observations
    ]
    if as_json:
        print_json(
            {"site": result.site, "reference": result.reference.id if result.reference else None, "observations": rows}
        )
        return
    for row in rows:
        shift = row["shift_px"]
        moved = f"moved ({shift[0]:+.2f}, {shift[1]:+.2f}) px," if shift else ""
        rmse = row["residual_rmse_px"]
        detail = row["reason"] or f"{row['model']} {moved} {row['tie_points'] or 0} tie points" + (
            f", residual {rmse:.2f} px" if rmse is not None else ""
        )
        typer.echo(f"{row['date'][:10]}  {row['status']:9s}  {detail}")


def register(app: typer.Typer) -> None:
    """Add ``align``."""
    app.command()(align)
