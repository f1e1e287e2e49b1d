"""``sitewatch demo``: generate the synthetic site, then ingest, analyze and report it like real imagery.

No network and no ``../shared``: everything comes from the seeded generator in this package.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sitewatch.analyze import AnalysisResult, analyze_site
from sitewatch.catalog.models import Zone
from sitewatch.demo.generator import DemoSite, generate
from sitewatch.ingest.pipeline import IngestOutcome, ingest
from sitewatch.ingest.sources import SceneSource
from sitewatch.report.site import write_site_report
from sitewatch.sites import new_site
from sitewatch.workspace import Workspace

DEMO_NOTICE = (
    "The demo imagery is SYNTHETIC: a seeded generator drew this site, its buildings, vehicles, "
    "clouds and events. No real place or real satellite image is shown."
)


@dataclass(frozen=True)
class DemoResult:
    """What the demo built, with the generator's ground truth beside it."""

    workspace: Path
    truth: DemoSite
    ingested: list[IngestOutcome]
    analysis: AnalysisResult
    report: Path


def build_demo(root: Path, *, seed: int = 7, on_step: Callable[[str], None] | None = None) -> DemoResult:
    """Create a demo workspace in ROOT: synthetic scenes, one site with zones, changes and a report."""
    step = on_step or (lambda _message: None)
    with Workspace.create(root) as ws:
        step("generating synthetic scenes")
        truth = generate(root / "imagery", seed=seed)
        zones = [Zone(name=name, geometry=outline) for name, outline in truth.zones.items()]
        ws.catalog.add_site(new_site(truth.name, truth.site, tags=("demo", "synthetic"), zones=zones))
        step("ingesting")
        sources = [SceneSource(path=scene.path, origin=scene.path.name) for scene in truth.scenes]
        outcomes = ingest(ws, sources, site_names=[truth.name])
        step("analyzing")
        analysis = analyze_site(ws, truth.name)
        step("writing the report")
        report = write_site_report(ws, truth.name)
    return DemoResult(workspace=root, truth=truth, ingested=outcomes, analysis=analysis, report=report)
