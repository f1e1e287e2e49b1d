"""Tiled, streamed change detection for pairs too large to hold in memory.

Memory is bounded by the tile size and the scene's width, never by its height or area:

1. ``fit`` sees a mosaic of full-resolution sample windows spread over the scene (the whole pair
   when it is no larger than the mosaic), so the global statistics cost the same for any scene.
2. The scene is scored in row strips of tiles. Each tile is read with the detector's
   ``context_px`` of margin on every side (clipped at the scene's edges) and only its own pixels are
   kept; neighbouring tiles overlap by ``overlap`` px and are blended with complementary raised-cosine
   weights, so a detector whose tiles do not agree exactly (a learned one) leaves no seam. Only the
   strip being scored and the overlap it hands to the next are held.
3. Finished rows are decided (threshold, opening and closing) with enough rows of margin for the
   morphology's reach, then regions under the minimum mapping unit are dropped with as many rows of
   margin again: a region that reaches beyond that margin is at least that large, so the streamed
   mask equals the whole-scene one. Rows are written to tiled, DEFLATE-compressed GeoTIFFs in whole
   blocks, under temporary names renamed at the end (both files or neither).
4. Changed regions are polygonised block by block (:func:`rasterio.features.shapes`); pieces that
   share an edge across block boundaries are joined (shapely union per connected group) once no
   later block can extend them, and regions under the minimum mapping unit are dropped.

Both inputs must lie on one grid: the same size for plain images, or any two georeferenced rasters,
AFTER being read through a :class:`rasterio.vrt.WarpedVRT` onto BEFORE's grid. No co-registration is
done here: the pipeline's observations are aligned when they are stored.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import rasterio
import shapely
from affine import Affine
from rasterio.crs import CRS
from rasterio.enums import ColorInterp, Resampling
from rasterio.errors import NotGeoreferencedWarning
from rasterio.features import shapes
from rasterio.io import DatasetReader, DatasetWriter
from rasterio.vrt import WarpedVRT
from rasterio.warp import transform_bounds
from rasterio.windows import Window
from shapely.affinity import affine_transform
from shapely.geometry import shape
from shapely.geometry.base import BaseGeometry

from sitewatch.change.base import ChangeDetector, min_mapping_unit_px, warn_if_gsd_unknown
from sitewatch.change.morphology import clean_radius_px
from sitewatch.change.registry import valid_for
from sitewatch.errors import InputError, NoOverlapError
from sitewatch.io.files import atomic_path
from sitewatch.io.raster import Georef, gdal_env, georef_of, gsd_of, open_raster
from sitewatch.settings import DEFAULT_LIMITS, Limits

#: Sample windows ``fit`` sees at most, and their width and height in pixels.
FIT_WINDOWS = 16
FIT_WINDOW_PX = 512
#: Block size of the written GeoTIFFs; rows are written in whole blocks.
BLOCK_PX = 256
#: GDAL's block cache while a pair is processed, in MB: written blocks leave memory once evicted.
GDAL_CACHE_MB = 64


@dataclass(frozen=True)
class ChangeRegion:
    """One changed region of a tiled run.

    Attributes:
        geometry: polygon in the raster's CRS, or in pixel coordinates (x = column to the right,
            y = row down, pixel corners) for plain images.
        area_px: pixels of the region.
        area_m2: ground area (pixels times GSD²), or ``None`` when the GSD is unknown.
        confidence: mean change probability inside the region, 0–1.
    """

    geometry: BaseGeometry
    area_px: int
    area_m2: float | None
    confidence: float


@dataclass(frozen=True)
class TiledResult:
    """What :func:`detect_rasters` wrote and found, on BEFORE's grid."""

    detector: str
    width: int
    height: int
    gsd: float | None
    georef: Georef | None
    changed_pixels: int
    regions: tuple[ChangeRegion, ...]  # largest first
    tiles: int
    seconds: float

    @property
    def changed_fraction(self) -> float:
        """Share of the grid's pixels marked changed."""
        return self.changed_pixels / (self.width * self.height)


@dataclass(frozen=True)
class TileDone:
    """Progress event: one tile of a tiled run was scored."""

    done: int
    total: int


def detect_rasters(
    before: str | Path,
    after: str | Path,
    detector: ChangeDetector,
    out_probability: str | Path,
    out_mask: str | Path | None = None,
    *,
    gsd: float | None = None,
    tile: int = 1024,
    overlap: int = 64,
    limits: Limits = DEFAULT_LIMITS,
    on_progress: Callable[[TileDone], None] | None = None,
) -> TiledResult:
    """Detect change from BEFORE to AFTER tile by tile, writing the probability and mask as GeoTIFFs.

    Args:
        before: raster file; its grid is the products' grid.
        after: raster file on the same grid, or georeferenced (then read onto BEFORE's grid).
        detector: the detector instance to fit and run.
        out_probability: float32 GeoTIFF of the change probability (0–1) to write.
        out_mask: uint8 GeoTIFF of the mask (255 = changed, 0 = unchanged) to write, if given.
        gsd: metres per pixel for plain images (a georeference takes precedence).
        tile: tile width and height in pixels.
        overlap: pixels by which neighbouring tiles overlap and are blended (at most half a tile).
        limits: size limits for both files.
        on_progress: called after each tile.

    Raises:
        InputError: If a file is missing or refused, the grids or band counts do not match, the
            pair has no pixel in common, the detector cannot run on it, or an argument is out of range.
    """
    started = time.perf_counter()
    if tile < 32 or not 0 <= overlap <= tile // 2:
        raise InputError("tile", f"needs tile >= 32 px and 0 <= overlap <= tile / 2, got {tile} and {overlap}")
    if gsd is not None and not (math.isfinite(gsd) and gsd > 0):
        raise InputError("--gsd", f"must be a positive number of metres, got {gsd!r}")
    with ExitStack() as stack:
        stack.enter_context(gdal_env())
        stack.enter_context(rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_MB))
        pair = _open_pair(stack, Path(before), Path(after), limits)
        gsd = gsd_of(pair.georef, pair.width, pair.height) if pair.georef is not None else gsd
        reason = valid_for(type(detector), pair.bands, pair.bands == 3, gsd)
        if reason is not None:
            raise InputError(pair.before_path, reason)
        warn_if_gsd_unknown(detector.name, gsd)
        _fit(detector, pair, gsd)
        paths = [Path(out_probability)] + ([] if out_mask is None else [Path(out_mask)])
        temporary = [stack.enter_context(atomic_path(p)) for p in paths]
        dtypes = ("float32", "uint8")[: len(paths)]
        writers = [stack.enter_context(_create(tmp, pair, dtype)) for tmp, dtype in zip(temporary, dtypes, strict=True)]
        sink = _Sink(detector, gsd, pair.width, pair.height, writers, pair.georef)
        tiles = _score_strips(detector, pair, gsd, tile, overlap, sink, on_progress)
        regions = sink.regions.found
    regions.sort(key=lambda r: r.area_px, reverse=True)
    return TiledResult(
        detector=detector.name,
        width=pair.width,
        height=pair.height,
        gsd=gsd,
        georef=pair.georef,
        changed_pixels=sink.changed_pixels,
        regions=tuple(regions),
        tiles=tiles,
        seconds=time.perf_counter() - started,
    )


@dataclass(frozen=True)
class _Pair:
    """Both rasters open, AFTER readable on BEFORE's grid."""

    before_path: Path
    before: DatasetReader
    after: DatasetReader | WarpedVRT
    before_bands: list[int]
    after_bands: list[int]
    georef: Georef | None

    @property
    def width(self) -> int:
        return int(self.before.width)

    @property
    def height(self) -> int:
        return int(self.before.height)

    @property
    def bands(self) -> int:
        return len(self.before_bands)

    def read(self, window: Window) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """float32 BEFORE and AFTER ``(bands, rows, cols)`` in WINDOW, and where both have finite data."""
        a = self.before.read(self.before_bands, window=window, out_dtype=np.float32)
        b = self.after.read(self.after_bands, window=window, out_dtype=np.float32)
        valid = (self.before.dataset_mask(window=window) > 0) & (self.after.dataset_mask(window=window) > 0)
        valid &= np.isfinite(a).all(axis=0) & np.isfinite(b).all(axis=0)
        return np.nan_to_num(a, copy=False), np.nan_to_num(b, copy=False), valid


def _open_pair(stack: ExitStack, before: Path, after: Path, limits: Limits) -> _Pair:
    """Open both files and put AFTER on BEFORE's grid (see the module docstring)."""
    a = stack.enter_context(open_raster(before, limits))
    b = stack.enter_context(open_raster(after, limits))
    a_bands, b_bands = _data_bands(a, before), _data_bands(b, after)
    if len(a_bands) != len(b_bands):
        raise InputError(after, f"has {len(b_bands)} band(s), {before.name} has {len(a_bands)}")
    own, grid = georef_of(b, after), georef_of(a, before)
    reader: DatasetReader | WarpedVRT = b
    if own is not None and grid is not None:
        if (b.width, b.height, own) != (a.width, a.height, grid):
            left, bottom, right, top = transform_bounds(b.crs, a.crs, *b.bounds, densify_pts=21)
            if left >= a.bounds.right or right <= a.bounds.left or bottom >= a.bounds.top or top <= a.bounds.bottom:
                raise NoOverlapError(after, f"does not overlap {before.name}'s footprint")
            alpha = [i + 1 for i, ci in enumerate(b.colorinterp) if ci == ColorInterp.alpha]
            reader = stack.enter_context(
                WarpedVRT(
                    b,
                    crs=a.crs,
                    transform=a.transform,
                    width=a.width,
                    height=a.height,
                    resampling=Resampling.bilinear,
                    add_alpha=b.nodata is None,
                    src_alpha=alpha[0] if alpha else 0,
                )
            )
    elif (b.width, b.height) != (a.width, a.height):
        raise InputError(
            after,
            f"size {b.width}x{b.height} differs from {before.name} ({a.width}x{a.height}) "
            "and they are not both georeferenced",
        )
    return _Pair(before, a, reader, a_bands, b_bands, grid)


def _data_bands(src: DatasetReader, path: Path) -> list[int]:
    """1-based indexes of the bands that hold data (not alpha); palette images are refused."""
    if src.count == 1 and src.colorinterp[0] == ColorInterp.palette:
        raise InputError(path, "palette images are not supported by tiled detection; expand them to RGB first")
    return [i + 1 for i, ci in enumerate(src.colorinterp) if ci != ColorInterp.alpha] or [1]


def _fit(detector: ChangeDetector, pair: _Pair, gsd: float | None) -> None:
    """Fit DETECTOR on the whole pair when small, else on a mosaic of sample windows side by side.

    In a mosaic, each window's ring of ``context_px`` is left out of the statistics, so no pixel is
    counted whose smoothing reached across into the next window.
    """
    windows = _sample_windows(pair.width, pair.height)
    rows, cols = int(windows[0].height), int(windows[0].width)
    # Side by side in arrays allocated once: the mosaic is the largest thing a tiled run holds.
    before = np.empty((pair.bands, rows, cols * len(windows)), np.float32)
    after = np.empty_like(before)
    valid = np.empty((rows, cols * len(windows)), bool)
    ring = min(type(detector).context_px, rows // 4, cols // 4) if len(windows) > 1 else 0
    for i, window in enumerate(windows):
        part = slice(i * cols, (i + 1) * cols)
        before[:, :, part], after[:, :, part], ok = pair.read(window)
        if ring > 0:
            ok[:ring], ok[-ring:], ok[:, :ring], ok[:, -ring:] = False, False, False, False
        valid[:, part] = ok
    if not valid.any():
        raise NoOverlapError(pair.before_path, "has no valid pixel in common with AFTER in the sampled windows")
    detector.fit(before, after, valid, gsd)


def _sample_windows(width: int, height: int) -> list[Window]:
    """The whole grid if it fits the mosaic, else up to :data:`FIT_WINDOWS` windows on an even grid."""
    if width * height <= FIT_WINDOWS * FIT_WINDOW_PX**2:
        return [Window(0, 0, width, height)]
    per_side = math.isqrt(FIT_WINDOWS)
    w, h = min(FIT_WINDOW_PX, width), min(FIT_WINDOW_PX, height)
    cols = sorted({min(max(round((i + 0.5) * width / per_side - w / 2), 0), width - w) for i in range(per_side)})
    rows = sorted({min(max(round((i + 0.5) * height / per_side - h / 2), 0), height - h) for i in range(per_side)})
    return [Window(col, row, w, h) for row in rows for col in cols]


def _spans(length: int, tile: int, overlap: int) -> list[tuple[int, int]]:
    """``(start, stop)`` of the tiles along an axis: TILE long, OVERLAP shared with the next; the
    last one ends at LENGTH and is longer than OVERLAP."""
    if length <= tile:
        return [(0, length)]
    spans, start = [], 0
    while start + tile < length:
        spans.append((start, start + tile))
        start += tile - overlap
    spans.append((start, length))
    return spans


def _weights(spans: list[tuple[int, int]], index: int, overlap: int) -> np.ndarray:
    """Blending weight along one axis of tile INDEX: a raised cosine up over the overlap with the
    previous tile and its complement down over the overlap with the next, so overlapping weights
    sum to one."""
    start, stop = spans[index]
    weight = np.ones(stop - start, np.float32)
    if overlap == 0:
        return weight
    rising = (0.5 - 0.5 * np.cos(np.pi * (np.arange(overlap) + 0.5) / overlap)).astype(np.float32)
    if index > 0:
        weight[:overlap] = rising
    if index < len(spans) - 1:
        weight[-overlap:] = 1.0 - rising
    return weight


def _score_strips(
    detector: ChangeDetector,
    pair: _Pair,
    gsd: float | None,
    tile: int,
    overlap: int,
    sink: _Sink,
    on_progress: Callable[[TileDone], None] | None,
) -> int:
    """Score every tile, strip by strip, blend, and hand finished rows to SINK; returns the tile count."""
    rows, cols = _spans(pair.height, tile, overlap), _spans(pair.width, tile, overlap)
    context = type(detector).context_px
    total, done = len(rows) * len(cols), 0
    carried = np.zeros((0, pair.width), np.float32)
    for r, (top, bottom) in enumerate(rows):
        blended = np.zeros((bottom - top, pair.width), np.float32)
        blended[: len(carried)] = carried
        valid = np.zeros((bottom - top, pair.width), bool)
        wy = _weights(rows, r, overlap)
        for c, (left, right) in enumerate(cols):
            r0, c0 = max(0, top - context), max(0, left - context)
            window = Window(c0, r0, min(pair.width, right + context) - c0, min(pair.height, bottom + context) - r0)
            a, b, ok = pair.read(window)
            core = (slice(top - r0, bottom - r0), slice(left - c0, right - c0))
            if ok[core].any():
                probability = detector.score(a, b, ok, gsd)[core]
                blended[:, left:right] += probability * np.outer(wy, _weights(cols, c, overlap))
            valid[:, left:right] = ok[core]
            done += 1
            if on_progress is not None:
                on_progress(TileDone(done, total))
        finished = rows[r + 1][0] - top if r + 1 < len(rows) else bottom - top
        sink.push(np.where(valid[:finished], np.clip(blended[:finished], 0.0, 1.0), 0.0), valid[:finished])
        carried = blended[finished:]
    return total


class _Rows:
    """Consecutive full-width rows ``[start, stop)`` of the scene, appended below and dropped above."""

    def __init__(self, width: int, dtype: type[np.generic]) -> None:
        self.data = np.zeros((0, width), dtype)
        self.start = 0

    @property
    def stop(self) -> int:
        return self.start + len(self.data)

    def append(self, rows: np.ndarray) -> None:
        self.data = np.concatenate([self.data, rows.astype(self.data.dtype, copy=False)])

    def get(self, start: int, stop: int) -> np.ndarray:
        return self.data[start - self.start : stop - self.start]

    def drop_before(self, row: int) -> None:
        if row > self.start:
            self.data = self.data[row - self.start :].copy()
            self.start = row


class _Sink:
    """Finished probability rows in; decided, cleaned, written and polygonised rows out (module steps 3–4)."""

    def __init__(
        self,
        detector: ChangeDetector,
        gsd: float | None,
        width: int,
        height: int,
        writers: list[DatasetWriter],
        georef: Georef | None,
    ) -> None:
        self.detector, self.gsd, self.height = detector, gsd, height
        self.reach = 4 * clean_radius_px(gsd) + 1  # opening then closing: four passes of the disk
        self.min_pixels = min_mapping_unit_px(gsd)
        self.probability, self.valid = _Rows(width, np.float32), _Rows(width, np.bool_)
        self.decided = _Rows(width, np.bool_)
        self.out = _BlockWriter(writers, height)
        self.regions = _Regions(self.min_pixels, georef, gsd)
        self.changed_pixels = 0
        self.done = 0  # rows finished: written and polygonised

    def push(self, probability: np.ndarray, valid: np.ndarray) -> None:
        """Take the next finished probability rows and emit every row they make final."""
        self.probability.append(probability)
        self.valid.append(valid)
        available = self.probability.stop
        decide_to = self.height if available == self.height else available - self.reach
        if decide_to > self.decided.stop:
            low = max(0, self.decided.stop - self.reach)
            mask = self.detector.decide(self.probability.get(low, available), self.valid.get(low, available), self.gsd)
            self.decided.append(mask[self.decided.stop - low : decide_to - low])
        clean_to = self.height if self.decided.stop == self.height else self.decided.stop - self.min_pixels
        if clean_to > self.done:
            low = max(0, self.done - self.min_pixels)
            block = _drop_small(
                self.decided.get(low, self.decided.stop),
                self.min_pixels,
                open_top=low > 0,
                open_bottom=self.decided.stop < self.height,
            )[self.done - low : clean_to - low]
            probability = self.probability.get(self.done, clean_to)
            self.out.write([probability, np.where(block, 255, 0).astype(np.uint8)])
            self.regions.add(block, probability, self.done, last=clean_to == self.height)
            self.changed_pixels += int(np.count_nonzero(block))
            self.done = clean_to
            self.decided.drop_before(self.done - self.min_pixels)
        keep = min(self.done, self.decided.stop - self.reach)
        self.probability.drop_before(keep)
        self.valid.drop_before(keep)


def _drop_small(mask: np.ndarray, min_pixels: int, *, open_top: bool, open_bottom: bool) -> np.ndarray:
    """MASK without its 8-connected regions under MIN_PIXELS, keeping those that touch an open edge
    (they continue beyond the rows given, so their size is not known here)."""
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    keep = stats[:, cv2.CC_STAT_AREA] >= min_pixels
    if open_top and len(labels):
        keep[labels[0]] = True
    if open_bottom and len(labels):
        keep[labels[-1]] = True
    keep[0] = False  # background
    result: np.ndarray = keep[labels] if count > 1 else np.zeros(mask.shape, bool)
    return result


class _BlockWriter:
    """Writes rows to each dataset in whole blocks of :data:`BLOCK_PX` rows, so that no compressed
    block is written twice."""

    def __init__(self, writers: list[DatasetWriter], height: int) -> None:
        self.writers, self.height = writers, height
        self.pending: list[list[np.ndarray]] = [[] for _ in writers]
        self.row = 0  # first row not yet written

    def write(self, rows: list[np.ndarray]) -> None:
        """Queue ROWS (one array per dataset; extra arrays are for datasets not asked for)."""
        for pending, data in zip(self.pending, rows[: len(self.pending)], strict=True):
            pending.append(data)
        count = sum(len(p) for p in self.pending[0])
        end = self.row + count
        flush = count if end == self.height else count - (end % BLOCK_PX)
        if flush <= 0:
            return
        for writer, pending in zip(self.writers, self.pending, strict=True):
            data = np.concatenate(pending)
            writer.write(data[:flush], 1, window=Window(0, self.row, data.shape[1], flush))
            pending[:] = [data[flush:]]
        self.row += flush


@dataclass
class _Piece:
    """Part of a region found in one block: its outline in pixel coordinates, pixels and summed probability."""

    geometry: BaseGeometry
    pixels: int
    probability: float


class _Regions:
    """Polygons of the changed regions, joined across blocks (module step 4)."""

    def __init__(self, min_pixels: int, georef: Georef | None, gsd: float | None) -> None:
        self.min_pixels, self.gsd = min_pixels, gsd
        self.transform = None if georef is None else georef.transform
        self.groups: dict[int, list[_Piece]] = {}  # open groups by id
        self.bottom = np.zeros(0, np.int64)  # group id under each pixel of the last row seen (0: none)
        self.next_id = 1
        self.found: list[ChangeRegion] = []

    def add(self, mask: np.ndarray, probability: np.ndarray, row: int, *, last: bool) -> None:
        """Polygonise MASK (rows from ROW), join its pieces to the groups open above, close the rest."""
        if not len(mask):
            return
        count, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=4)
        ids = np.arange(self.next_id - 1, self.next_id - 1 + count)
        ids[0] = 0
        self.next_id += count
        sums = np.bincount(labels.ravel(), weights=probability.ravel(), minlength=count)
        for geojson, value in shapes(labels, mask=labels > 0, connectivity=4, transform=Affine.translation(0, row)):
            k = int(value)
            self.groups[int(ids[k])] = [_Piece(shape(geojson), int(stats[k, cv2.CC_STAT_AREA]), float(sums[k]))]
        parent: dict[int, int] = {}

        def root(group: int) -> int:
            while parent.get(group, group) != group:
                group = parent[group]
            return group

        if len(self.bottom):
            top = ids[labels[0]]
            touching = (self.bottom > 0) & (top > 0)
            for above, below in set(zip(self.bottom[touching].tolist(), top[touching].tolist(), strict=True)):
                a, b = root(above), root(below)
                if a != b:
                    parent[b] = a
                    self.groups[a].extend(self.groups.pop(b))
        bottom = np.array([root(g) if g else 0 for g in ids[labels[-1]].tolist()], np.int64)
        alive = set() if last else set(bottom.tolist())
        for group in [g for g in self.groups if g not in alive]:
            self._close(self.groups.pop(group))
        self.bottom = bottom

    def _close(self, pieces: list[_Piece]) -> None:
        """One region from PIECES, in the raster's CRS, unless it is under the minimum mapping unit."""
        pixels = sum(p.pixels for p in pieces)
        if pixels < self.min_pixels:
            return
        geometry = pieces[0].geometry if len(pieces) == 1 else shapely.union_all([p.geometry for p in pieces])
        if self.transform is not None:
            t = self.transform
            geometry = affine_transform(geometry, [t.a, t.b, t.d, t.e, t.c, t.f])
        confidence = float(np.clip(sum(p.probability for p in pieces) / pixels, 0.0, 1.0))
        area_m2 = None if self.gsd is None else pixels * self.gsd * self.gsd
        self.found.append(ChangeRegion(geometry, pixels, area_m2, confidence))


@contextmanager
def _create(path: Path, pair: _Pair, dtype: str) -> Iterator[DatasetWriter]:
    """A single-band tiled, DEFLATE-compressed GeoTIFF on BEFORE's grid."""
    profile: dict[str, Any] = {
        "driver": "GTiff",
        "width": pair.width,
        "height": pair.height,
        "count": 1,
        "dtype": dtype,
        "tiled": True,
        "blockxsize": BLOCK_PX,
        "blockysize": BLOCK_PX,
        "compress": "deflate",
        "predictor": 3 if dtype == "float32" else 2,
        "BIGTIFF": "IF_SAFER",
    }
    if pair.georef is not None:
        profile.update(crs=CRS.from_wkt(pair.georef.crs.to_wkt()), transform=pair.georef.transform)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(path, "w", **profile) as dst:
            yield dst
