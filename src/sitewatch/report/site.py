"""The edge of the report stage: gather a site's records from the workspace and render them."""

from __future__ import annotations

from pathlib import Path

from sitewatch.activity import site_activity
from sitewatch.report.html import render_report
from sitewatch.workspace import Workspace, slug

SYNTHETIC_MARK = "synthetic"


def write_site_report(ws: Workspace, site_name: str, out: Path | None = None) -> Path:
    """Render the report of SITE_NAME to OUT (default ``reports/<site>.html`` in the workspace)."""
    site = ws.catalog.site(site_name)
    observations = ws.catalog.observations(site)
    scenes = {obs.scene_id: ws.catalog.scene(obs.scene_id) for obs in observations}
    synthetic = any(SYNTHETIC_MARK in (scene.provider or "").lower() for scene in scenes.values())
    target = out if out is not None else ws.reports / f"{slug(site.name)}.html"
    activity = site_activity(ws, site.name, align=False)  # a report never changes the workspace
    return render_report(
        site, observations, scenes, ws.catalog.changes(site), ws.store, target, synthetic=synthetic, activity=activity
    )
