"""The edge of the report stage: gather a site's records from the workspace and render them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sitewatch.activity import site_activity
from sitewatch.catalog.models import Observation, Scene, Site
from sitewatch.report.html import render_report
from sitewatch.review.reviews import current_reviews
from sitewatch.workspace import Workspace, slug

SYNTHETIC_MARK = "synthetic"


@dataclass(frozen=True)
class SiteRecords:
    """A site, its observations in time order and their scenes, read once: what the report and the
    workbench (``sitewatch serve``) both show."""

    site: Site
    observations: list[Observation]
    scenes: dict[int, Scene]  # by scene id

    @property
    def synthetic(self) -> bool:
        """Whether any of the imagery is synthetic (the demo's), so that every view says so."""
        return any(SYNTHETIC_MARK in (scene.provider or "").lower() for scene in self.scenes.values())


def site_records(ws: Workspace, site_name: str) -> SiteRecords:
    """SITE_NAME's records (reads only).

    Raises:
        NotFound: If there is no such site.
    """
    site = ws.catalog.site(site_name)
    observations = ws.catalog.observations(site)
    return SiteRecords(site, observations, {obs.scene_id: ws.catalog.scene(obs.scene_id) for obs in observations})


def write_site_report(ws: Workspace, site_name: str, out: Path | None = None) -> Path:
    """Render the report of SITE_NAME to OUT (default ``reports/<site>.html`` in the workspace), with the
    analyst's verdicts on its changes, annotations and events."""
    records = site_records(ws, site_name)
    site, observations, scenes, synthetic = records.site, records.observations, records.scenes, records.synthetic
    target = out if out is not None else ws.reports / f"{slug(site.name)}.html"
    activity = site_activity(ws, site.name, align=False)  # a report never changes the workspace
    return render_report(
        site,
        observations,
        scenes,
        ws.catalog.changes(site),
        ws.store,
        target,
        synthetic=synthetic,
        activity=activity,
        reviews=current_reviews(ws, site.name),
        annotations=ws.catalog.annotations(site),
        events=ws.catalog.events(site),
    )
