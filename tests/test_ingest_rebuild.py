"""A finer scene rebuilds a site's grid: its observations are rebuilt in place, keeping their ids, so
watch rules do not take old images for new ones (which made a rule fire on a change it was added
after)."""

from __future__ import annotations

from pathlib import Path

import pytest

from sitewatch.analyze import analyze_site
from sitewatch.demo.generator import DemoSite, generate
from sitewatch.ingest.pipeline import ingest
from sitewatch.ingest.sources import SceneSource
from sitewatch.watch.rules import ChangeWatch, add_rule
from sitewatch.workspace import Workspace
from tests.test_watch import NEW_BUILDINGS, logged, site_with_zones


@pytest.fixture(scope="module")
def coarse(tmp_path_factory: pytest.TempPathFactory) -> DemoSite:
    """The demo at 1 m: the site's first grid."""
    return generate(tmp_path_factory.mktemp("coarse"), seed=7, size_px=400, gsd=1.0)


@pytest.fixture(scope="module")
def fine(tmp_path_factory: pytest.TempPathFactory) -> DemoSite:
    """The same demo at 0.5 m: a scene of it refines the grid."""
    return generate(tmp_path_factory.mktemp("fine"), seed=7, size_px=800, gsd=0.5)


@pytest.fixture
def rebuilt(tmp_path: Path, coarse: DemoSite, fine: DemoSite) -> Path:
    """Coarse scenes 0, 2 and 3 (3 shows the expansion) and a rule over the new buildings added after
    them (any kind of change: at mixed resolutions the expansion is found as "modified"); the fine
    scene 4 then rebuilds the site's grid at 0.5 m."""
    root = site_with_zones(tmp_path / "ws", coarse, scenes=(0, 2, 3))
    with Workspace.open(root) as ws:
        add_rule(ws, coarse.name, ChangeWatch("any", 1000.0, NEW_BUILDINGS), "expansion")
    return root


def test_rebuilt_observations_keep_their_ids_and_stay_seen(rebuilt: Path, coarse: DemoSite, fine: DemoSite) -> None:
    with Workspace.open(rebuilt) as ws:
        site = ws.catalog.site(coarse.name)
        before = {obs.scene_id: obs for obs in ws.catalog.observations(site)}
        [outcome] = ingest(ws, [SceneSource(fine.scenes[4].path, fine.scenes[4].path.name)])
        assert outcome.status == "ingested", outcome.message
        site = ws.catalog.site(coarse.name)
        after = {obs.scene_id: obs for obs in ws.catalog.observations(site)}
        [rule] = ws.catalog.rules(site)
        assert site.base_gsd == pytest.approx(0.5)
        assert set(after) == {*before, outcome.scene_id}
        for scene_id, old in before.items():
            new = after[scene_id]
            assert new.id == old.id  # the same row, rebuilt on the finer grid
            assert (new.gsd, new.path, new.align_status) != (old.gsd, old.path, old.align_status)
            assert new.acquired == old.acquired and new.align_status == "pending"
            assert (ws.store / new.path).is_file() and not (ws.store / old.path).exists()
        assert set(rule.seen) == {obs.id for obs in before.values()}
        assert [obs.scene_id for obs in after.values() if obs.id not in rule.seen] == [outcome.scene_id]
        assert ws.catalog.integrity_ok()


@pytest.mark.slow
def test_a_rule_does_not_fire_on_images_it_saw_before_the_rebuild(
    rebuilt: Path, coarse: DemoSite, fine: DemoSite
) -> None:
    with Workspace.open(rebuilt) as ws:
        ingest(ws, [SceneSource(fine.scenes[4].path, fine.scenes[4].path.name)])
        result = analyze_site(ws, coarse.name, objects=None)
        site = ws.catalog.site(coarse.name)
        [rule] = ws.catalog.rules(site)
        assert result.alerts == () and ws.catalog.alerts() == [] and logged(rebuilt) == []
        assert set(rule.seen) >= {obs.id for obs in ws.catalog.observations(site) if obs.align_status != "failed"}
