"""Tiled, streamed detection equals the whole-pair detection, keeps memory bounded and refuses bad input."""

from __future__ import annotations

import tracemalloc
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest
import rasterio
from affine import Affine

from sitewatch.change import registry, vectorize
from sitewatch.change.tiled import TileDone, detect_rasters
from sitewatch.errors import InputError, NoOverlapError, RasterRefused, SitewatchError
from tests.conftest import UTM_GRID, write_tif

ROWS, COLS = 1280, 1536


def texture(rows: int, cols: int, seed: int) -> np.ndarray:
    """float32 ``(3, rows, cols)`` in 0..7: smooth blobs at three scales, like fields and roofs."""
    rng = np.random.default_rng(seed)
    image = np.zeros((3, rows, cols), np.float32)
    for cell, weight in ((4, 1.0), (16, 2.0), (64, 4.0)):
        coarse = rng.random((3, rows // cell + 2, cols // cell + 2), dtype=np.float32)
        size = (coarse.shape[2] * cell, coarse.shape[1] * cell)
        image += weight * np.stack([cv2.resize(b, size, interpolation=cv2.INTER_CUBIC)[:rows, :cols] for b in coarse])
    return image


def changed_pair(rows: int, cols: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """uint8 RGB BEFORE and AFTER: AFTER is BEFORE with noise and 25 pasted blocks of one colour."""
    rng = np.random.default_rng(seed)
    before = texture(rows, cols, seed)
    after = before + rng.normal(0, 0.1, before.shape).astype(np.float32)
    for _ in range(25):
        r, c = rng.integers(0, rows - 80), rng.integers(0, cols - 80)
        h, w = rng.integers(10, 60, size=2)
        after[:, r : r + h, c : c + w] = rng.uniform(0, 7, (3, 1, 1))
    return tuple(np.clip(x / 7 * 255, 0, 255).astype(np.uint8) for x in (before, after))  # type: ignore[return-value]


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("pair")
    before, after = changed_pair(ROWS, COLS)
    return write_tif(folder / "before.tif", before, **UTM_GRID), write_tif(folder / "after.tif", after, **UTM_GRID)


def read(path: Path) -> np.ndarray:
    with rasterio.open(path) as src:
        return np.asarray(src.read(1))


@pytest.mark.parametrize("name", ["cva", "irmad", "structural"])
def test_tiled_equals_whole_pair(name: str, pair: tuple[Path, Path], tmp_path: Path) -> None:
    before, after = (read_rgb(p) for p in pair)
    cls = registry.get(name)
    whole = cls().detect(before, after, None, 0.5)
    events: list[TileDone] = []
    outputs = (tmp_path / "p.tif", tmp_path / "m.tif")
    result = detect_rasters(*pair, cls(), *outputs, tile=512, overlap=32, on_progress=events.append)
    probability, mask = read(tmp_path / "p.tif"), read(tmp_path / "m.tif")
    assert probability.dtype == np.float32 and mask.dtype == np.uint8 and set(np.unique(mask)) <= {0, 255}
    np.testing.assert_allclose(probability, whole.probability, atol=1e-4)
    assert ((mask > 0) == whole.mask).mean() >= 0.99
    assert result.changed_pixels == int((mask > 0).sum()) and result.changed_fraction > 0.005
    assert events[-1] == TileDone(result.tiles, result.tiles) == TileDone(12, 12)  # 4 x 3 tiles of 512, overlap 32
    # Regions joined across blocks equal the whole mask's polygons (in the raster's CRS).
    polygons = vectorize(whole, before, after, UTM_GRID["transform"], 0.5)
    assert sorted(r.area_px for r in result.regions) == sorted(p.area_px for p in polygons)
    assert sum(r.geometry.area for r in result.regions) == pytest.approx(sum(p.geometry.area for p in polygons))
    assert all(0 < r.confidence <= 1 and r.area_m2 == r.area_px * 0.25 for r in result.regions)
    assert set(tmp_path.iterdir()) == set(outputs)  # no temporary file left behind


def read_rgb(path: Path) -> np.ndarray:
    with rasterio.open(path) as src:
        return np.asarray(src.read(), np.float32)


def test_outputs_carry_the_grid_and_plain_images_give_pixel_polygons(pair: tuple[Path, Path], tmp_path: Path) -> None:
    detect_rasters(*pair, registry.get("cva")(), tmp_path / "p.tif", tile=512)
    with rasterio.open(tmp_path / "p.tif") as src, rasterio.open(pair[0]) as ref:
        assert src.crs == ref.crs and src.transform == ref.transform and (src.width, src.height) == (COLS, ROWS)
        assert src.profile["tiled"] and src.compression.name.lower() == "deflate"
    plain = [write_tif(tmp_path / f"{n}.tif", read_rgb(p).astype(np.uint8)) for n, p in zip("ab", pair, strict=True)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = detect_rasters(*plain, registry.get("cva")(), tmp_path / "plain.tif", gsd=0.5, tile=512)
    assert result.georef is None and result.gsd == 0.5
    minx, miny, maxx, maxy = result.regions[0].geometry.bounds
    assert 0 <= minx < maxx <= COLS and 0 <= miny < maxy <= ROWS  # pixel coordinates


def test_after_on_another_grid_is_read_onto_before(pair: tuple[Path, Path], tmp_path: Path) -> None:
    before, after = (read_rgb(p) for p in pair)
    shifted = np.zeros_like(after, dtype=np.uint8)
    shifted[:, :, : COLS - 200] = after[:, :, 200:]  # AFTER's file starts 200 px east of BEFORE's
    transform = UTM_GRID["transform"] @ Affine.translation(200, 0)
    path = write_tif(tmp_path / "after.tif", shifted, crs=UTM_GRID["crs"], transform=transform, nodata=0)
    detect_rasters(pair[0], path, registry.get("cva")(), tmp_path / "p.tif", tmp_path / "m.tif", tile=512)
    valid = np.ones((ROWS, COLS), bool)
    valid[:, :200] = False
    whole = registry.get("cva")().detect(before, after, valid, 0.5)
    assert not read(tmp_path / "p.tif")[:, :200].any()  # AFTER does not cover it
    assert ((read(tmp_path / "m.tif") > 0) == whole.mask).mean() >= 0.99


@pytest.mark.slow
def test_memory_is_bounded_by_the_tile_not_the_scene(tmp_path: Path) -> None:
    def peak_bytes(rows: int, cols: int) -> int:
        before, after = changed_pair(rows, cols, seed=1)
        dates = zip("ba", (before, after), strict=True)
        paths = [write_tif(tmp_path / f"{n}{rows}.tif", x, **UTM_GRID, tiled=True) for n, x in dates]
        del before, after
        tracemalloc.start()
        try:
            result = detect_rasters(*paths, registry.get("cva")(), tmp_path / "p.tif", tmp_path / "m.tif", tile=512)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert result.changed_pixels > 0
        return peak

    half, full = peak_bytes(2048, 4096), peak_bytes(4096, 4096)
    scene = 2 * 3 * 4096 * 4096 * 4  # both dates of the larger scene as float32, as the whole-pair path holds them
    assert full < 1.15 * half, f"peak grew from {half / 2**20:.0f} to {full / 2**20:.0f} MiB with the scene"
    assert full < 0.8 * scene, f"peak {full / 2**20:.0f} MiB for a {scene / 2**20:.0f} MiB pair"


def test_refused_inputs_raise_one_line_errors(pair: tuple[Path, Path], tmp_path: Path) -> None:
    cva = registry.get("cva")()
    out = tmp_path / "p.tif"
    small = write_tif(tmp_path / "small.tif", np.zeros((3, 64, 64), np.uint8))
    gray = write_tif(tmp_path / "gray.tif", np.zeros((1, ROWS, COLS), np.uint8), **UTM_GRID)
    far = write_tif(
        tmp_path / "far.tif",
        np.ones((3, 64, 64), np.uint8),
        crs=UTM_GRID["crs"],
        transform=Affine(0.5, 0, 0, 0, -0.5, 0),
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cases = [
            ((small, pair[1]), InputError, "differs from small.tif"),
            ((pair[0], gray), InputError, r"has 1 band\(s\), before.tif has 3"),
            ((pair[0], far), NoOverlapError, "does not overlap"),
            ((pair[0], tmp_path / "missing.tif"), RasterRefused, "no such file"),
        ]
        for (before, after), error, message in cases:
            with pytest.raises(error, match=message) as caught:
                detect_rasters(before, after, cva, out)
            assert isinstance(caught.value, SitewatchError) and "\n" not in str(caught.value)
        with pytest.raises(InputError, match="overlap <= tile / 2"):
            detect_rasters(*pair, cva, out, tile=256, overlap=200)
    assert not list(tmp_path.glob("*.part")) and not out.exists()


def test_the_change_command_streams_large_pairs(
    pair: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Over the size threshold, ``compare_large`` writes the contract's PNG from the streamed mask."""
    import importlib

    from PIL import Image

    compare_module = importlib.import_module("sitewatch.change.compare")  # the package's compare is the function

    monkeypatch.setattr(compare_module, "LARGE_PAIR_PIXELS", ROWS * COLS - 1)
    before, after = pair
    assert compare_module.is_large(before)
    result = compare_module.compare_large(before, after, tmp_path / "mask.png", detector="cva")
    mask = np.asarray(Image.open(tmp_path / "mask.png"))
    assert mask.shape == (ROWS, COLS)
    assert set(np.unique(mask)) <= {0, 255}
    assert (mask == 255).mean() == pytest.approx(result.changed_fraction)
    whole = compare_module.compare(before, after, detector="cva", align=False)
    assert (whole.mask == (mask == 255)).mean() > 0.99
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mask.png"]  # scratch files gone
