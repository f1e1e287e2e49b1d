"""Map tiles of observations: look like the report's chips, transparent where there is no data, and
never read a file outside the workspace store whatever the catalog says."""

from __future__ import annotations

import io
import shutil
import sqlite3
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from PIL import Image
from pyproj import Transformer
from rasterio.coords import BoundingBox
from rio_tiler.constants import WEB_MERCATOR_TMS
from shapely.geometry import Point, box

from sitewatch.catalog.models import Observation
from sitewatch.ingest.pipeline import ingest
from sitewatch.ingest.sources import SceneSource
from sitewatch.io.raster import open_raster
from sitewatch.report.chips import Stretch, View, display_bands, read_view, stretch_of, to_rgb
from sitewatch.sites import new_site
from sitewatch.web import tiles
from sitewatch.web.app import create_app
from sitewatch.workspace import Workspace
from tests.conftest import UTM_GRID, write_tif

SITE = "north yard/A"  # a slash and a space: names are quoted in URLs
OTHER = "other"
SIZE = 512  # scene pixels a side, 0.5 m: 256 m
SQUARE = (196, 316)  # rows and columns of a red square (5.5 % of the scene, so it sets red's 98th percentile)
Z = 19  # 0.24 m tile pixels: the scene spans several whole tiles
TO_LONLAT = Transformer.from_crs(32615, 4326, always_xy=True)
TO_MERCATOR = Transformer.from_crs(32615, 3857, always_xy=True)


def scene_data() -> np.ndarray:
    """Bands stored blue, green, red (so position alone would draw the red square blue)."""
    rng = np.random.default_rng(3)
    data = rng.integers(60, 140, (3, SIZE, SIZE)).astype(np.uint8)
    lo, hi = SQUARE
    data[:, lo:hi, lo:hi] = np.array([20, 20, 240], np.uint8)[:, None, None]
    return data


def utm(col: float, row: float) -> tuple[float, float]:
    x, y = UTM_GRID["transform"] @ (col, row)
    return float(x), float(y)


def build(root: Path) -> Path:
    """A workspace with SITE (larger than its one scene, so its observation has no-data around the
    scene) and OTHER (no imagery)."""
    scene = write_tif(root.parent / f"{root.name}-scene.tif", scene_data(), photometric="MINISBLACK", **UTM_GRID)
    (west, south), (east, north) = (TO_LONLAT.transform(*utm(c, r)) for c, r in ((0, SIZE), (SIZE, 0)))
    margin = 0.0005
    with Workspace.create(root) as ws:
        ws.catalog.add_site(new_site(SITE, box(west - margin, south - margin, east + margin, north + margin)))
        ws.catalog.add_site(new_site(OTHER, box(west + 1, south, east + 1, north)))
        source = SceneSource(
            path=scene,
            origin=str(scene),
            acquired=datetime(2024, 5, 3, tzinfo=UTC),
            band_names=("blue", "green", "red"),
        )
        (outcome,) = ingest(ws, [source])
        assert outcome.status == "ingested", outcome.message
    return root


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build(tmp_path_factory.mktemp("tiles") / "ws")


@pytest.fixture
def root(built: Path, tmp_path: Path) -> Path:
    """A private copy of the workspace, free to tamper with (and a fresh index: another root)."""
    return Path(shutil.copytree(built, tmp_path / "ws", symlinks=True))


def client_for(root: Path) -> TestClient:
    app = FastAPI()
    app.state.workspace_root = root
    app.include_router(tiles.router)
    return TestClient(app)


def observation(root: Path, site: str = SITE) -> Observation:
    with Workspace.open(root) as ws:
        (obs,) = ws.catalog.observations(ws.catalog.site(site))
    return obs


def tile_and_pixel(col: float, row: float, z: int = Z) -> tuple[int, int, int, int, int]:
    """(z, x, y, pixel column, pixel row) of the 256 px tile holding scene pixel (COL, ROW)."""
    lon, lat = TO_LONLAT.transform(*utm(col, row))
    tile = WEB_MERCATOR_TMS.tile(lon, lat, z)
    left, _, right, top = WEB_MERCATOR_TMS.xy_bounds(tile)
    mx, my = TO_MERCATOR.transform(*utm(col, row))
    size = (right - left) / 256
    return z, tile.x, tile.y, int((mx - left) / size), int((top - my) / size)


def get_tile(client: TestClient, obs: Observation, z: int, x: int, y: int, site: str = SITE, **params: Any) -> Any:
    return client.get(f"/tiles/{site}/{obs.id}/{z}/{x}/{y}.png", params=params)


def png(response: Any) -> Image.Image:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png"
    image = Image.open(io.BytesIO(response.content))
    assert image.format == "PNG" and image.size == (256, 256)
    return image


def test_a_tile_looks_like_the_report_chip_red_where_the_red_band_says(root: Path) -> None:
    obs = observation(root)
    path = root / "store" / obs.path
    centre = sum(SQUARE) / 2
    with open_raster(path) as src:
        bands = display_bands(src, ("blue", "green", "red"))
        assert bands == (3, 2, 1)  # by name: the file itself does not say which band is red
        x, y = utm(centre, centre)
        chip = to_rgb(
            read_view(src, View(BoundingBox(x - 0.5, y - 0.5, x + 0.5, y + 0.5), 1, 1), bands), stretch_of(src, bands)
        )
    expected = tuple(int(v) for v in chip[0, 0])
    assert expected[0] > 200 and max(expected[1:]) < 50  # the square is red, as the chip shows it

    z, tx, ty, px, py = tile_and_pixel(centre, centre)
    image = png(get_tile(client_for(root), obs, z, tx, ty))
    assert image.mode == "RGB"  # no no-data in it, so no alpha channel
    pixels = np.asarray(image)
    assert np.abs(pixels[py, px].astype(int) - expected).max() <= 2
    assert pixels.std() > 10  # the noisy ground around the square is drawn too


def test_no_data_is_transparent(root: Path) -> None:
    obs = observation(root)
    # a tile holding the scene's top-left corner, with the site's margin (no data) above and left of it
    z, x, y, px, py = next(t for z in (16, 17, 18) if 4 <= (t := tile_and_pixel(0, 0, z))[3] < 252 and 4 <= t[4] < 252)
    rgba = np.asarray(png(get_tile(client_for(root), obs, z, x, y)).convert("RGBA"))
    alpha = rgba[..., 3]
    assert alpha[py + 4, px + 4] == 255 and alpha[py - 4, px - 4] == 0
    assert (alpha == 0).any() and (alpha == 255).any()


def test_tiles_outside_the_observation_are_empty(root: Path) -> None:
    obs = observation(root)
    client = client_for(root)
    assert get_tile(client, obs, 5, 0, 0).status_code == 204
    z, x, y, _, _ = tile_and_pixel(SIZE / 2, SIZE / 2)
    response = get_tile(client, obs, z, x + 40, y)
    assert response.status_code == 204 and response.content == b""


def test_unknown_or_foreign_observations_are_404(root: Path) -> None:
    obs = observation(root)
    client = client_for(root)
    z, x, y, _, _ = tile_and_pixel(SIZE / 2, SIZE / 2)
    for site, observation_id in (("nowhere", obs.id), (SITE, 999), (OTHER, obs.id)):
        response = client.get(f"/tiles/{site}/{observation_id}/{z}/{x}/{y}.png")
        assert response.status_code == 404 and "no observation" in response.json()["detail"]


@pytest.mark.parametrize(
    ("z", "x", "y", "params"),
    [(25, 0, 0, {}), (3, 8, 0, {}), (3, 0, 8, {}), (3, -1, 0, {}), ("a", 0, 0, {}), (3, 0, 0, {"tilesize": 300})],
)
def test_bad_tile_coordinates_are_422(root: Path, z: object, x: int, y: int, params: dict[str, int]) -> None:
    obs = observation(root)
    response = client_for(root).get(f"/tiles/{SITE}/{obs.id}/{z}/{x}/{y}.png", params=params)
    assert response.status_code == 422


def test_512_px_tiles(root: Path) -> None:
    obs = observation(root)
    z, x, y, _, _ = tile_and_pixel(SIZE / 2, SIZE / 2, z=18)
    response = get_tile(client_for(root), obs, z, x, y, tilesize=512)
    assert Image.open(io.BytesIO(response.content)).size == (512, 512)


def test_versioned_urls_are_immutable_and_follow_realignment(root: Path) -> None:
    obs = observation(root)
    with Workspace.open(root) as ws:
        site = ws.catalog.site(SITE)
    client = client_for(root)
    template = tiles.tile_url(site, obs)
    assert template.startswith("/tiles/north%20yard%2FA/")
    z, x, y, _, _ = tile_and_pixel(SIZE / 2, SIZE / 2)
    url = template.format(z=z, x=x, y=y)
    assert client.get(url).headers["cache-control"] == tiles.CACHE_VERSIONED
    assert get_tile(client, obs, z, x, y).headers["cache-control"] == tiles.CACHE_UNVERSIONED

    # realignment writes the observation under a new name; the catalog change is picked up
    moved = replace(obs, path=obs.path.with_name("realigned.tif"))
    shutil.copy(root / "store" / obs.path, root / "store" / moved.path)
    with Workspace.open(root) as ws, ws.catalog.transaction() as conn:
        ws.catalog.update_alignment(conn, moved)
    (root / "store" / obs.path).unlink()
    assert client.get(url).headers["cache-control"] == tiles.CACHE_UNVERSIONED  # the old version's URL
    fresh = tiles.tile_url(site, moved).format(z=z, x=x, y=y)
    assert fresh != url
    response = client.get(fresh)
    assert response.status_code == 200 and response.headers["cache-control"] == tiles.CACHE_VERSIONED


def test_the_web_app_serves_tiles_with_their_cache_headers(root: Path) -> None:
    obs = observation(root)
    with Workspace.open(root) as ws:
        url = tiles.tile_url(ws.catalog.site(SITE), obs)
    z, x, y, _, _ = tile_and_pixel(SIZE / 2, SIZE / 2)
    response = TestClient(create_app(root, allowed_hosts=["testserver"])).get(url.format(z=z, x=x, y=y))
    assert png(response).size == (256, 256) and response.headers["cache-control"] == tiles.CACHE_VERSIONED


def test_the_catalog_is_read_once_while_it_does_not_change(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    opened: list[Path] = []
    real_open = Workspace.open

    def counting_open(path: Path) -> Workspace:
        opened.append(path)
        return real_open(path)

    obs = observation(root)
    monkeypatch.setattr(tiles.Workspace, "open", counting_open)
    client = client_for(root)
    z, x, y, _, _ = tile_and_pixel(SIZE / 2, SIZE / 2)
    for dx in range(3):
        assert get_tile(client, obs, z, x + dx, y).status_code in (200, 204)
    assert opened == [root]


@pytest.fixture
def outside(root: Path) -> Path:
    """A readable observation file that is not in the store."""
    return Path(shutil.copy(root / "store" / observation(root).path, root.parent / "outside.tif"))


@pytest.fixture
def opened_files(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Path]]:
    """Every file the tile route opens."""
    opened: list[Path] = []
    real_open = tiles.open_raster

    def spy(path: Path, *args: Any, **kwargs: Any) -> Any:
        opened.append(Path(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(tiles, "open_raster", spy)
    yield opened


@pytest.mark.parametrize("how", ["absolute", "dot-dot", "symlink"])
def test_a_catalog_row_pointing_out_of_the_store_is_404_and_never_read(
    root: Path, outside: Path, opened_files: list[Path], how: str
) -> None:
    obs = observation(root)
    client = client_for(root)
    z, x, y, _, _ = tile_and_pixel(SIZE / 2, SIZE / 2)
    assert get_tile(client, obs, z, x, y).status_code == 200  # served until the row is tampered with
    if how == "absolute":
        tampered = str(outside)
    elif how == "dot-dot":
        tampered = "../../outside.tif"
        assert (root / "store" / tampered).resolve() == outside.resolve()
    else:
        tampered = "observations/link.tif"
        (root / "store" / tampered).symlink_to(outside)
    with sqlite3.connect(root / "catalog.sqlite") as conn:
        conn.execute("UPDATE observations SET path = ? WHERE id = ?", (tampered, obs.id))
    conn.close()
    response = get_tile(client, obs, z, x, y)
    assert response.status_code == 404
    assert outside.resolve() not in [p.resolve() for p in opened_files]


def test_a_symlink_within_the_store_is_served(root: Path) -> None:
    obs = observation(root)
    link = obs.path.with_name("link.tif")
    (root / "store" / link).symlink_to((root / "store" / obs.path).name)
    with sqlite3.connect(root / "catalog.sqlite") as conn:
        conn.execute("UPDATE observations SET path = ? WHERE id = ?", (str(link), obs.id))
    conn.close()
    z, x, y, _, _ = tile_and_pixel(SIZE / 2, SIZE / 2)
    assert get_tile(client_for(root), obs, z, x, y).status_code == 200


@pytest.mark.parametrize("damage", ["deleted", "garbage"])
def test_a_missing_or_unreadable_file_is_404(root: Path, damage: str) -> None:
    obs = observation(root)
    path = root / "store" / obs.path
    if damage == "deleted":
        path.unlink()
    else:
        path.write_bytes(b"II*\x00" + b"\x00" * 4096)
    z, x, y, _, _ = tile_and_pixel(SIZE / 2, SIZE / 2)
    response = get_tile(client_for(root), obs, z, x, y)
    assert response.status_code == 404 and "not available" in response.json()["detail"]


def test_observation_bounds_hold_the_scene(root: Path) -> None:
    obs = observation(root)
    with Workspace.open(root) as ws:
        site = ws.catalog.site(SITE)
    west, south, east, north = tiles.observation_bounds_wgs84(site, obs)
    assert west < east and south < north
    outline = box(west, south, east, north)
    for col, row in ((0, 0), (SIZE, SIZE), (SIZE / 2, SIZE / 2)):
        assert outline.contains(Point(TO_LONLAT.transform(*utm(col, row))))
    assert outline.buffer(1e-4).contains(site.geometry)  # the grid covers the site, snapped to whole metres


def test_coarser_zooms_read_the_overview_nearest_their_pixel_size() -> None:
    style = tiles.Style(Stretch((1,), (0.0,), (1.0,)), (0.0, 0.0, 1.0, 1.0), pixel_size=0.5, overviews=(2, 4, 8))
    lon, lat = TO_LONLAT.transform(*utm(0, 0))  # 37 N: a z18 tile pixel is 0.48 m on the ground

    def level(z: int, tilesize: int = 256) -> int | None:
        return style.overview_for(WEB_MERCATOR_TMS.xy_bounds(WEB_MERCATOR_TMS.tile(lon, lat, z)), tilesize)

    assert {z: level(z) for z in range(13, 21)} == {20: None, 19: None, 18: None, 17: 0, 16: 1, 15: 2, 14: 2, 13: 2}
    assert level(17, 512) is None
