"""Co-registration: known shifts and maps recovered with the contract's sign, failures as answers,
apply() undoing a shift, and the ``sitewatch register`` contract on files."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from PIL import Image
from pyproj import CRS
from scipy import ndimage

from sitewatch.align import Registration, apply, georef_map, register, shift_metres
from sitewatch.align.files import register_files
from sitewatch.io.raster import Georef
from tests.conftest import UTM_GRID, run_sitewatch, write_tif

CONTRACT_KEYS = {"status", "reason", "model", "shift_px", "shift_m", "affine", "tie_points", "residual_rmse_px"}


def textured(rows: int, cols: int, seed: int = 0, bands: int = 1) -> np.ndarray:
    """Seeded uint8 texture with structure a few pixels across, like imagery (float64 for warping)."""
    rng = np.random.default_rng(seed)
    base = ndimage.gaussian_filter(rng.random((bands, rows, cols)), (0, 2.5, 2.5))
    base = (base - base.min()) / np.ptp(base) * 255
    return base if bands > 1 else base[0]


def shifted(image: np.ndarray, dx: float, dy: float) -> np.ndarray:
    """IMAGE with its content moved by (dx, dy): a feature at (x, y) goes to (x + dx, y + dy)."""
    shift = (dy, dx) if image.ndim == 2 else (0, dy, dx)
    return ndimage.shift(image, shift, order=3, mode="reflect")


def warped(image: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """MOVING(q) = IMAGE(matrix⁻¹ q) for a 2-D IMAGE, so reference p lies at matrix·p in MOVING."""
    inverse = np.linalg.inv(np.vstack([matrix, [0, 0, 1]]))
    swap = np.array([[0, 1, 0], [1, 0, 0], [0, 0, 1]])
    in_rc = swap @ inverse @ swap
    return ndimage.affine_transform(image, in_rc[:2, :2], offset=in_rc[:2, 2], order=3, mode="reflect")


def as_u8(image: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def scene() -> np.ndarray:
    """A 256x256 uint8 reference."""
    return as_u8(textured(256, 256, seed=1))


@pytest.mark.parametrize(("dx", "dy"), [(5.0, -3.0), (3.4, -2.2), (-0.6, 0.35), (-12.25, 17.5)])
def test_shift_is_recovered_with_the_contract_sign(scene: np.ndarray, dx: float, dy: float) -> None:
    result = register(scene, as_u8(shifted(scene.astype(float), dx, dy)))
    assert result.status == "ok" and result.model == "shift"
    assert result.shift_px is not None and result.affine is not None
    assert result.shift_px == pytest.approx((dx, dy), abs=0.05)
    a, b, c, d, e, f = result.affine
    assert (a, b, d, e) == (1.0, 0.0, 0.0, 1.0)
    assert (c, f) == pytest.approx((dx, dy), abs=0.05)
    assert result.tie_points >= 9 and result.residual_rmse_px is not None and result.residual_rmse_px < 0.1


def test_twenty_pixel_shift_on_a_small_image() -> None:
    reference = textured(200, 240, seed=2)
    result = register(reference, shifted(reference, -19.6, 20.0))
    assert result.status == "ok"
    assert result.shift_px == pytest.approx((-19.6, 20.0), abs=0.05)


def test_affine_map_is_recovered() -> None:
    reference = textured(512, 512, seed=3)
    angle, scale = math.radians(0.8), 1.006
    linear = scale * np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    truth = np.column_stack([linear, [4.3, -6.1]])
    result = register(reference, warped(reference, truth))
    assert result.status == "ok" and result.model == "affine"
    assert result.affine == pytest.approx(tuple(truth.ravel()), abs=0.02)
    xs, ys = np.meshgrid(np.linspace(0, 511, 9), np.linspace(0, 511, 9))
    mx, my = result.map(xs, ys)
    tx, ty = truth @ np.stack([xs.ravel(), ys.ravel(), np.ones(xs.size)])
    error = np.hypot(mx.ravel() - tx, my.ravel() - ty)
    assert float(np.sqrt(np.mean(error**2))) < 0.05
    # shift_px of an affine map is its displacement at the reference's centre
    centre = result.displacement(np.array(255.5), np.array(255.5))
    assert result.shift_px == pytest.approx((float(centre[0]), float(centre[1])), abs=1e-9)


def test_large_image_goes_through_the_coarse_level() -> None:
    reference = textured(1300, 2200, seed=9)  # averaged down 4x for the global shift and first grid
    angle = math.radians(0.5)
    linear = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    truth = np.column_stack([linear, [13.3, -8.6]])
    result = register(reference, warped(reference, truth), window=128)
    assert result.status == "ok" and result.model == "affine"
    assert result.affine == pytest.approx(tuple(truth.ravel()), abs=0.01)


def test_smooth_deformation_gives_a_field() -> None:
    reference = textured(512, 512, seed=4)
    rows, cols = np.mgrid[0:512, 0:512].astype(float)

    def displacement(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return 1.5 + 1.2 * np.sin(2 * np.pi * x / 512), -1.0 + 1.0 * np.cos(2 * np.pi * y / 512)

    source_x, source_y = cols.copy(), rows.copy()
    for _ in range(8):  # invert q = p + d(p) by fixed-point iteration
        dx, dy = displacement(source_x, source_y)
        source_x, source_y = cols - dx, rows - dy
    moving = ndimage.map_coordinates(reference, [source_y, source_x], order=3, mode="reflect")
    result = register(reference, moving)
    assert result.status == "ok" and result.model == "field" and result.field is not None
    xs, ys = np.meshgrid(np.linspace(100, 412, 7), np.linspace(100, 412, 7))
    got_x, got_y = result.displacement(xs, ys)
    true_x, true_y = displacement(xs, ys)
    assert float(np.sqrt(np.mean((got_x - true_x) ** 2 + (got_y - true_y) ** 2))) < 0.25


def test_constant_images_are_featureless() -> None:
    flat = np.full((300, 300), 120, np.uint8)
    result = register(flat, flat)
    assert (result.status, result.reason) == ("failed", "featureless")
    assert result.shift_px is None and result.affine is None


def test_noisy_water_is_featureless() -> None:
    rng = np.random.default_rng(5)
    water = [as_u8(90 + rng.normal(0, 2, (256, 256))) for _ in range(2)]
    assert register(*water).reason == "featureless"


def test_disjoint_data_is_no_overlap(scene: np.ndarray) -> None:
    left = np.zeros(scene.shape, bool)
    left[:, :100] = True
    result = register(scene, scene, ref_valid=left, mov_valid=~left)
    assert (result.status, result.reason) == ("failed", "no-overlap")


def test_mostly_cloudy_moving_image_is_cloud(scene: np.ndarray) -> None:
    cloud = np.ones(scene.shape, bool)
    cloud[:, :30] = False
    assert register(scene, scene, mov_cloud=cloud).reason == "cloud"
    # clouds folded into the valid mask (holes in the data) are still called cloud
    holes = np.ones(scene.shape, bool)
    holes[12:-12, 12:-12] = False
    assert register(scene, scene, mov_valid=holes).reason == "cloud"


def test_unrelated_images_are_low_confidence(scene: np.ndarray) -> None:
    result = register(scene, as_u8(textured(256, 256, seed=99)))
    assert (result.status, result.reason) == ("failed", "low-confidence")


def test_tiny_images_fail_with_a_reason() -> None:
    result = register(np.zeros((40, 40)), np.zeros((40, 40)))
    assert (result.status, result.reason) == ("failed", "too-small")


def test_single_band_against_rgb_is_matched_on_gradients() -> None:
    rgb = as_u8(textured(256, 256, seed=6, bands=3))
    moving = shifted(rgb.astype(float), 2.6, -4.3)
    near_infrared = as_u8(255 - moving[2])  # one band, contrast inverted
    result = register(rgb, near_infrared)
    assert result.status == "ok" and result.representation == "gradient"
    assert result.shift_px == pytest.approx((2.6, -4.3), abs=0.1)


def test_apply_undoes_a_shift(scene: np.ndarray) -> None:
    moving = as_u8(shifted(scene.astype(float), 6.5, -3.25))
    result = register(scene, moving)
    aligned, valid = apply(moving, result, scene.shape)
    assert aligned.dtype == np.uint8 and aligned.shape == scene.shape
    assert not valid[:, -6:].any() and not valid[:4, :].any()  # taken from beyond MOVING's edges
    assert valid[10:-10, 10:-10].all()
    error = np.abs(aligned[valid].astype(float) - scene[valid]).mean()
    before = np.abs(moving[valid].astype(float) - scene[valid]).mean()
    assert error < 2.0 < before
    # bands keep their layout; a moving mask travels with the pixels
    stack = np.stack([moving, moving])
    mov_valid = np.ones(moving.shape, bool)
    mov_valid[100:110, 100:110] = False
    aligned_stack, valid_stack = apply(stack, result, scene.shape, mov_valid=mov_valid)
    assert aligned_stack.shape == (2, 256, 256) and not valid_stack[103:112, 94:103].any()


def test_failed_registration_has_no_map() -> None:
    failed = register(np.full((100, 100), 7.0), np.full((100, 100), 7.0))
    with pytest.raises(ValueError, match="featureless"):
        failed.map(np.zeros(1), np.zeros(1))
    with pytest.raises(ValueError, match="cannot apply a failed registration"):
        apply(np.zeros((100, 100)), failed, (100, 100))


def test_json_has_exactly_the_contract_keys(scene: np.ndarray) -> None:
    ok = register(scene, as_u8(shifted(scene.astype(float), 1.0, 2.0)))
    assert set(ok.to_json((10.0, -20.0))) == CONTRACT_KEYS
    assert ok.to_json((10.0, -20.0))["shift_m"] == [10.0, -20.0]
    failed = Registration("failed", "cloud", "shift", None, None, 0, None).to_json((1.0, 1.0))
    assert failed["shift_px"] is None and failed["shift_m"] is None and failed["affine"] is None
    json.dumps(failed)


def test_wrong_mask_shape_is_a_value_error(scene: np.ndarray) -> None:
    with pytest.raises(ValueError, match="ref_valid has shape"):
        register(scene, scene, ref_valid=np.ones((3, 3), bool))


def test_shift_in_metres_is_east_north() -> None:
    utm = Georef(CRS.from_epsg(32633), Affine(10, 0, 330_000, 0, -10, 5_862_000))
    assert shift_metres((0.65, -1.75), utm, (100, 100)) == pytest.approx((6.5, 17.5))
    lonlat = Georef(CRS.from_epsg(4326), Affine(1e-4, 0, 12.0, 0, -1e-4, 52.0))
    east, north = shift_metres((1.0, -1.0), lonlat, (100, 100))
    assert east == pytest.approx(6.8, abs=0.1) and north == pytest.approx(11.1, abs=0.1)


def test_georef_map_links_two_grids() -> None:
    grid = Georef(CRS.from_epsg(32615), Affine(0.5, 0, 367_000, 0, -0.5, 4_104_000))
    own = Georef(CRS.from_epsg(32615), Affine(0.25, 0, 366_990, 0, -0.25, 4_104_010))
    col, row = georef_map(grid, own)(np.array([0.0, 10.0]), np.array([0.0, 4.0]))
    # pixel centre (0, 0) on GRID is (367000.25, 4103999.75): 41 columns and 41 rows into OWN
    assert col == pytest.approx([40.5, 60.5]) and row == pytest.approx([40.5, 48.5])


# The command line contract


def _pngs(tmp_path: Path, dx: float, dy: float) -> tuple[Path, Path]:
    base = textured(280, 340, seed=7)
    ref, mov = tmp_path / "ref.png", tmp_path / "mov.png"
    Image.fromarray(as_u8(base)[20:-20, 20:-20]).save(ref)
    Image.fromarray(as_u8(shifted(base, dx, dy))[20:-20, 20:-20]).save(mov)
    return ref, mov


def test_cli_prints_the_contract_json_with_the_sign_convention(tmp_path: Path) -> None:
    ref, mov = _pngs(tmp_path, 2.5, -1.25)
    for extra in ((), ("--json",)):
        p = run_sitewatch("register", ref, mov, *extra)
        assert p.returncode == 0, p.stderr
        (line,) = p.stdout.strip().splitlines()
        answer = json.loads(line)
        assert set(answer) == CONTRACT_KEYS
        assert answer["status"] == "ok" and answer["shift_m"] is None
        assert answer["shift_px"] == pytest.approx([2.5, -1.25], abs=0.05)


def test_cli_writes_the_aligned_image_on_the_reference_grid(tmp_path: Path) -> None:
    base = (textured(200, 220, seed=8, bands=3) * 200).astype(np.uint16)
    ref = write_tif(tmp_path / "ref.tif", base[:, 10:-10, 10:-10], **UTM_GRID)
    moved = shifted(base.astype(float), -3.0, 2.0)[:, 10:-10, 10:-10]
    # MOVING's own grid is offset by 4 px east: its georeference places it, register measures the rest
    transform = UTM_GRID["transform"] @ Affine.translation(4, 0)
    mov = write_tif(
        tmp_path / "mov.tif",
        np.clip(moved, 0, 65535).astype(np.uint16)[:, :, 4:],
        crs="EPSG:32615",
        transform=transform,
    )
    out = tmp_path / "aligned.tif"
    p = run_sitewatch("register", ref, mov, "-o", out, "--json")
    assert p.returncode == 0, p.stderr
    answer = json.loads(p.stdout)
    assert answer["shift_px"] == pytest.approx([-3.0, 2.0], abs=0.05)
    assert answer["shift_m"] == pytest.approx([-1.5, -1.0], abs=0.03)  # 0.5 m pixels, north = -dy x 0.5
    with rasterio.open(out) as src, rasterio.open(ref) as reference:
        assert (src.crs, src.transform, src.shape) == (reference.crs, reference.transform, reference.shape)
        assert src.count == 3
        aligned, valid = src.read(), src.dataset_mask() > 0
        truth = reference.read()
    # MOVING covers REFERENCE from column 4, and its content lies 3 px left: nothing left of column 7
    assert valid[20:-20, 20:-20].all() and not valid[:, :7].any()
    assert np.abs(aligned[:, valid].astype(float) - truth[:, valid]).mean() < 0.01 * truth.mean()
    assert not list(tmp_path.glob(".*.part"))


def test_palette_images_are_read_as_their_colours(tmp_path: Path) -> None:
    base = textured(200, 200, seed=10)
    paths = []
    for name, image in (("p1.png", base), ("p2.png", shifted(base, -2.0, 1.5))):
        Image.fromarray(as_u8(image)).convert("RGB").quantize(64).save(tmp_path / name)
        paths.append(tmp_path / name)
    result = register_files(*paths)
    assert result.reference.data.shape == (3, 200, 200)
    assert result.registration.shift_px == pytest.approx((-2.0, 1.5), abs=0.05)


def test_cli_failed_pair_exits_zero_and_writes_nothing(tmp_path: Path) -> None:
    flat = tmp_path / "flat.png"
    Image.fromarray(np.full((120, 120), 9, np.uint8)).save(flat)
    out = tmp_path / "aligned.tif"
    p = run_sitewatch("register", flat, flat, "-o", out)
    assert p.returncode == 0
    answer = json.loads(p.stdout)
    assert answer["status"] == "failed" and answer["reason"] == "featureless" and answer["shift_px"] is None
    assert not out.exists() and "not written" in p.stderr


@pytest.mark.parametrize("problem", ["missing", "not-a-raster"])
def test_cli_bad_input_is_one_line_and_non_zero(tmp_path: Path, problem: str) -> None:
    ref, _ = _pngs(tmp_path, 1.0, 1.0)
    bad = tmp_path / "bad.png"
    if problem == "not-a-raster":
        bad.write_text("hello")
    p = run_sitewatch("register", ref, bad)
    assert p.returncode != 0 and p.stdout == ""
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and "bad.png" in lines[0] and "Traceback" not in p.stderr


@pytest.mark.datasets
def test_s2_pair_gives_the_documented_shift(datasets: Path) -> None:
    folder = datasets / "s2-coregistration"
    result = register_files(
        folder / "ref_S2A_20160608T153121_T33UUU_sub.tif", folder / "tgt_S2A_20160529T153631_T33UUU_sub.tif"
    )
    answer = result.to_json()
    assert answer["status"] == "ok"
    dx, dy = answer["shift_px"]
    assert 0.4 < dx < 0.9 and -2.0 < dy < -1.5
    east, north = answer["shift_m"]
    assert east > 0 and north > 0
    assert east == pytest.approx(10 * dx, abs=1e-3) and north == pytest.approx(-10 * dy, abs=1e-3)
