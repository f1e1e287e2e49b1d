"""``sitewatch change`` as a user runs it: the installed command, exit codes, files and stderr."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from PIL import Image
from scipy import ndimage

from sitewatch.change import registry
from tests.conftest import UTM_GRID, write_tif

SITEWATCH = Path(sys.executable).with_name("sitewatch")


def run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(SITEWATCH), *map(str, args)], capture_output=True, text=True, timeout=120, check=False)


def scene(rows: int, cols: int, seed: int = 0) -> np.ndarray:
    """A smooth random RGB scene, uint8, (rows, cols, 3)."""
    rng = np.random.default_rng(seed)
    field = np.stack([ndimage.gaussian_filter(rng.random((rows, cols)), 2.0) for _ in range(3)], axis=-1)
    field = (field - field.min()) / np.ptp(field)
    return (20 + 180 * field).astype(np.uint8)


@pytest.fixture
def png_pair(tmp_path: Path) -> tuple[Path, Path]:
    """Plain PNGs 120x90 (w x h); AFTER has a new bright 20x20 block at rows 30..50, cols 40..60."""
    before = scene(90, 120)
    after = before.copy()
    after[30:50, 40:60] = 250
    Image.fromarray(before).save(tmp_path / "before.png")
    Image.fromarray(after).save(tmp_path / "after.png")
    return tmp_path / "before.png", tmp_path / "after.png"


def test_change_writes_mask_and_json(png_pair: tuple[Path, Path], tmp_path: Path) -> None:
    out = tmp_path / "mask.png"
    p = run("change", *png_pair, "-o", out, "--json", "--gsd", "1.0", "--detector", "cva")
    assert p.returncode == 0, p.stderr
    summary = json.loads(p.stdout)
    assert set(summary) == {"detector", "width", "height", "changed_fraction", "seconds"}
    assert (summary["detector"], summary["width"], summary["height"]) == ("cva", 120, 90)
    mask = Image.open(out)
    assert mask.mode == "L" and mask.size == (120, 90)
    values = np.asarray(mask)
    assert values.dtype == np.uint8 and set(np.unique(values)) <= {0, 255}
    assert values[32:48, 42:58].min() == 255 and values[:20].max() == 0
    assert summary["changed_fraction"] == pytest.approx((values == 255).mean(), abs=1e-5)


def test_change_default_is_auto(png_pair: tuple[Path, Path], tmp_path: Path) -> None:
    """Without --detector, the best detector valid for an RGB pair runs, and --json names it."""
    p = run("change", *png_pair, "-o", tmp_path / "mask.png", "--json", "--gsd", "1.0")
    assert p.returncode == 0, p.stderr
    summary = json.loads(p.stdout)
    assert summary["detector"] in registry.names() and summary["detector"] != registry.AUTO
    assert Image.open(tmp_path / "mask.png").size == (120, 90)


def test_change_without_gsd_says_what_it_did(png_pair: tuple[Path, Path], tmp_path: Path) -> None:
    p = run("change", *png_pair, "-o", tmp_path / "mask.png")
    assert p.returncode == 0, p.stderr
    assert "GSD-free settings" in p.stderr
    assert "mask.png" in p.stdout


def test_change_georeferenced_with_prob(tmp_path: Path) -> None:
    before = np.moveaxis(scene(64, 80, seed=1), -1, 0)
    after = before.copy()
    after[:, 20:36, 20:36] = 250
    write_tif(tmp_path / "before.tif", before, **UTM_GRID)
    # AFTER on a coarser grid of the same place: it is put on BEFORE's grid.
    coarse = ndimage.zoom(after.astype(np.float32), (1, 0.5, 0.5), order=1).astype(np.uint8)
    write_tif(
        tmp_path / "after.tif",
        coarse,
        crs=UTM_GRID["crs"],
        transform=Affine(1.0, 0, 367000.0, 0, -1.0, 4104000.0),
    )
    p = run(
        "change", tmp_path / "before.tif", tmp_path / "after.tif", "-o", tmp_path / "m.png",
        "--prob", tmp_path / "p.tif", "--no-align", "--detector", "cva",
    )  # fmt: skip
    assert p.returncode == 0, p.stderr
    assert "warning" not in p.stderr  # the GSD came from the georeference
    assert Image.open(tmp_path / "m.png").size == (80, 64)
    with rasterio.open(tmp_path / "p.tif") as src:
        assert (src.count, src.dtypes[0], src.width, src.height) == (1, "float32", 80, 64)
        assert src.crs.to_epsg() == 32615 and src.transform == UTM_GRID["transform"]
        prob = src.read(1)
    assert prob.min() >= 0.0 and prob.max() <= 1.0
    assert prob[22:34, 22:34].mean() > 0.8 and prob[45:, 50:].mean() < 0.2


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith((".part", "x.png", "x.tif")))


def test_change_missing_file_and_unknown_detector(png_pair: tuple[Path, Path], tmp_path: Path) -> None:
    p = run("change", tmp_path / "missing.png", png_pair[1], "-o", tmp_path / "x.png")
    assert p.returncode == 1 and "missing.png: no such file" in p.stderr and "Traceback" not in p.stderr
    p = run("change", *png_pair, "-o", tmp_path / "x.png", "--detector", "magic")
    assert p.returncode == 1 and "no change detector 'magic'; known: cva" in p.stderr
    assert _leftovers(tmp_path) == []


def test_change_unwritable_output_leaves_no_partial_files(png_pair: tuple[Path, Path], tmp_path: Path) -> None:
    p = run("change", *png_pair, "--gsd", "1", "-o", tmp_path / "x.png", "--prob", tmp_path / "no" / "x.tif")
    assert p.returncode == 1 and "cannot write" in p.stderr
    assert _leftovers(tmp_path) == []


def test_change_help_lists_detectors() -> None:
    p = run("change", "--help")
    assert p.returncode == 0 and "cva" in p.stdout and "auto" in p.stdout
