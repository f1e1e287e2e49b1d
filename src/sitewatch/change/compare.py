"""``compare()``: the one library call behind ``sitewatch change`` and ``sitewatch eval change``.

Load the pair, pick the detector (``auto``: the best valid one for the pair's bands and GSD), run
it, and return the mask and probability with what the contract's ``--json`` reports. The writers
put each file beside its target and rename it at the end, so a failure never leaves a partial
product behind.

NumPy, rasterio, Pillow and the pair loader are imported inside the functions: the package imports
this module at every CLI start (for ``--help``), which must stay fast.
"""

from __future__ import annotations

import time
import warnings
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sitewatch.change import registry
from sitewatch.change.base import ChangeDetector, ChangeResult
from sitewatch.change.vectorize import ChangePolygon, vectorize
from sitewatch.errors import InputError
from sitewatch.io.files import atomic_path
from sitewatch.settings import DEFAULT_LIMITS, Limits

if TYPE_CHECKING:
    import numpy as np

    from sitewatch.change.pair import ImagePair
    from sitewatch.change.tiled import TiledResult
    from sitewatch.io.raster import Georef


#: Pairs with more pixels than this are streamed tile by tile (:mod:`sitewatch.change.tiled`)
#: instead of loaded whole: about 1.5 GB of float32 RGB pair in memory.
LARGE_PAIR_PIXELS = 6000 * 6000


@dataclass(frozen=True)
class ChangeProduct:
    """What one run of a change detector produced, on BEFORE's grid.

    Attributes:
        mask: bool ``(rows, cols)``, changed pixels.
        probability: float32 ``(rows, cols)``, 0–1.
        detector: the registered name of the detector.
        seconds: wall time of loading, aligning and detecting.
        pair: the pair as the detector saw it (for polygons and evidence chips).
    """

    mask: np.ndarray
    probability: np.ndarray
    detector: str
    seconds: float
    pair: ImagePair

    @property
    def georef(self) -> Georef | None:
        """BEFORE's georeference, or ``None`` for plain images."""
        return self.pair.georef

    @property
    def width(self) -> int:
        """Columns of BEFORE."""
        return int(self.mask.shape[1])

    @property
    def height(self) -> int:
        """Rows of BEFORE."""
        return int(self.mask.shape[0])

    def summary(self) -> dict[str, Any]:
        """The object ``sitewatch change --json`` prints (keys fixed by DESIGN.md)."""
        return contract_summary(self.detector, self.width, self.height, float(self.mask.mean()), self.seconds)

    def polygons(self) -> list[ChangePolygon]:
        """The mask's change polygons, typed and measured (see :mod:`sitewatch.change.vectorize`)."""
        transform = self.georef.transform if self.georef is not None else None
        result = ChangeResult(probability=self.probability, mask=self.mask)
        return vectorize(result, self.pair.before, self.pair.after, transform, self.pair.gsd)


def compare(
    before: str | Path,
    after: str | Path,
    detector: str = registry.AUTO,
    gsd: float | None = None,
    align: bool = True,
    limits: Limits = DEFAULT_LIMITS,
) -> ChangeProduct:
    """Detect change from BEFORE to AFTER with the detector registered as DETECTOR.

    Args:
        before: raster file or Sentinel-2 band folder; its grid is the product's grid.
        after: raster file or Sentinel-2 band folder.
        detector: ``auto`` or a name from :func:`sitewatch.change.registry.names`.
        gsd: metres per pixel for plain images (a georeference takes precedence).
        align: apply the global sub-pixel alignment of :func:`load_pair`.
        limits: size limits for every file read.

    Raises:
        UnknownName: If no detector has that name, or its module is not installed.
        InputError: If an input is missing, refused or does not match the other, or the named
            detector cannot run on this pair (see :func:`detect_pair`).
    """

    from sitewatch.change.pair import load_pair

    if detector != registry.AUTO:
        registry.get(detector)  # before any reading: a typo fails at once
    start = time.perf_counter()
    pair = load_pair(Path(before), Path(after), gsd=gsd, align=align, limits=limits)
    return detect_pair(pair, detector, started=start)


def contract_summary(detector: str, width: int, height: int, changed_fraction: float, seconds: float) -> dict[str, Any]:
    """The object ``sitewatch change --json`` prints (keys fixed by DESIGN.md)."""
    return {
        "detector": detector,
        "width": width,
        "height": height,
        "changed_fraction": round(changed_fraction, 6),
        "seconds": round(seconds, 3),
    }


def is_large(before: str | Path, limits: Limits = DEFAULT_LIMITS) -> bool:
    """Whether BEFORE (a raster file; band folders are never large) has more than LARGE_PAIR_PIXELS."""
    from sitewatch.io.raster import open_raster

    path = Path(before)
    if path.is_dir():
        return False
    with open_raster(path, limits) as src:
        pixels: int = src.width * src.height
    return pixels > LARGE_PAIR_PIXELS


def compare_large(
    before: str | Path,
    after: str | Path,
    mask_path: str | Path,
    prob_path: str | Path | None = None,
    detector: str = registry.AUTO,
    gsd: float | None = None,
    limits: Limits = DEFAULT_LIMITS,
) -> TiledResult:
    """Stream a large pair tile by tile and write the mask PNG (and probability GeoTIFF) as :func:`compare`.

    Memory is bounded by the tile size and the scene's width. The pair is compared as it lies: a
    scene this large is co-registered first (``sitewatch register BEFORE AFTER -o``), which
    :func:`compare` would otherwise do on the whole images.
    """
    import tempfile

    import rasterio
    from rasterio.shutil import copy as copy_raster

    from sitewatch.change.tiled import detect_rasters
    from sitewatch.io.raster import gdal_env, open_raster

    with open_raster(Path(before), limits) as src:
        bands = src.count
    name = registry.resolve(detector, bands, bands == 3, gsd)
    instance = registry.get(name)()
    with tempfile.TemporaryDirectory(dir=Path(mask_path).parent) as scratch:
        tiled_mask = Path(scratch) / "mask.tif"
        probability = Path(scratch) / "probability.tif" if prob_path is None else Path(prob_path)
        result = detect_rasters(before, after, instance, probability, tiled_mask, gsd=gsd, limits=limits)
        with atomic_path(Path(mask_path)) as tmp, gdal_env(), rasterio.open(tiled_mask) as mask:
            copy_raster(mask, tmp, driver="PNG")  # GDAL streams the rows: no whole mask in memory
    return result


def detect_pair(
    pair: ImagePair, detector: str | ChangeDetector = registry.AUTO, *, started: float | None = None
) -> ChangeProduct:
    """Run DETECTOR on a prepared PAIR (see :func:`sitewatch.change.pair.prepare`).

    DETECTOR is ``auto`` (resolved for the pair's bands and GSD), a registered name, or an instance
    (a learned detector holding a particular model, as ``sitewatch eval change --models`` uses). A
    detector that reads RGB gets :meth:`ImagePair.as_rgb`. STARTED (a ``time.perf_counter()``
    value) lets the product's time include reading the pair.

    Raises:
        UnknownName: If no detector has that name, or its module is not installed.
        InputError: If the detector cannot run on the pair (:func:`refusal`), or a named one's model
            is not installed.
    """
    import numpy as np

    start = time.perf_counter() if started is None else started
    if isinstance(detector, str):
        cls = registry.get(registry.resolve(detector, pair.band_count, pair.rgb is not None, pair.gsd))
        reason = registry.valid_for(cls, pair.band_count, pair.rgb is not None, pair.gsd)
        if reason is not None:
            raise InputError("--detector", reason)
        instance = cls()
    else:
        instance, reason = detector, refusal(detector, pair)
        if reason is not None:
            raise InputError("--detector", reason)
    seen = pair.as_rgb() if instance.bands == "rgb" else pair
    result = instance.detect(seen.before, seen.after, seen.valid, seen.gsd)
    seconds = time.perf_counter() - start
    return ChangeProduct(
        mask=result.mask.astype(bool),
        probability=np.clip(result.probability, 0.0, 1.0).astype(np.float32),
        detector=instance.name,
        seconds=seconds,
        pair=pair,
    )


def refusal(detector: ChangeDetector, pair: ImagePair) -> str | None:
    """Why the DETECTOR instance cannot run on PAIR, or ``None``: an instance has loaded its model."""
    return registry.valid_for(type(detector), pair.band_count, pair.rgb is not None, pair.gsd, installed=False)


def write_mask_png(mask: np.ndarray, path: str | Path) -> None:
    """Write MASK as a single-band 8-bit PNG: 255 = changed, 0 = unchanged (the contract's format)."""
    with atomic_path(Path(path)) as tmp:
        _write_mask(mask, tmp)


def write_probability_tif(probability: np.ndarray, georef: Georef | None, path: str | Path) -> None:
    """Write PROBABILITY as a float32 GeoTIFF (0–1), georeferenced when GEOREF is given."""
    with atomic_path(Path(path)) as tmp:
        _write_probability(probability, georef, tmp)


def write_products(product: ChangeProduct, mask_path: str | Path, prob_path: str | Path | None = None) -> None:
    """Write the mask PNG and, if asked, the probability GeoTIFF: both files or neither."""
    with ExitStack() as stack:
        _write_mask(product.mask, stack.enter_context(atomic_path(Path(mask_path))))
        if prob_path is not None:
            tmp = stack.enter_context(atomic_path(Path(prob_path)))
            _write_probability(product.probability, product.georef, tmp)


def _write_mask(mask: np.ndarray, path: Path) -> None:
    import numpy as np
    from PIL import Image

    Image.fromarray(np.where(mask, 255, 0).astype(np.uint8)).save(path, format="PNG", optimize=True)


def _write_probability(probability: np.ndarray, georef: Georef | None, path: Path) -> None:
    import numpy as np
    import rasterio
    from rasterio.crs import CRS
    from rasterio.errors import NotGeoreferencedWarning

    from sitewatch.io.raster import gdal_env

    rows, cols = probability.shape
    profile: dict[str, Any] = {
        "driver": "GTiff",
        "width": cols,
        "height": rows,
        "count": 1,
        "dtype": "float32",
        "compress": "deflate",
        "predictor": 3,  # floating-point predictor: smaller files for smooth fields
    }
    if georef is not None:
        profile.update(crs=CRS.from_wkt(georef.crs.to_wkt()), transform=georef.transform)
    data = np.clip(probability, 0.0, 1.0).astype(np.float32)
    with gdal_env(), warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(path, "w", **profile) as dst:
            dst.write(data, 1)
