"""``sitewatch change`` on awkward input, as a user runs it: a clear one-line error or a right answer.

Decided here (and in ``sitewatch.change.pair``):

* sizes that differ without georeferences, an empty file, and an image with no valid pixel (all
  no-data) are errors: exit 1, one line naming the file, and no output file;
* 16-bit data (12-bit values in uint16), one band, and more than three bands are answered;
* a detector that reads RGB, named on data whose RGB is unknown, is refused in one line, and
  ``auto`` never picks it there.

(A missing input file and an unknown detector name are covered in ``test_change_cli.py``.)
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from sitewatch.change import registry
from sitewatch.change.registry import get as detector_class
from sitewatch.errors import UnknownName
from tests.conftest import UTM_GRID, write_tif

SITEWATCH = Path(sys.executable).with_name("sitewatch")

pytestmark = pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")


def change(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SITEWATCH), "change", *map(str, args)], capture_output=True, text=True, timeout=120, check=False
    )


def scene(bands: int, rows: int = 80, cols: int = 96, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A smooth random scene in 20..200 and its AFTER with a bright new 20x20 block at rows/cols 30..50."""
    rng = np.random.default_rng(seed)
    before = np.stack([ndimage.gaussian_filter(rng.random((rows, cols)), 2.0) for _ in range(bands)])
    before = 20 + 180 * (before - before.min()) / np.ptp(before)
    after = before + rng.normal(0, 1.5, before.shape)
    after[:, 30:50, 30:50] = 250
    return before, np.clip(after, 0, 255)


def assert_one_line_error(p: subprocess.CompletedProcess[str], *parts: str) -> None:
    lines = p.stderr.strip().splitlines()
    assert p.returncode == 1, p.stderr
    assert len(lines) == 1 and lines[0].startswith("error: "), p.stderr
    for part in parts:
        assert part in lines[0]


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(("mask", ".mask", "prob", ".prob")))


def mask_of(path: Path) -> np.ndarray:
    values = np.asarray(Image.open(path))
    assert values.dtype == np.uint8 and set(np.unique(values)) <= {0, 255}
    return values == 255


def test_sizes_that_differ_without_georeference(tmp_path: Path) -> None:
    before, _ = scene(3)
    Image.fromarray(before.transpose(1, 2, 0).astype(np.uint8)).save(tmp_path / "before.png")
    Image.fromarray(np.zeros((10, 12), np.uint8)).save(tmp_path / "small.png")
    p = change(
        tmp_path / "before.png", tmp_path / "small.png", "-o", tmp_path / "mask.png", "--prob", tmp_path / "prob.tif"
    )
    assert_one_line_error(
        p, f"{tmp_path / 'small.png'}: size 12x10 differs from before.png (96x80) and neither is georeferenced"
    )
    assert leftovers(tmp_path) == []


def test_empty_file(tmp_path: Path) -> None:
    before, _ = scene(3)
    Image.fromarray(before.transpose(1, 2, 0).astype(np.uint8)).save(tmp_path / "before.png")
    (tmp_path / "empty.png").write_bytes(b"")
    p = change(tmp_path / "before.png", tmp_path / "empty.png", "-o", tmp_path / "mask.png")
    assert_one_line_error(p, f"{tmp_path / 'empty.png'}: ")
    assert leftovers(tmp_path) == []


def test_all_nodata_image_is_refused(tmp_path: Path) -> None:
    """'Nothing changed' would be claimed where nothing was seen, so an all-no-data image is an error."""
    before, _ = scene(3)
    write_tif(tmp_path / "before.tif", before.astype(np.uint8), nodata=0, **UTM_GRID)
    write_tif(tmp_path / "blank.tif", np.zeros_like(before, dtype=np.uint8), nodata=0, **UTM_GRID)
    for first, second in (("before.tif", "blank.tif"), ("blank.tif", "before.tif")):
        p = change(tmp_path / first, tmp_path / second, "-o", tmp_path / "mask.png")
        assert_one_line_error(p, f"{tmp_path / 'blank.tif'}: has no valid pixel (all no-data)")
        assert leftovers(tmp_path) == []


def test_partial_nodata_is_reported_unchanged(tmp_path: Path) -> None:
    before, after = scene(3)
    after[:, :, 60:] = 0  # AFTER saw only the western part
    write_tif(tmp_path / "before.tif", before.astype(np.uint8), nodata=0, **UTM_GRID)
    write_tif(tmp_path / "after.tif", after.astype(np.uint8), nodata=0, **UTM_GRID)
    p = change(tmp_path / "before.tif", tmp_path / "after.tif", "-o", tmp_path / "mask.png", "--detector", "cva")
    assert p.returncode == 0, p.stderr
    mask = mask_of(tmp_path / "mask.png")
    assert mask[34:46, 34:46].all() and not mask[:, 60:].any()


def test_16_bit_with_12_bit_data_gives_the_8_bit_answer(tmp_path: Path) -> None:
    """The same scene stored as 8-bit and as 12-bit values in uint16 gives the same mask."""
    before, after = scene(3, seed=1)
    for name, data in (("before", before), ("after", after)):
        write_tif(tmp_path / f"{name}8.tif", data.astype(np.uint8))
        write_tif(tmp_path / f"{name}16.tif", (data.astype(np.uint8).astype(np.uint16) * 16 + 8))
    for detector in ("cva", registry.AUTO):
        eight = change(tmp_path / "before8.tif", tmp_path / "after8.tif", "-o", tmp_path / "mask8.png",
                       "--gsd", "1", "--detector", detector)  # fmt: skip
        sixteen = change(tmp_path / "before16.tif", tmp_path / "after16.tif", "-o", tmp_path / "mask16.png",
                         "--gsd", "1", "--detector", detector, "--json")  # fmt: skip
        assert eight.returncode == 0 and sixteen.returncode == 0, eight.stderr + sixteen.stderr
        a, b = mask_of(tmp_path / "mask8.png"), mask_of(tmp_path / "mask16.png")
        assert b[34:46, 34:46].all()
        assert (a == b).mean() > 0.995, (detector, json.loads(sixteen.stdout))


def test_single_band_works_and_auto_picks_a_detector_for_any_bands(tmp_path: Path) -> None:
    before, after = scene(1, seed=2)
    Image.fromarray(before[0].astype(np.uint8)).save(tmp_path / "before.png")
    Image.fromarray(after[0].astype(np.uint8)).save(tmp_path / "after.png")
    p = change(tmp_path / "before.png", tmp_path / "after.png", "-o", tmp_path / "mask.png", "--gsd", "1", "--json")
    assert p.returncode == 0, p.stderr
    detector = json.loads(p.stdout)["detector"]
    assert registry.get(detector).bands == "any"
    assert mask_of(tmp_path / "mask.png")[34:46, 34:46].all()


def test_rgb_detector_named_on_a_single_band_is_a_one_line_error(tmp_path: Path) -> None:
    rgb_only = [name for name in registry.names() if _installed(name) and registry.get(name).bands == "rgb"]
    if not rgb_only:
        pytest.skip("no detector that reads RGB only is installed")
    before, after = scene(1, seed=3)
    Image.fromarray(before[0].astype(np.uint8)).save(tmp_path / "before.png")
    Image.fromarray(after[0].astype(np.uint8)).save(tmp_path / "after.png")
    p = change(tmp_path / "before.png", tmp_path / "after.png", "-o", tmp_path / "mask.png", "--gsd", "1",
               "--detector", rgb_only[0])  # fmt: skip
    assert_one_line_error(p, f"--detector: {rgb_only[0]}: needs red, green and blue bands (1 band(s)")
    assert leftovers(tmp_path) == []


def _installed(name: str) -> bool:
    try:
        return detector_class(name).available()
    except UnknownName:
        return False


@pytest.mark.parametrize("bands", [4, 6])
def test_more_than_three_unnamed_bands_work(tmp_path: Path, bands: int) -> None:
    """Four or six plain bands (RGB unknown): every band is used by a detector that reads any bands."""
    before, after = scene(bands, seed=4)
    write_tif(tmp_path / "before.tif", (before * 16).astype(np.uint16), **UTM_GRID)
    write_tif(tmp_path / "after.tif", (after * 16).astype(np.uint16), **UTM_GRID)
    p = change(tmp_path / "before.tif", tmp_path / "after.tif", "-o", tmp_path / "mask.png", "--json")
    assert p.returncode == 0, p.stderr
    summary = json.loads(p.stdout)
    assert registry.get(summary["detector"]).bands == "any"
    assert (summary["width"], summary["height"]) == (96, 80)
    assert mask_of(tmp_path / "mask.png")[34:46, 34:46].all()
