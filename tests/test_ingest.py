"""Ingest puts scenes from any CRS and format onto one site grid, atomically, once."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from PIL import Image
from rio_cogeo.cogeo import cog_validate

from sitewatch.ingest.pipeline import ingest
from sitewatch.ingest.sources import SceneSource
from sitewatch.sites import from_bbox, new_site
from sitewatch.workspace import Workspace
from tests.conftest import run_sitewatch, write_tif

# A site of about 300 x 300 m around 367000 E, 4104000 N (UTM 15N, near Joplin).
SITE_BBOX = "-94.4984,37.0729,-94.4951,37.0755"
SCENE_GRID = {"crs": "EPSG:32615", "transform": Affine(0.5, 0, 366700.0, 0, -0.5, 4104400.0)}


def _scene(tmp_path: Path, name: str, seed: int, gsd: float = 0.5, size: int = 1000) -> Path:
    rng = np.random.default_rng(seed)
    data = rng.integers(0, 255, (3, int(size * 0.5 / gsd), int(size * 0.5 / gsd)), dtype=np.uint8)
    grid = {"crs": "EPSG:32615", "transform": Affine(gsd, 0, 366700.0, 0, -gsd, 4104400.0)}
    return write_tif(tmp_path / name, data, **grid, tags={"DATETIME": f"2024-0{seed}-01T10:00:00Z", "PROVIDER": "test"})


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    workspace = Workspace.create(tmp_path / "ws")
    workspace.catalog.add_site(new_site("site", from_bbox(SITE_BBOX)))
    return workspace


def _source(path: Path, **kw: object) -> SceneSource:
    return SceneSource(path=path, origin=str(path), **kw)  # type: ignore[arg-type]


def test_scene_becomes_valid_cog_observation(ws: Workspace, tmp_path: Path) -> None:
    (outcome,) = ingest(ws, [_source(_scene(tmp_path, "a.tif", 1))])
    assert outcome.status == "ingested" and outcome.sites == ("site",)
    site = ws.catalog.site("site")
    (obs,) = ws.catalog.observations(site)
    assert site.base_gsd == pytest.approx(0.5) and obs.level == 0
    path = ws.store / obs.path
    assert cog_validate(path)[0]
    with rasterio.open(path) as cog:
        assert cog.crs.to_epsg() == site.epsg and cog.count == 3
        assert (cog.transform.c, cog.transform.f) == (site.origin_x, site.origin_y)
        assert cog.dataset_mask().min() == 255  # the scene covers the whole site
    scene = ws.catalog.scene(obs.scene_id)
    assert scene.provider == "test" and scene.acquired == datetime(2024, 1, 1, 10, tzinfo=UTC)
    assert len(scene.sha256) == 64 and (ws.store / scene.path).is_file()


def test_duplicate_is_skipped_and_no_site_reported(ws: Workspace, tmp_path: Path) -> None:
    path = _scene(tmp_path, "a.tif", 1)
    ingest(ws, [_source(path)])
    far = write_tif(
        tmp_path / "far.tif",
        np.ones((1, 10, 10), np.uint8),
        crs="EPSG:32633",
        transform=Affine(10, 0, 340000, 0, -10, 5850000),
        tags={"DATETIME": "2024-01-01"},
    )
    dup, none = ingest(ws, [_source(path), _source(far)])
    assert dup.status == "duplicate" and "same content as scene" in dup.message
    assert none.status == "no-site" and "intersects no site" in none.message
    assert len(ws.catalog.scenes()) == 1


def test_coarse_then_fine_refines_the_grid_and_rebuilds(ws: Workspace, tmp_path: Path) -> None:
    ingest(ws, [_source(_scene(tmp_path, "coarse.tif", 1, gsd=2.0))])
    site = ws.catalog.site("site")
    assert site.base_gsd == pytest.approx(2.0)
    ingest(ws, [_source(_scene(tmp_path, "fine.tif", 2, gsd=0.5))])
    site = ws.catalog.site("site")
    assert site.base_gsd == pytest.approx(0.5)
    coarse, fine = ws.catalog.observations(site)
    assert (coarse.level, fine.level) == (2, 0)  # 2 m stored at 0.5·2², never blown up
    assert coarse.width * 4 >= fine.width > (coarse.width - 1) * 4
    stored = {p.relative_to(ws.store) for p in (ws.store / "observations").rglob("*.tif")}
    assert stored == {coarse.path, fine.path}  # the replaced observation file is gone


def test_missing_time_is_an_error_unless_given(ws: Workspace, tmp_path: Path) -> None:
    path = write_tif(tmp_path / "notime.tif", np.ones((1, 600, 600), np.uint8), **SCENE_GRID)
    (failed,) = ingest(ws, [_source(path)])
    assert failed.status == "failed" and "notime.tif: no acquisition time" in failed.message
    (ok,) = ingest(ws, [_source(path, acquired=datetime(2020, 1, 1, tzinfo=UTC))])
    assert ok.status == "ingested"


def test_plain_png_with_world_file_and_crs(tmp_path: Path) -> None:
    ws_dir = tmp_path / "ws"
    assert run_sitewatch("init", ws_dir).returncode == 0
    assert run_sitewatch("site", "add", "s", f"--bbox={SITE_BBOX}", workspace=ws_dir).returncode == 0
    image = tmp_path / "aerial.png"
    Image.fromarray(np.random.default_rng(3).integers(0, 255, (800, 800, 3), dtype=np.uint8)).save(image)
    (tmp_path / "aerial.pgw").write_text("0.5\n0\n0\n-0.5\n366700.25\n4104399.75\n")
    no_crs = run_sitewatch("ingest", image, "--datetime", "2024-05-01", workspace=ws_dir)
    assert no_crs.returncode == 1 and "aerial.png" in no_crs.stderr
    done = run_sitewatch("ingest", image, "--datetime", "2024-05-01", "--crs", "EPSG:32615", "--json", workspace=ws_dir)
    assert done.returncode == 0, done.stderr
    (scene,) = json.loads(done.stdout)["scenes"]
    assert scene["status"] == "ingested" and scene["sites"] == ["s"]


def test_plain_jpeg_with_bounds(tmp_path: Path) -> None:
    ws_dir = tmp_path / "ws"
    run_sitewatch("init", ws_dir)
    run_sitewatch("site", "add", "s", f"--bbox={SITE_BBOX}", workspace=ws_dir)
    image = tmp_path / "photo.jpg"
    Image.fromarray(np.random.default_rng(4).integers(0, 255, (400, 400, 3), dtype=np.uint8)).save(image)
    bounds = "366700,4104000,366900,4104400"
    missing = run_sitewatch("ingest", image, "--datetime", "2024-05-01", workspace=ws_dir)
    assert missing.returncode == 1 and "photo.jpg: no georeference" in missing.stderr
    done = run_sitewatch(
        "ingest",
        image,
        "--datetime",
        "2024-05-01",
        "--bounds",
        bounds,
        "--crs",
        "EPSG:32615",
        workspace=ws_dir,
    )
    assert done.returncode == 0, done.stderr
    assert "1 ingested" in done.stdout


def test_bad_inputs_leave_workspace_unchanged(tmp_path: Path) -> None:
    ws_dir = tmp_path / "ws"
    run_sitewatch("init", ws_dir)
    run_sitewatch("site", "add", "s", f"--bbox={SITE_BBOX}", workspace=ws_dir)
    before = sorted(p.name for p in ws_dir.rglob("*"))
    junk = tmp_path / "junk.tif"
    junk.write_bytes(b"II*\x00garbage")
    cases = [
        (["ingest", tmp_path / "nope.tif"], "nope.tif: no such file"),
        (["ingest", junk, "--datetime", "2024-01-01"], "junk.tif: "),
        (["ingest", _scene(tmp_path, "x.tif", 1), "--crs", "EPSG:999999"], "--crs: unknown CRS"),
    ]
    for args, message in cases:
        result = run_sitewatch(*args, workspace=ws_dir)
        lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
        assert result.returncode == 1, args
        assert len(lines) == 1 and message in lines[0] and "Traceback" not in result.stderr
    assert sorted(p.name for p in ws_dir.rglob("*")) == before


@pytest.mark.datasets
def test_joplin_two_crss_on_one_grid(datasets: Path, tmp_path: Path) -> None:
    joplin = datasets / "joplin-tornado"
    with Workspace.create(tmp_path / "ws") as ws:
        ws.catalog.add_site(new_site("joplin", from_bbox("-94.497,37.066,-94.488,37.074")))
        outcomes = ingest(
            ws,
            [
                _source(joplin / "joplin_pre_nad83-utm15n_0.6m.tif", acquired=datetime(2011, 4, 1, tzinfo=UTC)),
                _source(joplin / "joplin_post_wgs84.tif", acquired=datetime(2011, 5, 24, tzinfo=UTC)),
            ],
        )
        assert [o.status for o in outcomes] == ["ingested", "ingested"]
        site = ws.catalog.site("joplin")
        pre, post = ws.catalog.observations(site)
        assert site.epsg == 32615 and pre.level == post.level
        with rasterio.open(ws.store / pre.path) as a, rasterio.open(ws.store / post.path) as b:
            assert a.transform == b.transform and a.shape == b.shape and a.crs == b.crs
            # the two dates line up: the post-event image correlates with the pre-event one
            ga = a.read(2, masked=True).astype(float)
            gb = b.read(2, masked=True).astype(float)
            both = ~(ga.mask | gb.mask)
            assert np.corrcoef(ga.data[both], gb.data[both])[0, 1] > 0.2


def test_cli_ingests_a_stac_item_with_its_provenance(tmp_path: Path) -> None:
    """A STAC Item file through the command line: the scene keeps the item's time, provider and licence."""
    ws_dir = tmp_path / "ws"
    run_sitewatch("init", ws_dir)
    run_sitewatch("site", "add", "s", f"--bbox={SITE_BBOX}", workspace=ws_dir)
    folder = tmp_path / "catalog"
    folder.mkdir()
    _scene(folder, "scene.tif", 1)
    item = {
        "type": "Feature",
        "stac_version": "1.0.0",
        "id": "scene-1",
        "geometry": {
            "type": "Polygon",
            "coordinates": [[[-94.5, 37.07], [-94.49, 37.07], [-94.49, 37.08], [-94.5, 37.07]]],
        },
        "bbox": [-94.5, 37.07, -94.49, 37.08],
        "properties": {
            "datetime": "2023-07-07T10:20:00Z",
            "license": "CC-BY-4.0",
            "providers": [{"name": "Example Space", "roles": ["producer", "licensor"]}],
            "constellation": "examplesat",
        },
        "links": [],
        "assets": {"image": {"href": "scene.tif", "type": "image/tiff; application=geotiff", "roles": ["data"]}},
    }
    (folder / "item.json").write_text(json.dumps(item))
    done = run_sitewatch("ingest", folder / "item.json", "--json", workspace=ws_dir)
    assert done.returncode == 0, done.stderr
    (outcome,) = json.loads(done.stdout)["scenes"]
    assert outcome["status"] == "ingested" and outcome["acquired"].startswith("2023-07-07T10:20")
    with Workspace.open(ws_dir) as ws:
        (scene,) = ws.catalog.scenes()
    assert (scene.provider, scene.licence, scene.sensor) == ("Example Space", "CC-BY-4.0", "examplesat")
    escaping = dict(item, assets={"image": {"href": "../../etc/passwd", "type": "image/tiff", "roles": ["data"]}})
    (folder / "evil.json").write_text(json.dumps(escaping))
    refused = run_sitewatch("ingest", folder / "evil.json", workspace=ws_dir)
    assert refused.returncode == 1 and "outside the catalog folder" in refused.stderr


@pytest.mark.parametrize(("cloudy_rows", "flagged"), [(420, True), (0, False)])
def test_sensor_cloud_mask_from_stac_flags_the_observation(tmp_path: Path, cloudy_rows: int, flagged: bool) -> None:
    """A Sentinel-2 SCL asset delivered with the item marks cloud the spectral tests cannot see."""
    ws_dir = tmp_path / "ws"
    run_sitewatch("init", ws_dir)
    run_sitewatch("site", "add", "s", f"--bbox={SITE_BBOX}", workspace=ws_dir)
    folder = tmp_path / "catalog"
    folder.mkdir()
    _scene(folder, "scene.tif", 1)  # textured, nothing cloud-like in it
    scl = np.full((1, 500, 500), 4, np.uint8)  # 4: vegetation
    scl[:, : cloudy_rows // 2] = 9  # 9: cloud, high probability (1 m pixels over the 0.5 m scene)
    write_tif(folder / "scl.tif", scl, crs="EPSG:32615", transform=Affine(1.0, 0, 366700.0, 0, -1.0, 4104400.0))
    item = {
        "type": "Feature",
        "stac_version": "1.0.0",
        "id": "s2-like",
        "geometry": {
            "type": "Polygon",
            "coordinates": [[[-94.5, 37.07], [-94.49, 37.07], [-94.49, 37.08], [-94.5, 37.07]]],
        },
        "bbox": [-94.5, 37.07, -94.49, 37.08],
        "properties": {"datetime": "2023-07-07T10:20:00Z"},
        "links": [],
        "assets": {
            "visual": {"href": "scene.tif", "type": "image/tiff; application=geotiff", "roles": ["visual"]},
            "scl": {"href": "scl.tif", "type": "image/tiff; application=geotiff", "roles": ["cloud"]},
        },
    }
    (folder / "item.json").write_text(json.dumps(item))
    done = run_sitewatch("ingest", folder / "item.json", workspace=ws_dir)
    assert done.returncode == 0, done.stderr
    with Workspace.open(ws_dir) as ws:
        (scene,) = ws.catalog.scenes()
        (obs,) = ws.catalog.observations(ws.catalog.site("s"))
        assert [kind for kind, _ in scene.masks] == ["scl"] and (ws.store / scene.masks[0][1]).is_file()
    assert ("cloudy" in obs.flags) is flagged
    assert (obs.masked_fraction > 0.3) is flagged and (flagged or obs.masked_fraction < 0.01)
