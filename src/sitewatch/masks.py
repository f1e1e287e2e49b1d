"""Quality masks of an observation: no-data, cloud, haze, cloud shadow and saturation.

Shared by ingest (fractions and flags per observation), alignment (pixels left out of matching) and
analysis (pixels left out of a comparison). Arrays in, a :class:`QualityMasks` out.

Why each mask is built as it is:

- **Cloud** is first a per-pixel spectral test (:func:`cloud_like`): thick cloud is bright and grey
  or white in every visible band; with Sentinel-2-like bands the Fmask tests are added (SWIR bright,
  NIR/SWIR ratio, not snow, not vegetation) and strong cirrus (B10) counts as cloud. White roofs,
  cars and concrete pass a pixel test too, so the mask is then cleaned by *regions*: an opening
  removes anything a few metres across, a region must cover :data:`MIN_CLOUD_AREA_M2`, and one
  smaller than :data:`LARGE_CLOUD_AREA_M2` must also have the soft edge of a cloud (a roof's edge
  falls off within a few pixels, a cloud's over many; from :data:`SOFT_EDGE_MAX_GSD` up both look
  sharp and size decides). Accepted regions then grow back over the connected cloud-like pixels the
  opening trimmed, and holes smaller than a cloud are filled.
- **Haze** is a haze-optimised transform (HOT, Zhang et al. 2002): the distance above the "clear
  line" of blue against red, fitted on the clearest half of the cloud-free pixels. Grey and blue
  man-made surfaces sit above that line too, so in visible bands alone haze is only the high-HOT
  veil *connected to cloud*; thin cirrus (B10), where present, is haze wherever it is. A uniform
  haze over a whole scene is not masked: it is an offset that radiometric normalisation removes.
- **Cloud shadow** is cloud-free ground darkened evenly across bands (shadowed ground keeps its
  colour; asphalt, water and blue roofs are dark in another colour), in regions too large to be
  a road or a building's shadow, and only where the clouds' shadows can fall. All clouds of an
  image share the sun and roughly the cloud height, so one displacement from clouds to dark ground
  is searched (along the direction away from the sun when its azimuth is given) and dark regions
  are kept where tracing back along it reaches a cloud or the edge of the data (clouds outside the
  frame cast shadows into it). Without a clear displacement: along the whole direction away from
  the sun when it is known, else only dark regions touching a cloud.
- **Saturation**: a pixel at the dtype's maximum in any band, or at the band's maximum when that
  value is a plateau (a sensor's or a product's clipping point, such as 4095 in 12-bit data).

Cloud, haze and shadow are large-scale, so they are found on a grid of at most :data:`WORK_PX`
pixels a side and scaled back; no-data and saturation are exact. Thresholds are in reflectance;
8-bit images (display products) are read as a fraction of white, with their own cloud thresholds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np
from numpy.typing import NDArray
from scipy import ndimage, signal, stats

from sitewatch.errors import InputError

Mask = NDArray[np.bool_]
Image = NDArray[np.float32]
Floats = NDArray[np.float64]
SensorMaskKind = Literal["scl", "udm2", "udm", "qa_pixel", "fmask", "binary"]

#: An observation with more cloud than this share of its valid area is excluded as ``cloudy``.
CLOUDY_FRACTION = 0.3
#: An observation with less usable area than this share of its valid area is excluded too.
MIN_USABLE_FRACTION = 0.5

#: Cloud, haze and shadow are found on a grid at most this many pixels a side.
WORK_PX = 1024
#: Opening radius that removes cars, road markings and small roofs from the cloud candidates.
CLOUD_OPEN_M = 3.0
#: Smallest cloud region, and the size above which no soft edge is needed (no roof is that big).
MIN_CLOUD_AREA_M2 = 2_000.0
LARGE_CLOUD_AREA_M2 = 40_000.0
#: Without a GSD, the same two sizes as shares of the image.
MIN_CLOUD_SHARE = 0.002
LARGE_CLOUD_SHARE = 0.05
#: A region whose brightness falls off over fewer pixels than this has a roof's edge, not a cloud's
#: (measured on the demo and real scenes: roofs 2 to 5 px, clouds 7 to 15 px at 0.5 to 1 m).
SOFT_EDGE_PX = 6.0
#: From this GSD (metres) up, a cloud's edge is as sharp as a roof's: regions are judged by size.
SOFT_EDGE_MAX_GSD = 2.5
#: Haze: HOT smoothing (haze is a veil, not a texture) and the least HOT above the clear line.
HAZE_SMOOTH_M = 10.0
HAZE_MIN_HOT = 0.03
#: Sentinel-2 B10 (1375 nm) top-of-atmosphere reflectance of thin cirrus (haze) and thick cirrus (cloud).
CIRRUS_HAZE = 0.012
CIRRUS_CLOUD = 0.04
#: Shadow: darker than this share of the cloud-free ground's median brightness, each band's share
#: of the brightness within this of the cloud-free median's (a shadow darkens every band alike).
SHADOW_DARK_RATIO = 0.9
SHADOW_MAX_TINT = 0.1
#: Opening radius that removes roads and building shadows, and the smallest cloud shadow kept.
SHADOW_OPEN_M = 5.0
MIN_SHADOW_AREA_M2 = 1_000.0
#: Farthest a shadow falls from its cloud (a 3 km cloud base with the sun 25° high).
SHADOW_MAX_M = 6_500.0
#: The displacement search runs on a grid this many pixels a side.
SHADOW_SEARCH_PX = 256
#: A displacement counts when this share of the shifted clouds lands on dark ground, and at least
#: twice the share of dark ground among all cloud-free pixels.
SHADOW_MIN_MATCH = 0.3
#: Shadows are looked for between these multiples of the found displacement (clouds differ in
#: height), and within this angle of the direction away from the sun when its azimuth is known.
SHADOW_REACH = (0.5, 1.5)
SHADOW_ANGLE_DEG = 12.0
#: Saturation plateau: at least this many pixels at a band's maximum, this many times the count
#: at the next lower value.
PLATEAU_MIN_PX = 16
PLATEAU_RATIO = 4.0


@dataclass(frozen=True)
class CloudTests:
    """Per-pixel cloud thresholds, in reflectance (or a fraction of white for 8-bit images)."""

    min_visible: float  # darkest visible band of thick cloud
    max_spread: float  # (max − min) / mean over the visible bands: cloud is grey or white
    min_single: float  # a single band, where whiteness cannot be tested: stricter brightness
    min_hot: float | None  # Fmask's HOT test, blue − 0.5·red − 0.08 > this (reflectance only)


#: 8-bit display products are stretched: thick cloud is near white, bright sand is not grey.
DISPLAY_TESTS = CloudTests(min_visible=0.75, max_spread=0.12, min_single=0.85, min_hot=None)
#: Reflectance (top of atmosphere or surface): thick cloud reflects a quarter or more in the visible.
REFLECTANCE_TESTS = CloudTests(min_visible=0.25, max_spread=0.3, min_single=0.35, min_hot=0.0)
#: Fmask's potential-cloud tests where SWIR exists (Zhu & Woodcock 2012): SWIR2 bright, not snow
#: (NDSI), not vegetation (NDVI), and NIR/SWIR1 high (bright soil and rock have it low).
FMASK_MIN_SWIR2 = 0.03
FMASK_MAX_NDSI = 0.8
FMASK_MAX_NDVI = 0.8
FMASK_MIN_NIR_SWIR1 = 0.75
#: With NIR but no SWIR, vegetation is told from cloud by NDVI alone (cloud sits near 0).
MAX_CLOUD_NDVI = 0.5

#: Band names (Sentinel-2 and STAC ``eo`` common names, lower case) for each role.
BAND_ROLES: dict[str, tuple[str, ...]] = {
    "blue": ("blue", "b02"),
    "green": ("green", "b03"),
    "red": ("red", "b04"),
    "nir": ("nir", "b08", "nir08", "b8a"),
    "swir1": ("swir16", "b11"),
    "swir2": ("swir22", "b12"),
    "cirrus": ("cirrus", "b10"),
}
#: Sentinel-2 band order, for 13 bands without names.
_S2_ORDER = ("b01", "b02", "b03", "b04", "b05", "b06", "b07", "b08", "b8a", "b09", "b10", "b11", "b12")


@dataclass(frozen=True, eq=False)
class SensorMask:
    """Cloud, shadow, haze, no-data and saturation decoded from a sensor-provided mask."""

    cloud: Mask
    shadow: Mask
    haze: Mask
    nodata: Mask
    saturated: Mask


@dataclass(frozen=True, eq=False)
class QualityMasks:
    """Boolean ``(rows, cols)`` masks of one observation, their shares, and whether to exclude it.

    Fractions are of the valid area (``valid_fraction`` is of the whole array). ``usable`` is
    valid and neither cloud, cloud shadow nor saturated; haze is reported but kept, since it is
    what radiometric normalisation corrects. ``reason`` says why the observation should be left
    out (``"cloudy: 45 % cloud"``), or is None.
    """

    nodata: Mask
    cloud: Mask
    haze: Mask
    shadow: Mask
    saturated: Mask
    usable: Mask
    valid_fraction: float
    cloud_fraction: float
    haze_fraction: float
    shadow_fraction: float
    saturated_fraction: float
    usable_fraction: float
    reason: str | None

    @property
    def excluded(self) -> bool:
        """Whether the observation should be left out of comparisons (see ``reason``)."""
        return self.reason is not None


@dataclass(frozen=True)
class _Roles:
    """Band index of each role, or None where the image lacks it."""

    blue: int | None = None
    green: int | None = None
    red: int | None = None
    nir: int | None = None
    swir1: int | None = None
    swir2: int | None = None
    cirrus: int | None = None

    @property
    def multispectral(self) -> bool:
        return self.swir1 is not None and self.swir2 is not None and self.nir is not None


@dataclass(frozen=True)
class _Work:
    """The bands cloud, haze and shadow need, as reflectance on the working grid."""

    bands: dict[str, Image]  # role -> (rows, cols); "brightness" is always there
    valid: Mask
    gsd: float | None  # metres per working pixel
    reflectance: bool  # False for 8-bit display products

    @property
    def shape(self) -> tuple[int, int]:
        rows, cols = self.valid.shape
        return rows, cols

    def px(self, metres: float) -> float:
        """METRES in working pixels (METRES / GSD), or NaN without a GSD."""
        return metres / self.gsd if self.gsd else math.nan

    def area_px(self, area_m2: float, share: float) -> int:
        """An area in working pixels: from square metres with a GSD, else as a share of the image."""
        if self.gsd:
            return max(4, math.ceil(area_m2 / self.gsd**2))
        return max(16, math.ceil(share * self.valid.size))


def quality_masks(
    pixels: NDArray[np.generic],
    valid: Mask,
    *,
    dtype: str,
    band_names: tuple[str, ...] = (),
    gsd: float | None = None,
    scale: float | None = None,
    sun_azimuth: float | None = None,
    sensor: SensorMask | None = None,
) -> QualityMasks:
    """No-data, cloud, haze, cloud shadow and saturation of ``(bands, rows, cols)`` PIXELS.

    Args:
        pixels: The observation's bands, in the scene's dtype or as float copies of it.
        valid: ``(rows, cols)`` pixels with data; non-finite values count as no-data as well.
        dtype: The scene's dtype (``"uint8"``, ``"uint16"``, ``"float32"``, ...): it sets the
            saturation value and the reflectance scale.
        band_names: Sentinel-2 (``B02``…``B12``) or STAC common names (``red``, ``nir``,
            ``swir16``, ``cirrus``, ...). Without names, 3 bands are red, green, blue; 4 bands
            blue, green, red, NIR (PlanetScope, Pléiades, WorldView order); 13 bands Sentinel-2.
        gsd: Metres per pixel; sizes are then in square metres, else in shares of the image.
        scale: The value of reflectance 1 (or of white). By default 255 for ``uint8``, 10000 for
            other integers (Sentinel-2, Planet surface reflectance) and 1 for floats.
        sun_azimuth: Degrees clockwise from north (STAC ``view:sun_azimuth``), for a north-up
            grid: shadows are then looked for only away from the sun, and where their clouds are
            out of the frame, along that direction from its edge.
        sensor: A sensor-provided mask (:func:`sensor_mask`) on the same grid, added to these.

    Returns:
        The masks, their shares of the valid area and, when it should be excluded, the reason.
    """
    data = pixels[np.newaxis] if pixels.ndim == 2 else pixels
    if data.shape[1:] != valid.shape:
        raise ValueError(f"pixels {data.shape} and valid {valid.shape} do not match")
    nodata = ~valid
    if data.dtype.kind == "f":
        nodata |= ~np.isfinite(data).all(axis=0)
    saturated = _saturated(data, ~nodata, dtype)
    roles = _roles(data.shape[0], band_names)
    work = _working(data, ~nodata, roles, dtype, gsd, scale)
    cloud_w, haze_w = _clouds(work, roles)
    shadow_w = _shadows(work, cloud_w, sun_azimuth)
    cloud, haze, shadow = (_full_size(m, valid.shape) for m in (cloud_w, haze_w, shadow_w))
    if sensor is not None:
        if sensor.cloud.shape != valid.shape:
            raise ValueError(f"the sensor mask {sensor.cloud.shape} is not on the grid of the pixels {valid.shape}")
        cloud |= sensor.cloud
        haze |= sensor.haze
        shadow |= sensor.shadow
        nodata |= sensor.nodata
        saturated |= sensor.saturated
    return _summarise(nodata, cloud, haze, shadow, saturated)


def cloud_like(
    pixels: NDArray[np.generic],
    valid: Mask,
    dtype: str,
    *,
    band_names: tuple[str, ...] = (),
    scale: float | None = None,
) -> Mask:
    """Bool ``(rows, cols)``: valid pixels whose spectra look like thick cloud, pixel by pixel.

    This is the spectral test alone, before the region tests of :func:`quality_masks`: white roofs
    and cars pass it too.
    """
    data = pixels[np.newaxis] if pixels.ndim == 2 else pixels
    roles = _roles(data.shape[0], band_names)
    bands = _reflectance(data, valid, roles, dtype, scale, shrink=1)
    reflectance = dtype != "uint8"
    like: Mask = _cloud_pixels(bands, roles, reflectance) & valid
    return like


def cloud_mask(
    pixels: NDArray[np.generic],
    valid: Mask,
    dtype: str,
    *,
    band_names: tuple[str, ...] = (),
    gsd: float | None = None,
) -> Mask:
    """Cloud and cloud shadow to leave out of a comparison (the two masks of :func:`quality_masks`)."""
    masks = quality_masks(pixels, valid, dtype=dtype, band_names=band_names, gsd=gsd)
    result: Mask = masks.cloud | masks.shadow
    return result


def cloud_fraction(
    pixels: NDArray[np.generic],
    valid: Mask,
    dtype: str,
    *,
    band_names: tuple[str, ...] = (),
    gsd: float | None = None,
) -> float:
    """Share of the valid pixels under cloud (compared with :data:`CLOUDY_FRACTION` at ingest)."""
    return quality_masks(pixels, valid, dtype=dtype, band_names=band_names, gsd=gsd).cloud_fraction


def sensor_mask(mask_array: NDArray[np.generic], kind: SensorMaskKind) -> SensorMask:
    """Decode a sensor-provided mask into cloud, shadow, haze, no-data and saturation.

    Kinds and the values used:

    - ``scl``, Sentinel-2 L2A scene classification (one band): 0 no data, 1 saturated or
      defective, 3 cloud shadow, 8 cloud (medium probability), 9 cloud (high probability),
      10 thin cirrus (haze). Class 2 (dark area) is not taken as shadow: it holds dark surfaces
      and terrain shadow too.
    - ``udm2``, Planet UDM2 (8 bands, each 0/1 but the last two): band 3 shadow, band 4 light haze
      (haze), band 5 heavy haze (cloud: Planet's own "clear" excludes it), band 6 cloud, band 8
      bit 0 blackfill (no data).
    - ``udm``, Planet's legacy UDM (one band of bits): bit 0 blackfill, bit 1 cloud.
    - ``qa_pixel``, Landsat Collection 2 QA_PIXEL (one band of bits): bit 0 fill, bit 1 dilated
      cloud and bit 3 cloud (cloud), bit 2 cirrus (haze), bit 4 cloud shadow.
    - ``fmask``, Fmask output (one band): 2 cloud shadow, 4 cloud, 255 no data.
    - ``binary``: any non-zero value is cloud.

    Raises:
        InputError: If the array does not have the bands the kind needs.
    """
    data = np.asarray(mask_array)
    if kind == "udm2":
        if data.ndim != 3 or data.shape[0] < 6:
            raise InputError("udm2 mask", f"needs 8 bands (at least 6), got an array of shape {data.shape}")
        none = np.zeros(data.shape[1:], np.bool_)
        nodata = (data[7] & 1).astype(np.bool_) if data.shape[0] >= 8 else none
        return SensorMask((data[5] != 0) | (data[4] != 0), data[2] != 0, data[3] != 0, nodata, none.copy())
    if data.ndim == 3 and data.shape[0] == 1:
        data = data[0]
    if data.ndim != 2:
        raise InputError(f"{kind} mask", f"needs one band, got an array of shape {data.shape}")
    none = np.zeros(data.shape, np.bool_)
    if kind == "scl":
        return SensorMask(np.isin(data, (8, 9)), data == 3, data == 10, data == 0, data == 1)
    if kind == "udm":
        bits = data.astype(np.int64)
        return SensorMask((bits & 2) != 0, none, none.copy(), (bits & 1) != 0, none.copy())
    if kind == "qa_pixel":
        bits = data.astype(np.int64)
        cloud = (bits & ((1 << 1) | (1 << 3))) != 0
        return SensorMask(cloud, (bits & (1 << 4)) != 0, (bits & (1 << 2)) != 0, (bits & 1) != 0, none)
    if kind == "fmask":
        return SensorMask(data == 4, data == 2, none, data == 255, none.copy())
    return SensorMask(data != 0, none, none.copy(), none.copy(), none.copy())


def sensor_mask_kind(key: str) -> SensorMaskKind | None:
    """The kind of a STAC mask asset from its key (``scl``, ``udm2``, ``qa_pixel``, ...), or None.

    Keys that only say ``cloud`` are taken as plain 0/1 masks, unless they hold a probability.
    """
    name = "_" + key.strip().lower().replace("-", "_") + "_"
    kinds: tuple[SensorMaskKind, ...] = ("scl", "udm2", "udm", "qa_pixel", "fmask")
    for kind in kinds:
        if f"_{kind}_" in name:
            return kind
    if "cloud" in name and "prob" not in name:
        return "binary"
    return None


# ---------------------------------------------------------------------------------------------
# Bands and the working grid
# ---------------------------------------------------------------------------------------------


def _roles(count: int, band_names: tuple[str, ...]) -> _Roles:
    """Which band plays which part, from the names or, without names, from the band count."""
    names = [n.strip().lower() for n in band_names[:count]]
    if not any(n in aliases for n in names for aliases in BAND_ROLES.values()):
        names = {3: ["red", "green", "blue"], 4: ["blue", "green", "red", "nir"], 13: list(_S2_ORDER)}.get(count, [])
    found: dict[str, int] = {}
    for role, aliases in BAND_ROLES.items():
        for alias in aliases:
            if alias in names and role not in found:
                found[role] = names.index(alias)
    return _Roles(**found)


def _default_scale(dtype: str) -> float:
    """White for 8-bit, reflectance × 10000 for other integers, reflectance for floats."""
    if dtype == "uint8":
        return 255.0
    return 10_000.0 if np.dtype(dtype).kind in "iu" else 1.0


def _reflectance(
    data: NDArray[np.generic], valid: Mask, roles: _Roles, dtype: str, scale: float | None, shrink: int
) -> dict[str, Image]:
    """Each role's band as float32 reflectance (0 where invalid), shrunk by SHRINK, and the brightness.

    Brightness is the mean of the visible bands, or of every band when none is known (a
    panchromatic image or one of unknown bands).
    """
    factor = np.float32(1.0 / (scale or _default_scale(dtype)))
    rows, cols = valid.shape
    size = (max(1, round(cols / shrink)), max(1, round(rows / shrink)))

    def band(index: int) -> Image:
        values = np.where(valid, data[index], 0).astype(np.float32) * factor
        values[~np.isfinite(values)] = 0
        if shrink > 1:
            return np.asarray(cv2.resize(values, size, interpolation=cv2.INTER_AREA), np.float32)
        return values

    out = {role: band(index) for role, index in vars(roles).items() if index is not None}
    visible = [out[r] for r in ("red", "green", "blue") if r in out]
    if visible:
        out["brightness"] = np.mean(visible, axis=0, dtype=np.float32)
    else:
        out["brightness"] = np.mean([band(i) for i in range(data.shape[0])], axis=0, dtype=np.float32)
    return out


def _working(
    data: NDArray[np.generic], valid: Mask, roles: _Roles, dtype: str, gsd: float | None, scale: float | None
) -> _Work:
    """Reflectance on a grid of at most :data:`WORK_PX` a side (block averages), with its GSD."""
    shrink = max(1, math.ceil(max(valid.shape) / WORK_PX))
    bands = _reflectance(data, valid, roles, dtype, scale, shrink)
    if shrink > 1:
        share = cv2.resize(valid.astype(np.float32), bands["brightness"].shape[::-1], interpolation=cv2.INTER_AREA)
        small_valid: Mask = share > 0.999
    else:
        small_valid = valid
    work_gsd = gsd * valid.shape[0] / small_valid.shape[0] if gsd else None
    return _Work(bands, small_valid, work_gsd, dtype != "uint8")


def _full_size(mask: Mask, shape: tuple[int, int]) -> Mask:
    if mask.shape == shape:
        return mask.copy()
    scaled = cv2.resize(mask.astype(np.uint8), (shape[1], shape[0]), interpolation=cv2.INTER_NEAREST)
    return np.asarray(scaled, np.bool_)


# ---------------------------------------------------------------------------------------------
# Cloud and haze
# ---------------------------------------------------------------------------------------------


def _cloud_pixels(bands: dict[str, Image], roles: _Roles, reflectance: bool) -> Mask:
    """The per-pixel spectral cloud test (see the module docstring)."""
    tests = REFLECTANCE_TESTS if reflectance else DISPLAY_TESTS
    visible = [bands[r] for r in ("red", "green", "blue") if r in bands]
    if not visible:
        return np.asarray(bands["brightness"] >= tests.min_single, np.bool_)
    low = np.minimum.reduce(visible)
    mean = bands["brightness"]
    cloud = low >= tests.min_visible
    if len(visible) > 1:
        cloud &= (np.maximum.reduce(visible) - low) <= tests.max_spread * np.maximum(mean, 1e-6)
    if tests.min_hot is not None and "blue" in bands and "red" in bands:
        cloud &= bands["blue"] - 0.5 * bands["red"] - 0.08 > tests.min_hot
    if "nir" in bands and "red" in bands:
        ndvi = (bands["nir"] - bands["red"]) / np.maximum(bands["nir"] + bands["red"], 1e-6)
        cloud &= ndvi < (FMASK_MAX_NDVI if roles.multispectral else MAX_CLOUD_NDVI)
    if roles.multispectral:
        nir, swir1, swir2, green = bands["nir"], bands["swir1"], bands["swir2"], bands.get("green", mean)
        ndsi = (green - swir1) / np.maximum(green + swir1, 1e-6)
        cloud &= (swir2 > FMASK_MIN_SWIR2) & (ndsi < FMASK_MAX_NDSI) & (nir > FMASK_MIN_NIR_SWIR1 * swir1)
    if "cirrus" in bands:
        cloud |= bands["cirrus"] >= CIRRUS_CLOUD
    result: Mask = cloud
    return result


def _clouds(work: _Work, roles: _Roles) -> tuple[Mask, Mask]:
    """Cloud and haze on the working grid."""
    candidate = _cloud_pixels(work.bands, roles, work.reflectance) & work.valid
    cloud = _cloud_regions(candidate, work)
    haze = _haze(work, cloud)
    return cloud, haze


def _disk(radius_px: float) -> NDArray[np.uint8]:
    r = max(1, round(radius_px))
    return np.asarray(cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1)), np.uint8)


def _radius(work: _Work, metres: float, share: float) -> float:
    """A radius in working pixels: METRES with a GSD, else SHARE of the image's larger side."""
    radius = work.px(metres)
    return radius if not math.isnan(radius) else share * max(work.shape)


def _open(mask: Mask, radius_px: float) -> Mask:
    opened = cv2.morphologyEx(mask.astype(np.uint8), cv2.MORPH_OPEN, _disk(radius_px))
    return np.asarray(opened, np.bool_)


def _keep_large(mask: Mask, min_px: int) -> Mask:
    """MASK without its 8-connected regions smaller than MIN_PX pixels."""
    labels, count = ndimage.label(mask, structure=np.ones((3, 3)))
    if count == 0:
        return mask.copy()
    area = np.bincount(labels.ravel())
    keep = area >= min_px
    keep[0] = False
    result: Mask = keep[labels]
    return result


def _cloud_regions(candidate: Mask, work: _Work) -> Mask:
    """Cloud-like pixels that form cloud-sized regions with a cloud's soft edge (module docstring)."""
    opened = _open(candidate, _radius(work, CLOUD_OPEN_M, 0.003))
    labels, count = ndimage.label(opened, structure=np.ones((3, 3)))
    if count == 0:
        return np.zeros(candidate.shape, np.bool_)
    area = np.bincount(labels.ravel(), minlength=count + 1)
    min_px = work.area_px(MIN_CLOUD_AREA_M2, MIN_CLOUD_SHARE)
    large_px = work.area_px(LARGE_CLOUD_AREA_M2, LARGE_CLOUD_SHARE)
    keep = area >= min_px
    keep[0] = False
    check = np.flatnonzero(keep & (area < large_px))
    if len(check) and not (work.gsd and work.gsd >= SOFT_EDGE_MAX_GSD):
        widths = _edge_widths(work.bands["brightness"], labels, check)
        keep[check] = widths >= SOFT_EDGE_PX
    accepted = keep[labels]
    # Grow back over the cloud-like pixels the opening trimmed (the cloud's thinner edges).
    grown_labels, _ = ndimage.label(candidate, structure=np.ones((3, 3)))
    touched = np.unique(grown_labels[accepted])
    cloud = np.isin(grown_labels, touched[touched > 0])
    # Fill holes smaller than a cloud: a gap in a cloud is not clear ground one can use. Only gaps
    # the cloud encloses count: clear ground reaching the frame's edge is never a hole, however small.
    holes = ndimage.binary_fill_holes(cloud) & ~cloud
    filled: Mask = (cloud | (holes & ~_keep_large(holes, min_px))) & work.valid
    return filled


def _edge_widths(brightness: Image, labels: NDArray[np.int32], index: NDArray[np.intp]) -> Floats:
    """For regions INDEX of LABELS, how many pixels their brightness takes to fall to the ground's.

    The contrast between a region and a ring 3 to 10 pixels outside it, over the mean of the
    steepest slope near its boundary: a few pixels for a roof (a step blurred by the optics and
    broken by its own ridges), many for a cloud.
    """
    smooth = np.asarray(cv2.GaussianBlur(brightness, (0, 0), 1.0), np.float32)
    gy, gx = np.gradient(smooth)
    # The steepest slope within two pixels of the boundary: an opening moves a boundary inwards.
    gradient = ndimage.maximum_filter(np.hypot(gx, gy), size=5)
    inside = labels > 0
    boundary = inside & ~ndimage.binary_erosion(inside, structure=np.ones((3, 3)))
    distance, nearest = ndimage.distance_transform_edt(~inside, return_indices=True)
    ring_labels = np.where((distance >= 3) & (distance <= 10), labels[nearest[0], nearest[1]], 0)
    with np.errstate(invalid="ignore", divide="ignore"):  # a region with no ring fills the frame
        level = np.asarray(ndimage.mean(brightness, labels, index))
        ground = np.asarray(ndimage.mean(brightness, ring_labels, index))
        slope = np.asarray(ndimage.mean(gradient, np.where(boundary, labels, 0), index))
    # With no ground around it, a bright region filling the frame is taken as cloud, not a roof.
    widths: Floats = np.nan_to_num((level - ground) / np.maximum(slope, 1e-6), nan=np.inf)
    return widths


def _haze(work: _Work, cloud: Mask) -> Mask:
    """HOT veil connected to cloud, and thin cirrus wherever it is (module docstring)."""
    haze = np.zeros(cloud.shape, np.bool_)
    if "cirrus" in work.bands:
        haze |= (work.bands["cirrus"] >= CIRRUS_HAZE) & work.valid
    if not cloud.any() or "blue" not in work.bands or "red" not in work.bands:
        return haze & ~cloud
    blue, red = work.bands["blue"], work.bands["red"]
    clear = work.valid & ~cloud
    if clear.sum() < 100:
        return haze & ~cloud
    hot = _hot(blue, red, clear)
    sigma = _radius(work, HAZE_SMOOTH_M, 0.01)
    smooth = np.asarray(cv2.GaussianBlur(hot, (0, 0), max(1.0, sigma)), np.float32)
    veil = (smooth > HAZE_MIN_HOT) & work.valid
    labels, _ = ndimage.label(veil | cloud, structure=np.ones((3, 3)))
    touched = np.unique(labels[cloud])
    haze |= np.isin(labels, touched[touched > 0]) & veil
    result: Mask = haze & ~cloud
    return result


def _hot(blue: Image, red: Image, clear: Mask) -> Image:
    """Haze-optimised transform: distance above the clear line of blue on red (Zhang et al. 2002).

    The clear line is a Theil–Sen fit refitted on the pixels below the first fit (the clearer
    half), so that hazy pixels among the cloud-free ones do not lift it.
    """
    where = np.flatnonzero(clear)
    sample = where[:: max(1, len(where) // 1_000)]
    b, r = blue.ravel()[sample], red.ravel()[sample]
    with np.errstate(invalid="ignore", divide="ignore"):  # a uniform surface: no confidence interval
        slope, intercept, _, _ = stats.theilslopes(b, r)
        below = b <= slope * r + intercept
        if below.sum() >= 10:
            slope, intercept, _, _ = stats.theilslopes(b[below], r[below])
    if not (math.isfinite(slope) and math.isfinite(intercept)):
        slope, intercept = 1.0, float(np.median(b - r))
    slope = max(float(slope), 0.05)
    hot = (blue - slope * red - intercept) / math.hypot(1.0, slope)
    return np.asarray(hot, np.float32)


# ---------------------------------------------------------------------------------------------
# Cloud shadow
# ---------------------------------------------------------------------------------------------


def _shadows(work: _Work, cloud: Mask, sun_azimuth: float | None) -> Mask:
    """Dark, flatly darkened regions where the clouds' shadows fall (module docstring)."""
    if not cloud.any():
        return np.zeros(cloud.shape, np.bool_)
    clear = work.valid & ~cloud
    dark = _open(_flat_dark(work, clear), _radius(work, SHADOW_OPEN_M, 0.005))
    dark = _keep_large(dark, work.area_px(MIN_SHADOW_AREA_M2, MIN_CLOUD_SHARE / 2))
    if not dark.any():
        return dark
    grid = _Coarse.of(work.shape)
    direction = None
    if sun_azimuth is not None:  # shadows fall away from the sun; y grows southwards
        direction = (math.cos(math.radians(sun_azimuth)), -math.sin(math.radians(sun_azimuth)))
    farthest = work.px(SHADOW_MAX_M) if work.gsd else math.inf
    farthest = min(farthest, math.hypot(*work.shape)) / grid.step
    shift = _shadow_shift(grid, cloud, dark, clear, direction, farthest)
    source = cloud | ~work.valid
    if shift is not None:
        zone = _full_size(_swept(grid.shrink(source) > 0, shift, *SHADOW_REACH), work.shape)
    elif direction is not None:
        unit = (direction[0] * farthest, direction[1] * farthest)
        zone = _full_size(_swept(grid.shrink(source) > 0, unit, 0.0, 1.0), work.shape)
    else:
        zone = cv2.dilate(cloud.astype(np.uint8), _disk(2)) > 0
    labels, _ = ndimage.label(dark, structure=np.ones((3, 3)))
    touched = np.unique(labels[zone])
    result: Mask = np.isin(labels, touched[touched > 0])
    return result


def _flat_dark(work: _Work, clear: Mask) -> Mask:
    """Cloud-free ground darkened evenly across bands, as a shadow darkens it.

    Smoothed (shadows are soft and sensor noise is not), darker than :data:`SHADOW_DARK_RATIO`
    of the cloud-free median, with each band's share of the brightness within
    :data:`SHADOW_MAX_TINT` of the cloud-free median's: asphalt, water or a blue roof are dark
    in another colour, shadowed ground keeps its own.
    """
    roles: list[str] = [r for r in ("red", "green", "blue", "nir", "swir1") if r in work.bands] or ["brightness"]
    sigma = max(1.0, _radius(work, 2.0, 0.003))
    bands = [np.asarray(cv2.GaussianBlur(work.bands[r], (0, 0), sigma), np.float32) for r in roles]
    brightness = np.mean(bands, axis=0)
    if clear.sum() < 100:
        return np.zeros(clear.shape, np.bool_)
    dark = clear & (brightness < SHADOW_DARK_RATIO * float(np.median(brightness[clear])))
    if len(bands) > 1:
        for band in bands:
            tint = band / np.maximum(brightness, 1e-6)
            dark &= np.abs(tint - float(np.median(tint[clear]))) < SHADOW_MAX_TINT
    result: Mask = dark
    return result


@dataclass(frozen=True)
class _Coarse:
    """The shadow search grid: the working grid shrunk by ``step``, at most :data:`SHADOW_SEARCH_PX` a side."""

    step: int
    size: tuple[int, int]  # (cols, rows), as OpenCV takes it

    @classmethod
    def of(cls, shape: tuple[int, int]) -> _Coarse:
        step = max(1, math.ceil(max(shape) / SHADOW_SEARCH_PX))
        return cls(step, (max(1, shape[1] // step), max(1, shape[0] // step)))

    def shrink(self, mask: Mask) -> Image:
        """Share of each coarse cell that MASK covers."""
        return np.asarray(cv2.resize(mask.astype(np.float32), self.size, interpolation=cv2.INTER_AREA), np.float32)


def _shadow_shift(
    grid: _Coarse,
    cloud: Mask,
    dark: Mask,
    clear: Mask,
    direction: tuple[float, float] | None,
    farthest: float,
) -> tuple[float, float] | None:
    """The (dy, dx) coarse-pixel displacement from clouds to their shadows, or None if unclear.

    One FFT cross-correlation scores every displacement at once: the share of the shifted clouds
    that lands on dark ground, among those landing on cloud-free ground. With the sun's azimuth,
    only displacements within :data:`SHADOW_ANGLE_DEG` of the direction away from it count.
    """
    c, d, f = grid.shrink(cloud), grid.shrink(dark), grid.shrink(clear)
    flipped = c[::-1, ::-1]
    on_dark = signal.fftconvolve(d, flipped, mode="full")
    on_clear = signal.fftconvolve(f, flipped, mode="full")
    lag_y = np.arange(on_dark.shape[0])[:, None] - (c.shape[0] - 1)
    lag_x = np.arange(on_dark.shape[1])[None, :] - (c.shape[1] - 1)
    distance = np.hypot(lag_y, lag_x)
    allowed = (on_clear >= 0.2 * c.sum()) & (distance >= 2) & (distance <= farthest)
    if direction is not None:
        along = (lag_y * direction[0] + lag_x * direction[1]) / np.maximum(distance, 1e-9)
        allowed &= along >= math.cos(math.radians(SHADOW_ANGLE_DEG))
    if not allowed.any():
        return None
    score = np.where(allowed, on_dark / np.maximum(on_clear, 1e-6), 0.0)
    best = np.unravel_index(int(np.argmax(score)), score.shape)
    background = float(dark.sum() / max(1, clear.sum()))
    if score[best] < max(SHADOW_MIN_MATCH, 2 * background):
        return None
    return float(lag_y[best[0], 0]), float(lag_x[0, best[1]])


def _swept(source: Mask, shift: tuple[float, float], nearest: float, farthest: float) -> Mask:
    """Pixels reached from SOURCE by moving along SHIFT, NEAREST to FARTHEST times its length.

    One move to the nearest offset, then a sweep whose step doubles each pass (log₂ of the
    length in passes), widened by a tenth of the length for the uncertainty in the direction.
    Beyond the array everything counts as source: clouds outside the frame cast shadows into it.
    """
    length = math.hypot(*shift)
    unit = (shift[0] / max(length, 1e-9), shift[1] / max(length, 1e-9))
    pad = math.ceil(length * farthest) + 1
    reached = _moved(
        np.pad(source, pad, constant_values=True), round(unit[0] * length * nearest), round(unit[1] * length * nearest)
    )
    done, step, sweep = 0.0, 1.0, length * (farthest - nearest)
    while done < sweep:
        move = min(step, sweep - done)
        reached |= _moved(reached, round(unit[0] * move), round(unit[1] * move))
        done, step = done + move, step * 2
    cropped = reached[pad:-pad, pad:-pad].astype(np.uint8)
    widened = cv2.dilate(cropped, _disk(min(10.0, max(1.0, 0.1 * length * farthest))))
    result: Mask = widened > 0
    return result


def _moved(mask: Mask, dy: int, dx: int) -> Mask:
    """MASK moved by (DY, DX) pixels: ``out[y, x] = mask[y - dy, x - dx]``, False where nothing moved in."""
    out = np.zeros_like(mask)
    rows, cols = mask.shape
    if abs(dy) >= rows or abs(dx) >= cols:
        return out
    out[max(dy, 0) : rows + min(dy, 0), max(dx, 0) : cols + min(dx, 0)] = mask[
        max(-dy, 0) : rows + min(-dy, 0), max(-dx, 0) : cols + min(-dx, 0)
    ]
    return out


# ---------------------------------------------------------------------------------------------
# Saturation and the summary
# ---------------------------------------------------------------------------------------------


#: 2^k for the bit depths sensors clip at, stored in wider integers.
_CLIP_LEVELS = frozenset(2**k for k in range(9, 17))


def _saturated(data: NDArray[np.generic], valid: Mask, dtype: str) -> Mask:
    """Valid pixels at the dtype's maximum, or at a band's plateau maximum, in any band.

    The plateau test is for data stored wider than the sensor's range: integers whose top value is
    a sensor's clipping level (2^k - 1: 1023, 4095, 16383 ...), and floats. A uniform bright roof at
    any other value is not mistaken for saturation.
    """
    saturated = np.zeros(valid.shape, np.bool_)
    top = int(np.iinfo(dtype).max) if np.dtype(dtype).kind in "iu" else None
    plateaus = np.dtype(dtype).itemsize > 1
    if not valid.any():
        return saturated
    for band in data:
        values = band[valid]
        highest = values.max()
        if top is not None and highest >= top:
            saturated |= band >= top
            continue
        at_top = int(np.count_nonzero(values == highest))
        below = values[values < highest]
        runner_up = int(np.count_nonzero(below == below.max())) if below.size else 0
        clip_level = top is None or int(highest) + 1 in _CLIP_LEVELS
        if plateaus and clip_level and at_top >= PLATEAU_MIN_PX and at_top >= PLATEAU_RATIO * runner_up:
            saturated |= band == highest
    result: Mask = saturated & valid
    return result


def _summarise(nodata: Mask, cloud: Mask, haze: Mask, shadow: Mask, saturated: Mask) -> QualityMasks:
    valid = ~nodata
    cloud &= valid
    haze &= valid & ~cloud
    shadow &= valid & ~cloud
    saturated &= valid
    usable = valid & ~cloud & ~shadow & ~saturated
    count = int(np.count_nonzero(valid))

    def share(mask: Mask) -> float:
        return float(np.count_nonzero(mask) / count) if count else 0.0

    cloudy, usable_share = share(cloud), share(usable)
    reason = None
    if count == 0:
        reason = "no data"
    elif cloudy > CLOUDY_FRACTION:
        reason = f"cloudy: {100 * cloudy:.0f} % cloud"
    elif usable_share < MIN_USABLE_FRACTION:
        reason = (
            f"mostly masked: {100 * usable_share:.0f} % usable ({100 * cloudy:.0f} % cloud, "
            f"{100 * share(shadow):.0f} % cloud shadow, {100 * share(saturated):.0f} % saturated)"
        )
    return QualityMasks(
        nodata=nodata,
        cloud=cloud,
        haze=haze,
        shadow=shadow,
        saturated=saturated,
        usable=usable,
        valid_fraction=count / max(1, valid.size),
        cloud_fraction=cloudy,
        haze_fraction=share(haze),
        shadow_fraction=share(shadow),
        saturated_fraction=share(saturated),
        usable_fraction=usable_share,
        reason=reason,
    )
