"""Quality masks: cloud, haze and shadow on the demo site and on synthetic scenes, saturation, and
the decoding of sensor-provided masks (Sentinel-2 SCL, Landsat QA_PIXEL, Planet UDM2, Fmask)."""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import rasterio

from sitewatch.demo import DemoSite, generate
from sitewatch.errors import InputError
from sitewatch.io.bands import read_band_folder
from sitewatch.masks import (
    CLOUDY_FRACTION,
    cloud_fraction,
    cloud_like,
    cloud_mask,
    quality_masks,
    sensor_mask,
    sensor_mask_kind,
)

SAND = (200.0, 180.0, 140.0)
CLOUD_WHITE = (245.0, 246.0, 250.0)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> DemoSite:
    return generate(tmp_path_factory.mktemp("demo"), seed=7, size_px=720)


def read(site: DemoSite, index: int) -> np.ndarray:
    with rasterio.open(site.scenes[index].path) as src:
        return np.asarray(src.read())


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max(1, (a | b).sum()))


def sand(shape: tuple[int, int], seed: int = 0) -> np.ndarray:
    """Float (rows, cols, 3) textured sand: a little grain and a slow brightness swell."""
    rng = np.random.default_rng(seed)
    swell = np.asarray(cv2.GaussianBlur(rng.standard_normal(shape).astype(np.float32), (0, 0), 40), np.float32)
    swell /= max(float(swell.std()), 1e-6)
    grain = rng.normal(0, 3, (*shape, 3)).astype(np.float32)
    return np.asarray(SAND, np.float32) * (1 + 0.04 * swell)[..., None] + grain


def blob(shape: tuple[int, int], centre: tuple[int, int], radius: int, softness: float) -> np.ndarray:
    """Opacity 0..1 of a disc with edges blurred by SOFTNESS pixels (0: a sharp edge)."""
    disc = np.zeros(shape, np.float32)
    cv2.circle(disc, (centre[1], centre[0]), radius, 1.0, -1)
    return np.asarray(cv2.GaussianBlur(disc, (0, 0), softness), np.float32) if softness else disc


def as_bands(img: np.ndarray) -> np.ndarray:
    return np.moveaxis(np.clip(np.rint(img), 0, 255).astype(np.uint8), -1, 0)


def mix(img: np.ndarray, colour: tuple[float, float, float], alpha: np.ndarray) -> np.ndarray:
    return np.asarray(img + alpha[..., None] * (np.asarray(colour, np.float32) - img), np.float32)


# ---------------------------------------------------------------------------------------------
# The demo site
# ---------------------------------------------------------------------------------------------


def test_cloudy_demo_date_matches_the_cloud_truth(demo: DemoSite) -> None:
    cloudy = next(s.index for s in demo.scenes if s.cloudy)
    pixels = read(demo, cloudy)
    masks = quality_masks(pixels, np.ones(pixels.shape[1:], bool), dtype="uint8", gsd=demo.gsd)
    truth = demo.cloud_mask(cloudy)
    assert iou(masks.cloud, truth) >= 0.85  # measured 0.91 at 720 px, 0.97 at 1024 px
    assert masks.cloud_fraction == pytest.approx(truth.mean(), abs=0.06)
    assert masks.reason is not None and masks.reason.startswith("cloudy: ")
    assert masks.reason == f"cloudy: {100 * masks.cloud_fraction:.0f} % cloud"
    assert masks.haze_fraction > 0.1  # the veil around the clouds
    assert not (masks.usable & masks.cloud).any()


def test_clear_demo_dates_have_no_cloud_and_white_roofs_stay(demo: DemoSite) -> None:
    for scene in demo.scenes:
        if scene.cloudy:
            continue
        pixels = read(demo, scene.index)
        valid = np.ones(pixels.shape[1:], bool)
        masks = quality_masks(pixels, valid, dtype="uint8", gsd=demo.gsd, sun_azimuth=scene.sun_azimuth)
        assert masks.cloud_fraction < 0.02, scene.index
        assert masks.shadow_fraction == 0.0 and masks.haze_fraction == 0.0
        assert masks.reason is None
        roofs = demo.building_mask(scene.index)
        # White roofs pass the pixel test (bright and grey) but are not cloud once regions count.
        assert (cloud_like(pixels, valid, "uint8") & roofs).sum() > 100
        assert not (masks.cloud & roofs).any()


def test_overview_without_gsd_screens_like_ingest(demo: DemoSite) -> None:
    """Ingest screens a bounded overview without a GSD: sizes then follow the image."""
    for scene in demo.scenes:
        with rasterio.open(scene.path) as src:
            overview = src.read(out_shape=(3, 360, 360))
        share = cloud_fraction(overview, np.ones((360, 360), bool), "uint8")
        if scene.cloudy:
            assert share > CLOUDY_FRACTION
        else:
            assert share < 0.02


def test_demo_shadows_are_found_with_the_sun(demo: DemoSite) -> None:
    cloudy = next(s for s in demo.scenes if s.cloudy)
    pixels = read(demo, cloudy.index)
    masks = quality_masks(
        pixels, np.ones(pixels.shape[1:], bool), dtype="uint8", gsd=demo.gsd, sun_azimuth=cloudy.sun_azimuth
    )
    assert masks.shadow_fraction > 0.01
    before = read(demo, 0).astype(np.float32).mean(axis=0)
    after = pixels.astype(np.float32).mean(axis=0)
    # The flagged shadow is ground that is darker than on the clear first date.
    assert np.median(after[masks.shadow] / before[masks.shadow]) < 0.85
    assert not (masks.shadow & masks.cloud).any()


def test_cloud_mask_keeps_its_callers_working(demo: DemoSite) -> None:
    pixels = read(demo, 1).astype(np.float32)  # analysis reads float copies of the scene's dtype
    valid = np.ones(pixels.shape[1:], bool)
    masks = quality_masks(pixels, valid, dtype="uint8")
    np.testing.assert_array_equal(cloud_mask(pixels, valid, "uint8"), masks.cloud | masks.shadow)
    assert cloud_fraction(pixels, valid, "uint8") == masks.cloud_fraction > CLOUDY_FRACTION


# ---------------------------------------------------------------------------------------------
# Synthetic scenes: region shape, shadows, haze, no-data, multispectral
# ---------------------------------------------------------------------------------------------


def test_a_sharp_white_roof_is_not_cloud_but_a_soft_blob_of_its_size_is() -> None:
    shape = (600, 600)
    ground = sand(shape)
    roof = np.zeros(shape, np.float32)
    roof[220:380, 220:380] = 1.0  # 80 m x 80 m at 0.5 m: larger than the smallest cloud
    roofed = as_bands(mix(ground, (236.0, 236.0, 232.0), cv2.GaussianBlur(roof, (0, 0), 0.6)))
    clouded = as_bands(mix(ground, CLOUD_WHITE, blob(shape, (300, 300), 80, 12.0)))
    valid = np.ones(shape, bool)
    assert cloud_like(roofed, valid, "uint8")[roof > 0].mean() > 0.9
    assert quality_masks(roofed, valid, dtype="uint8", gsd=0.5).cloud_fraction == 0.0
    cloud = quality_masks(clouded, valid, dtype="uint8", gsd=0.5).cloud
    assert iou(cloud, blob(shape, (300, 300), 80, 12.0) > 0.5) > 0.8


@pytest.mark.parametrize("sun_azimuth", [None, 321.6])
def test_cloud_shadow_is_found_where_the_cloud_casts_it(sun_azimuth: float | None) -> None:
    shape, shift = (800, 800), (150, 120)  # shadow displaced south-east: the sun is in the north-west
    ground = sand(shape, seed=1)
    ground[:, 600:608] = (90.0, 92.0, 95.0)  # an asphalt road: dark, but neither shadow nor wide
    ground[60:120, 620:700] = (70.0, 80.0, 110.0)  # a dark blue-grey roof: dark in another colour
    cloud = blob(shape, (280, 260), 110, 8.0)
    shadow = blob(shape, (280 + shift[0], 260 + shift[1]), 110, 8.0) * (1 - cloud)
    img = ground * (1 - 0.5 * shadow)[..., None]
    pixels = as_bands(mix(img, CLOUD_WHITE, cloud))
    valid = np.ones(shape, bool)
    masks = quality_masks(pixels, valid, dtype="uint8", gsd=1.0, sun_azimuth=sun_azimuth)
    assert iou(masks.cloud, cloud > 0.5) > 0.85
    assert iou(masks.shadow, shadow > 0.5) > 0.7
    assert not masks.shadow[:, 600:608].any() and not masks.shadow[60:120, 620:700].any()
    # The same dark patch with no cloud to cast it is not a cloud shadow.
    clear = as_bands(img)
    assert quality_masks(clear, valid, dtype="uint8", gsd=1.0, sun_azimuth=sun_azimuth).shadow_fraction == 0.0


def test_nodata_and_nan_are_left_out_of_every_fraction() -> None:
    shape = (400, 400)
    pixels = np.moveaxis(sand(shape), -1, 0) / 255.0
    pixels[:, :, :100] = np.nan
    valid = np.ones(shape, bool)
    valid[:50] = False
    masks = quality_masks(pixels.astype(np.float32), valid, dtype="float32", scale=1.0)
    assert masks.nodata[:, :100].all() and masks.nodata[:50].all()
    assert masks.valid_fraction == pytest.approx((350 * 300) / (400 * 400))
    assert masks.usable_fraction == 1.0 and masks.reason is None
    nothing = quality_masks(pixels, np.zeros(shape, bool), dtype="float32")
    assert nothing.reason == "no data" and nothing.usable_fraction == 0.0


def test_sentinel2_tests_and_cirrus() -> None:
    """13 bands in Sentinel-2 order: a bright, white, SWIR-bright blob is cloud; B10 cirrus is haze."""
    shape = (300, 300)
    names = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12")
    ground = {"B02": 0.06, "B03": 0.08, "B04": 0.07, "B08": 0.30, "B8A": 0.30, "B11": 0.18, "B12": 0.10}
    cloudy = {"B02": 0.45, "B03": 0.44, "B04": 0.45, "B08": 0.48, "B8A": 0.48, "B11": 0.35, "B12": 0.25}
    opacity = blob(shape, (150, 150), 60, 3.0)
    stack = np.zeros((13, *shape), np.float32)
    for i, name in enumerate(names):
        g, c = ground.get(name, 0.1), cloudy.get(name, 0.4)
        stack[i] = g + opacity * (c - g)
    stack[names.index("B10")] = 0.002
    stack[names.index("B10"), :40, :] = 0.02  # a band of thin cirrus
    dn = np.rint(stack * 10_000).astype(np.uint16)
    masks = quality_masks(dn, np.ones(shape, bool), dtype="uint16", band_names=names, gsd=10.0)
    assert iou(masks.cloud, opacity > 0.5) > 0.8
    assert masks.haze[:40].mean() > 0.95 and not masks.haze[60:].any()
    # The same scene without names is read in Sentinel-2 order.
    unnamed = quality_masks(dn, np.ones(shape, bool), dtype="uint16", gsd=10.0)
    np.testing.assert_array_equal(unnamed.cloud, masks.cloud)


@pytest.mark.datasets
def test_real_sentinel2_scenes(datasets: Path) -> None:
    """OSCD dates are clear, but for two small cumulus over Paris on its second date."""
    for folder in sorted((datasets / "oscd" / "images").glob("*/imgs_[12]")):
        stack = read_band_folder(folder)
        valid = np.isfinite(stack.data).all(axis=0)
        masks = quality_masks(stack.data, valid, dtype="uint16", band_names=stack.names, gsd=10.0)
        if folder.parent.name == "paris" and folder.name == "imgs_2":
            assert 0.002 < masks.cloud_fraction < 0.03
        else:
            assert masks.cloud_fraction < 0.005, folder


# ---------------------------------------------------------------------------------------------
# Saturation
# ---------------------------------------------------------------------------------------------


def test_saturation_at_the_dtype_maximum_and_at_a_plateau() -> None:
    rng = np.random.default_rng(3)
    shape = (200, 200)
    valid = np.ones(shape, bool)
    eight = rng.integers(20, 200, (3, *shape), dtype=np.uint8)
    eight[1, 10:20, 10:20] = 255
    masks = quality_masks(eight, valid, dtype="uint8")
    assert masks.saturated[10:20, 10:20].all() and masks.saturated.sum() == 100
    assert masks.saturated_fraction == pytest.approx(100 / 40_000)
    assert not masks.usable[10:20, 10:20].any()
    # 12-bit data in uint16 clips at 4095, far below the dtype's maximum: a plateau.
    twelve = rng.integers(100, 3000, (4, *shape)).astype(np.uint16)
    twelve[3, 50:60, 50:70] = 4095
    assert quality_masks(twelve, valid, dtype="uint16").saturated.sum() == 200
    # Float reflectance clipped at 1.0 is a plateau too; a smooth maximum is not.
    smooth = rng.random((3, *shape), dtype=np.float32) * 0.8
    assert quality_masks(smooth, valid, dtype="float32").saturated_fraction == 0.0
    smooth[0, :5, :] = 1.0
    assert quality_masks(smooth, valid, dtype="float32").saturated.sum() == 1000


# ---------------------------------------------------------------------------------------------
# Sensor-provided masks
# ---------------------------------------------------------------------------------------------


def test_sentinel2_scene_classification() -> None:
    scl = np.arange(12, dtype=np.uint8).reshape(1, 12)
    decoded = sensor_mask(scl, "scl")
    assert np.flatnonzero(decoded.cloud[0]).tolist() == [8, 9]
    assert np.flatnonzero(decoded.shadow[0]).tolist() == [3]
    assert np.flatnonzero(decoded.haze[0]).tolist() == [10]
    assert np.flatnonzero(decoded.nodata[0]).tolist() == [0]
    assert np.flatnonzero(decoded.saturated[0]).tolist() == [1]


def test_landsat_qa_pixel_bits() -> None:
    clear = 21824  # bits 6 (clear), 8, 10, 12, 14 (low confidences): Landsat 8's usual clear land
    cloud = 22280  # bit 3 (cloud) with high cloud confidence (bits 8-9)
    dilated = clear | (1 << 1)
    cirrus = 54596  # bit 2 (cirrus) with high cirrus confidence
    shadow = (1 << 4) | (1 << 8) | (1 << 10) | (1 << 11)
    fill = 1
    qa = np.array([[clear, cloud, dilated, cirrus, shadow, fill]], np.uint16)
    decoded = sensor_mask(qa, "qa_pixel")
    assert decoded.cloud[0].tolist() == [False, True, True, False, False, False]
    assert decoded.haze[0].tolist() == [False, False, False, True, False, False]
    assert decoded.shadow[0].tolist() == [False, False, False, False, True, False]
    assert decoded.nodata[0].tolist() == [False, False, False, False, False, True]


def test_planet_udm2_fmask_and_plain_masks() -> None:
    udm2 = np.zeros((8, 1, 5), np.uint8)
    udm2[0, 0, 0] = 1  # clear
    udm2[2, 0, 1] = 1  # shadow
    udm2[3, 0, 2] = 1  # light haze
    udm2[4, 0, 3] = 1  # heavy haze: not usable, taken as cloud
    udm2[5, 0, 4] = 1  # cloud
    udm2[7, 0, 0] = 1  # blackfill bit of the legacy UDM band
    decoded = sensor_mask(udm2, "udm2")
    assert decoded.cloud[0].tolist() == [False, False, False, True, True]
    assert decoded.shadow[0].tolist() == [False, True, False, False, False]
    assert decoded.haze[0].tolist() == [False, False, True, False, False]
    assert decoded.nodata[0].tolist() == [True, False, False, False, False]
    fmask = sensor_mask(np.array([[0, 1, 2, 3, 4, 255]], np.uint8), "fmask")
    assert fmask.cloud[0].tolist() == [False] * 4 + [True, False]
    assert fmask.shadow[0].tolist() == [False, False, True, False, False, False]
    assert fmask.nodata[0].tolist() == [False] * 5 + [True]
    assert sensor_mask(np.array([[0, 1, 255]], np.uint8), "binary").cloud[0].tolist() == [False, True, True]
    with pytest.raises(InputError, match="udm2 mask: needs 8 bands"):
        sensor_mask(np.zeros((1, 4, 4), np.uint8), "udm2")


@pytest.mark.parametrize(
    ("key", "kind"),
    [("scl", "scl"), ("SCL", "scl"), ("udm2", "udm2"), ("ortho_udm2", "udm2"), ("udm", "udm"),
     ("qa_pixel", "qa_pixel"), ("QA_PIXEL", "qa_pixel"), ("fmask", "fmask"), ("cloud", "binary"),
     ("cloud-mask", "binary"), ("cloud_probability", None), ("visual", None)],
)  # fmt: skip
def test_sensor_mask_kind_from_asset_key(key: str, kind: str | None) -> None:
    assert sensor_mask_kind(key) == kind


def test_sensor_masks_add_to_the_spectral_ones() -> None:
    shape = (200, 200)
    pixels = as_bands(sand(shape))
    scl = np.full(shape, 4, np.uint8)
    scl[:, :130] = 9  # sensor cloud over 65 % of a scene that looks clear
    scl[:5] = 0
    masks = quality_masks(pixels, np.ones(shape, bool), dtype="uint8", sensor=sensor_mask(scl, "scl"))
    assert masks.nodata[:5].all() and masks.cloud[5:, :130].all()
    assert masks.cloud_fraction == pytest.approx(130 / 200)
    assert masks.reason == "cloudy: 65 % cloud"
    scl[5:, :130] = 3  # the same area as cloud shadow: too little left to use, but not cloudy
    shadowed = quality_masks(pixels, np.ones(shape, bool), dtype="uint8", sensor=sensor_mask(scl, "scl"))
    assert shadowed.reason is not None and shadowed.reason.startswith("mostly masked: 35 % usable")
    with pytest.raises(ValueError, match="not on the grid"):
        quality_masks(pixels, np.ones(shape, bool), dtype="uint8", sensor=sensor_mask(scl[:10], "scl"))


def test_shadow_direction_follows_the_sun() -> None:
    """Of two dark patches either side of a cloud, the shadow is the one away from the sun."""
    shape = (1600, 1600)
    ground = sand(shape, seed=2)
    cloud = blob(shape, (800, 800), 100, 8.0)
    south = blob(shape, (800 + 230, 800), 90, 8.0)
    north = blob(shape, (800 - 230, 800), 90, 8.0)
    img = ground * (1 - 0.5 * np.maximum(south, north))[..., None]
    pixels = as_bands(mix(img, CLOUD_WHITE, cloud))
    valid = np.ones(shape, bool)
    sun_in_the_north = quality_masks(pixels, valid, dtype="uint8", gsd=1.0, sun_azimuth=0.0)
    sun_in_the_south = quality_masks(pixels, valid, dtype="uint8", gsd=1.0, sun_azimuth=180.0)
    assert iou(sun_in_the_north.shadow, south > 0.5) > 0.7
    assert iou(sun_in_the_south.shadow, north > 0.5) > 0.7
    assert math.isclose(sun_in_the_north.cloud_fraction, sun_in_the_south.cloud_fraction)


def test_an_all_cloud_chip_is_excluded() -> None:
    """A small high-resolution chip under one cloud has no ground to judge an edge by: it is cloud."""
    shape = (300, 300)
    overcast = as_bands(mix(sand(shape), CLOUD_WHITE, np.full(shape, 0.97, np.float32)))
    masks = quality_masks(overcast, np.ones(shape, bool), dtype="uint8", gsd=0.5)
    assert masks.cloud_fraction == 1.0 and masks.reason == "cloudy: 100 % cloud"
