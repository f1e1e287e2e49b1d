"""The safe raster opener refuses what could hurt, and reads what it should."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sitewatch.errors import GeoreferenceError, RasterRefused
from sitewatch.io.raster import georef_of, gsd_of, open_raster, read_array, read_world_file
from sitewatch.settings import Limits
from tests.conftest import UTM_GRID, write_tif

SECRET_VRT = """<VRTDataset rasterXSize="8" rasterYSize="8">
  <VRTRasterBand dataType="Byte" band="1">
    <SimpleSource><SourceFilename relativeToVRT="0">{target}</SourceFilename></SimpleSource>
  </VRTRasterBand>
</VRTDataset>"""


def test_vrt_renamed_to_tif_is_refused(tmp_path: Path) -> None:
    secret = write_tif(tmp_path / "secret.tif", np.full((1, 8, 8), 42, np.uint8))
    evil = tmp_path / "innocent.tif"
    evil.write_text(SECRET_VRT.format(target=secret))
    with pytest.raises(RasterRefused, match=r"innocent\.tif: not a readable raster"):
        read_array(evil)


def test_declared_size_over_limit_is_refused_before_reading(tmp_path: Path) -> None:
    path = write_tif(tmp_path / "big.tif", np.zeros((3, 64, 64), np.uint8), **UTM_GRID)
    with pytest.raises(RasterRefused, match=r"big\.tif: declares 64x64x3 pixels, over the limit"):
        read_array(path, Limits(max_pixels=1000))


def test_huge_declared_tiff_is_refused(tmp_path: Path) -> None:
    """A tiny sparse TIFF that declares 16 GB of pixels is refused by the limit, not read."""
    import rasterio

    path = tmp_path / "bomb.tif"
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=60000,
        height=60000,
        count=3,
        dtype="uint8",
        tiled=True,
        blockxsize=1024,
        blockysize=1024,
        compress="deflate",
        SPARSE_OK=True,
    ):
        pass
    assert path.stat().st_size < 1_000_000
    with pytest.raises(RasterRefused, match="over the limit"):
        read_array(path)


def test_truncated_file_names_the_file(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    full = write_tif(tmp_path / "full.tif", rng.integers(0, 255, (3, 256, 256), dtype=np.uint8), **UTM_GRID)
    cut = tmp_path / "cut.tif"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    with pytest.raises(RasterRefused, match=r"cut\.tif: "):
        read_array(cut)


@pytest.mark.parametrize("content", [b"", b"not an image at all", b"\x89PNG\r\n\x1a\n garbage"])
def test_garbage_is_refused(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "junk.png"
    path.write_bytes(content)
    with pytest.raises(RasterRefused, match=r"junk\.png: "):
        read_array(path)


def test_missing_file_and_vsi_paths(tmp_path: Path) -> None:
    with pytest.raises(RasterRefused, match="no such file"):
        read_array(tmp_path / "missing.tif")
    with pytest.raises(RasterRefused, match="only plain local files"):
        read_array(Path("/vsicurl/http://example.com/x.tif"))


def test_world_file_is_found_and_parsed(tmp_path: Path) -> None:
    image = tmp_path / "plain.png"
    Image.fromarray(np.zeros((10, 20, 3), np.uint8)).save(image)
    # centre of the top-left pixel at (500000.25, 4000000 - 0.25), 0.5 m pixels
    (tmp_path / "plain.pgw").write_text("0.5\n0\n0\n-0.5\n500000.25\n3999999.75\n")
    transform = read_world_file(image)
    assert transform is not None
    assert (transform.c, transform.f, transform.a, transform.e) == (500000.0, 4000000.0, 0.5, -0.5)
    with open_raster(image) as src:
        assert georef_of(src, image) is None  # a world file gives no CRS: --crs is needed


def test_malformed_world_file(tmp_path: Path) -> None:
    image = tmp_path / "plain.jpg"
    Image.fromarray(np.zeros((10, 20, 3), np.uint8)).save(image)
    (tmp_path / "plain.jgw").write_text("0.5\n0\nzero\n")
    with pytest.raises(GeoreferenceError, match=r"plain\.jgw: world file must hold six numbers"):
        read_world_file(image)


def test_gsd_in_metres_for_projected_and_geographic(tmp_path: Path) -> None:
    path = write_tif(tmp_path / "utm.tif", np.zeros((1, 10, 10), np.uint8), **UTM_GRID)
    _data, georef = read_array(path)
    assert georef is not None
    assert gsd_of(georef, 10, 10) == pytest.approx(0.5)
    from affine import Affine

    geo = write_tif(
        tmp_path / "ll.tif",
        np.zeros((1, 10, 10), np.uint8),
        crs="EPSG:4326",
        transform=Affine(6e-6, 0, -94.5, 0, -6e-6, 37.07),
    )
    _, georef = read_array(geo)
    assert georef is not None
    assert 0.5 < gsd_of(georef, 10, 10) < 0.7  # ~0.53 m E-W, ~0.67 m N-S at 37° N
