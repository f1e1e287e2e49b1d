"""The alignment stage on the demo site, whose true misregistration per date is known."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sitewatch.align.stage import align_site, pin_reference
from sitewatch.analyze import analyze_site
from sitewatch.catalog.models import Zone
from sitewatch.demo.generator import DemoSite, generate
from sitewatch.ingest.pipeline import ingest
from sitewatch.ingest.sources import SceneSource
from sitewatch.sites import new_site
from sitewatch.workspace import Workspace


@pytest.fixture
def demo_ws(tmp_path: Path) -> tuple[Workspace, DemoSite]:
    truth = generate(tmp_path / "imagery", seed=11, size_px=760)
    ws = Workspace.create(tmp_path / "ws")
    zones = [Zone(name, outline) for name, outline in truth.zones.items()]
    ws.catalog.add_site(new_site(truth.name, truth.site, zones=zones))
    ingest(ws, [SceneSource(s.path, s.path.name) for s in truth.scenes])
    return ws, truth


def _store_files(ws: Workspace) -> set[str]:
    return {str(p.relative_to(ws.store)) for p in (ws.store / "observations").rglob("*") if p.is_file()}


def test_align_recovers_the_known_shifts(demo_ws: tuple[Workspace, DemoSite]) -> None:
    ws, truth = demo_ws
    result = align_site(ws, truth.name)
    assert result.reference is not None and result.reference.align_status == "reference"
    by_date = {o.acquired: o for o in result.observations}
    reference_shift = np.array(next(s.shift_px for s in truth.scenes if s.acquired == result.reference.acquired))
    errors = []
    for scene in truth.scenes:
        obs = by_date[scene.acquired]
        if scene.cloudy:  # left out as cloudy, or aligned on what the clouds leave clear
            assert obs.align_status in ("failed", "aligned") and obs.align_reason in (None, "cloud")
            continue
        if obs.id == result.reference.id:
            continue
        assert obs.align_status == "aligned", obs.align_reason
        applied = np.array((obs.alignment or {})["applied_shift_px"])
        radiometry = (obs.alignment or {})["radiometry"]  # recorded against the reference
        assert len(radiometry["bands"]) == 3 and min(b["r2"] for b in radiometry["bands"]) > 0.5, radiometry
        errors.append(np.hypot(*(applied - (np.array(scene.shift_px) - reference_shift))))
    assert max(errors) < 0.8 and float(np.mean(errors)) < 0.45, errors
    assert _store_files(ws) == {str(o.path) for o in ws.catalog.observations(ws.catalog.site(truth.name))}


def test_align_is_idempotent_and_analyze_leaves_aligned_observations_alone(
    demo_ws: tuple[Workspace, DemoSite],
) -> None:
    ws, truth = demo_ws
    align_site(ws, truth.name)
    files = _store_files(ws)
    again = align_site(ws, truth.name)
    moved = [
        np.hypot(*(o.alignment or {}).get("shift_px") or (0, 0))
        for o in again.observations
        if o.align_status == "aligned"
    ]
    assert max(moved) < 0.3  # what is left to measure after aligning is residual noise
    analyze_site(ws, truth.name)  # aligns only what is new: nothing here
    assert _store_files(ws) <= files | _store_files(ws)
    assert len(_store_files(ws)) == len(files)


def test_pinned_reference(demo_ws: tuple[Workspace, DemoSite]) -> None:
    ws, truth = demo_ws
    last = truth.scenes[-1].acquired
    pinned = pin_reference(ws, truth.name, last.date().isoformat())
    assert pinned is not None
    result = align_site(ws, truth.name)
    assert result.reference is not None and result.reference.acquired == last
    with pytest.raises(Exception, match="has 0 observations on '1999-01-01'"):
        pin_reference(ws, truth.name, "1999-01-01")
