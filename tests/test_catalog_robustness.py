"""The catalog and store survive what users do to them: kill -9, two ingests at once, bad files.

DESIGN.md promises that a failed stage leaves the workspace as it was and that re-running an ingest
converges. These tests check it the hard way: real ``sitewatch`` processes killed with SIGKILL at
random points (seeded), two processes writing one workspace, and failing inputs compared against a
snapshot of every catalog row and store file.
"""

from __future__ import annotations

import hashlib
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
import rasterio
import rasterio.shutil
from affine import Affine
from rio_cogeo.cogeo import cog_validate

from sitewatch.catalog.db import Catalog, wal_is_safe
from sitewatch.grid import SiteGrid
from sitewatch.ingest.pipeline import ingest, sha256_of
from sitewatch.ingest.sources import SceneSource
from sitewatch.sites import from_bbox, new_site
from sitewatch.workspace import Workspace
from tests.conftest import run_sitewatch, write_tif

SITEWATCH = Path(sys.executable).parent / "sitewatch"

# Two sites near Joplin (UTM 15N): about 380 x 380 m, and an 80 x 80 m yard inside it. Every scene
# below covers both, so each scene gives two observations.
SITE_BBOXES = {
    "joplin": "-94.4946,37.0683,-94.4904,37.0717",
    "yard": "-94.4930,37.0696,-94.4921,37.0704",
}
CENTRE_E, CENTRE_N = 367320.0, 4103680.0  # the sites' centre in EPSG:32615
SCENE_PX = 400
# Coarse first, so the grid is refined twice and observations are rebuilt mid-run.
SCENE_GSDS = (2.0, 2.0, 1.0, 1.0, 0.5, 0.5)
TABLES = ("sites", "zones", "scenes", "observations", "changes")


def _scene(folder: Path, number: int, gsd: float, *, east: float = CENTRE_E) -> Path:
    """A 400 x 400 RGB scene centred on the sites, dated by its DATETIME tag."""
    data = np.random.default_rng(number).integers(0, 255, (3, SCENE_PX, SCENE_PX), dtype=np.uint8)
    half = SCENE_PX * gsd / 2
    return write_tif(
        folder / f"scene{number}_{gsd:g}m.tif",
        data,
        crs="EPSG:32615",
        transform=Affine(gsd, 0, east - half, 0, -gsd, CENTRE_N + half),
        tags={"DATETIME": f"2011-04-{number + 1:02d}T10:00:00Z"},
    )


@pytest.fixture
def scenes(tmp_path: Path) -> list[Path]:
    """Six scenes at 2, 1 and 0.5 m, in that order."""
    folder = tmp_path / "scenes"
    folder.mkdir()
    return [_scene(folder, number, gsd) for number, gsd in enumerate(SCENE_GSDS)]


def _workspace(root: Path) -> Path:
    """A fresh workspace holding both sites (through the library: a CLI start costs a second)."""
    with Workspace.create(root) as ws:
        ws.catalog.add_sites([new_site(name, from_bbox(bbox)) for name, bbox in SITE_BBOXES.items()])
    return root


def _start_ingest(ws_root: Path, files: Sequence[Path]) -> subprocess.Popen[str]:
    """``sitewatch ingest FILES`` as a user starts it, in the background."""
    env = {**os.environ, "SITEWATCH_WORKSPACE": str(ws_root)}
    return subprocess.Popen(
        [str(SITEWATCH), "--quiet", "ingest", *map(str, files)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def _store_files(ws: Workspace) -> set[str]:
    return {str(p.relative_to(ws.store)) for p in ws.store.rglob("*") if p.is_file()}


def _check_grid_rules(ws: Workspace) -> None:
    """Each site's base GSD is its finest scene, and each observation sits at the level nearest its scene."""
    for site in ws.catalog.sites():
        observations = ws.catalog.observations(site)
        if not observations:
            continue
        grid = SiteGrid.of(site)
        scenes = {obs.scene_id: ws.catalog.scene(obs.scene_id) for obs in observations}
        assert site.base_gsd == pytest.approx(min(s.gsd for s in scenes.values())), site.name
        for obs in observations:
            level = grid.level_for(scenes[obs.scene_id].gsd)
            assert obs.level == level and obs.gsd == pytest.approx(grid.gsd_at(level)), (site.name, obs)
            assert (obs.height, obs.width) == grid.shape_at(level)


def _check_consistent(ws_root: Path) -> None:
    """What must hold after any kill: a sound catalog whose rows are complete and whose files exist."""
    with Workspace.open(ws_root) as ws:
        assert ws.catalog.integrity_ok()
        scenes = ws.catalog.scenes()
        for scene in scenes:
            assert (ws.store / scene.path).is_file(), scene.path
        for site in ws.catalog.sites():
            observations = ws.catalog.observations(site)
            # a scene and all its observations are committed together (every scene covers both sites)
            assert Counter(obs.scene_id for obs in observations) == Counter(s.id for s in scenes), site.name
            for obs in observations:
                assert (ws.store / obs.path).is_file(), obs.path
        _check_grid_rules(ws)


def _converged_state(ws_root: Path, files: Sequence[Path]) -> dict[tuple[str, str], tuple[int, int, int, str]]:
    """Check a finished ingest in full; returns (site, scene hash) -> (level, width, height, pixel hash)."""
    _check_consistent(ws_root)
    assert not list(ws_root.rglob("*.part"))
    with Workspace.open(ws_root) as ws:
        stored = ws.catalog.scenes()
        assert sorted(s.sha256 for s in stored) == sorted(sha256_of(f) for f in files)  # each exactly once
        referenced = {str(s.path) for s in stored} | ws.catalog.all_observation_paths()
        assert _store_files(ws) == referenced  # nothing unreferenced, nothing missing
        state = {}
        for site in ws.catalog.sites():
            grid = SiteGrid.of(site)
            for obs in ws.catalog.observations(site):
                path = ws.store / obs.path
                valid, errors, _ = cog_validate(str(path), quiet=True)
                assert valid, (path, errors)
                with rasterio.open(path) as cog:
                    assert cog.crs.to_epsg() == site.epsg and cog.transform == grid.transform_at(obs.level)
                    assert cog.shape == (obs.height, obs.width)
                    pixels = hashlib.sha256(cog.read().tobytes() + cog.dataset_mask().tobytes()).hexdigest()
                sha = ws.catalog.scene(obs.scene_id).sha256
                state[site.name, sha] = (obs.level, obs.width, obs.height, pixels)
    return state


def test_sigkill_at_random_points_then_rerun_converges(tmp_path: Path, scenes: list[Path]) -> None:
    reference_ws = _workspace(tmp_path / "reference")
    started = time.perf_counter()
    reference_run = _start_ingest(reference_ws, scenes)
    _, stderr = reference_run.communicate(timeout=120)
    assert reference_run.returncode == 0, stderr
    full_run_s = time.perf_counter() - started
    reference = _converged_state(reference_ws, scenes)
    assert len(reference) == 2 * len(scenes)

    rng = random.Random(20110522)
    iterations = 5
    killed = 0
    for number in range(iterations):
        ws_root = _workspace(tmp_path / f"ws{number}")
        # stratified over the run (the first third is mostly Python start-up), so kills land in
        # copying, warping, rebuilding after a grid refinement and committing
        delay = full_run_s * (0.3 + 0.7 * (number + rng.random()) / iterations)
        run = _start_ingest(ws_root, scenes)
        time.sleep(delay)
        run.kill()
        run.communicate(timeout=60)
        killed += run.returncode == -signal.SIGKILL
        _check_consistent(ws_root)

        rerun = run_sitewatch("--quiet", "ingest", *scenes, workspace=ws_root)
        assert rerun.returncode == 0, rerun.stderr
        assert _converged_state(ws_root, scenes) == reference
    assert killed, "every run finished before its kill: the kills tested nothing"


def test_two_ingests_at_once_store_each_scene_once(tmp_path: Path, scenes: list[Path]) -> None:
    """Both exit 0, each scene is stored once with its file, and the catalog, store and grid rules agree."""
    ws_root = _workspace(tmp_path / "ws")
    # Overlapping lists, the second reversed so both reach the shared scenes at about the same time.
    first = _start_ingest(ws_root, scenes[:4])
    second = _start_ingest(ws_root, scenes[:1:-1] + scenes[:1])
    for run in (first, second):
        _, stderr = run.communicate(timeout=120)
        assert run.returncode == 0, stderr
    assert not list(ws_root.rglob("*.part"))
    with Workspace.open(ws_root) as ws:
        assert ws.catalog.integrity_ok()
        stored = ws.catalog.scenes()
        assert sorted(s.sha256 for s in stored) == sorted(sha256_of(f) for f in scenes)
        observation_paths = ws.catalog.all_observation_paths()
        for site in ws.catalog.sites():
            assert Counter(o.scene_id for o in ws.catalog.observations(site)) == Counter(s.id for s in stored)
        assert {p for p in _store_files(ws) if p.startswith("observations/")} == observation_paths
        assert {p for p in _store_files(ws) if p.startswith("scenes/")} == {str(s.path) for s in stored}
        _check_grid_rules(ws)


def _source(path: Path) -> SceneSource:
    return SceneSource(path=path, origin=str(path))


def test_losing_writer_keeps_the_winners_scene_file(
    tmp_path: Path, scenes: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two writers both see a scene as new; the second to commit must not delete the first one's file.

    Replaying the interleaving in one process: writer B checked the hash before writer A committed.
    """
    root = _workspace(tmp_path / "ws")
    with Workspace.open(root) as writer_a, Workspace.open(root) as writer_b:
        real_lookup = writer_b.catalog.scene_by_hash
        calls = []

        def stale_then_real(sha: str) -> object:
            calls.append(sha)
            return None if len(calls) == 1 else real_lookup(sha)  # B's first look predates A's commit

        monkeypatch.setattr(writer_b.catalog, "scene_by_hash", stale_then_real)
        assert ingest(writer_a, [_source(scenes[0])])[0].status == "ingested"
        assert ingest(writer_b, [_source(scenes[0])])[0].status == "duplicate"
        (scene,) = writer_a.catalog.scenes()
        assert (writer_a.store / scene.path).is_file()


@pytest.mark.parametrize("stale_by", ["named-site", "other-writer"])
def test_grid_follows_the_finest_scene(
    tmp_path: Path, scenes: list[Path], stale_by: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After a 0.5 m and a 2 m scene, in either order, the base is 0.5 m and the 2 m one is at level 2.

    ``named-site``: one ``ingest --site`` call, fine then coarse scene (it resolves the sites once).
    ``other-writer``: writer B read the sites before writer A refined the grid (replayed in one process).
    """
    coarse, fine = scenes[0], scenes[-1]
    root = _workspace(tmp_path / "ws")
    with Workspace.open(root) as writer_a, Workspace.open(root) as writer_b:
        if stale_by == "named-site":
            outcomes = ingest(writer_a, [_source(fine), _source(coarse)], site_names=["joplin"])
        else:
            sites_before = writer_b.catalog.sites()
            monkeypatch.setattr(writer_b.catalog, "sites", lambda: sites_before)
            outcomes = [*ingest(writer_a, [_source(fine)]), *ingest(writer_b, [_source(coarse)])]
        assert [o.status for o in outcomes] == ["ingested", "ingested"]
        _check_grid_rules(writer_a)


@pytest.mark.parametrize(
    ("version", "safe"),
    [
        ((3, 40, 1), False),
        ((3, 44, 5), False),
        ((3, 44, 6), True),
        ((3, 50, 7), True),
        ((3, 51, 2), False),
        ((3, 51, 3), True),
        ((3, 52, 0), True),
    ],
)
def test_wal_only_on_a_library_with_the_reset_fix(version: tuple[int, int, int], safe: bool) -> None:
    assert wal_is_safe(version) is safe


def test_catalog_journal_mode_follows_the_library(tmp_path: Path) -> None:
    expected = "wal" if wal_is_safe(sqlite3.sqlite_version_info) else "delete"
    Catalog(tmp_path / "catalog.sqlite", create=True).close()
    with Catalog(tmp_path / "catalog.sqlite") as catalog:  # reopened: the mode is set on every open
        assert catalog.journal_mode == expected
        assert catalog.execute("PRAGMA journal_mode")[0][0] == expected


def _snapshot(ws_root: Path) -> tuple[dict[str, list[tuple[object, ...]]], dict[str, tuple[int, int] | None]]:
    """Every catalog row, and every entry of the workspace: files with size and mtime, folders and the
    catalog file by name (a folder's mtime moves when a temporary file comes and goes inside it)."""
    with Catalog(ws_root / Catalog.FILENAME) as catalog:
        rows = {table: [tuple(r) for r in catalog.execute(f"SELECT * FROM {table} ORDER BY id")] for table in TABLES}
    entries = {
        str(p.relative_to(ws_root)): (
            (p.stat().st_size, p.stat().st_mtime_ns) if p.is_file() and p.name != Catalog.FILENAME else None
        )
        for p in ws_root.rglob("*")
    }
    return rows, entries


def _truncated_cog(folder: Path) -> Path:
    """A 0.5 m scene whose header is whole but whose tiles are cut off: it fails only once pixels are read,
    after the scene is copied and the site's observations are rebuilt on the refined grid."""
    whole = _scene(folder, 7, 0.5)
    cog = folder / "whole_cog.tif"
    rasterio.shutil.copy(whole, cog, driver="COG", compress="deflate", blocksize=128)
    data = cog.read_bytes()
    truncated = folder / "truncated.tif"
    truncated.write_bytes(data[: len(data) // 2])
    return truncated


@pytest.mark.parametrize(
    ("case", "problem"),
    [
        ("truncated", "corrupt or truncated raster data"),
        ("outside-named-site", "does not intersect site 'yard'"),
        ("not-a-raster", "not a readable raster"),
    ],
)
def test_failed_ingest_leaves_rows_and_files_as_they_were(
    tmp_path: Path, scenes: list[Path], case: str, problem: str
) -> None:
    ws_root = _workspace(tmp_path / "ws")
    with Workspace.open(ws_root) as ws:
        assert [o.status for o in ingest(ws, [_source(scenes[0]), _source(scenes[2])])] == ["ingested"] * 2
    folder = tmp_path / "bad"
    folder.mkdir()
    args: list[str | Path]
    if case == "truncated":
        bad = _truncated_cog(folder)
        args = [bad]
    elif case == "outside-named-site":
        bad = _scene(folder, 8, 1.0, east=CENTRE_E + 5000)  # 5 km east: covers neither site
        args = [bad, "--site", "yard"]
    else:
        bad = folder / "noise.tif"
        bad.write_bytes(b"II*\x00" + bytes(range(256)) * 64)
        args = [bad]
    before = _snapshot(ws_root)
    result = run_sitewatch("ingest", *args, workspace=ws_root)
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and f"{bad.name}: {problem}" in errors[0] and "Traceback" not in result.stderr
    assert _snapshot(ws_root) == before
