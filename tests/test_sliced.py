"""The sliced runner: slices, merging, GSD, bands and files, with a small real detector of bright boxes."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import cv2
import numpy as np
import pytest
from affine import Affine

from sitewatch.detect.base import ObjectDetector
from sitewatch.detect.boxes import Detection, oriented_iou
from sitewatch.detect.sliced import detect_array, detect_file
from sitewatch.errors import GeoreferenceError
from tests.conftest import write_tif

GROUND, BRIGHT = 60, 220


class BrightBoxes(ObjectDetector):
    """Every bright blob (mean RGB over 0.5) as its minimum-area box, covering whole pixels.

    Not registered: the registry is the product's, this detector only the tests'.
    """

    name = "bright-boxes"
    classes: ClassVar[tuple[str, ...]] = ("thing",)
    work_gsd = 0.5
    max_gsd = 1.2
    context_px = 32

    def __init__(self) -> None:
        super().__init__()
        self.tiles: list[tuple[int, int]] = []

    def detect_tile(self, rgb: np.ndarray) -> list[Detection]:
        """Bright blobs in one tile; the box of a blob of pixel centres grows by half a pixel a side."""
        assert rgb.dtype == np.float32 and rgb.shape[0] == 3 and rgb.min() >= 0 and rgb.max() <= 1
        self.tiles.append(rgb.shape[1:])
        mask = np.asarray(rgb.mean(axis=0) > 0.5, dtype=np.uint8)
        count, labels = cv2.connectedComponents(mask, connectivity=8)
        found = []
        for label in range(1, count):
            ys, xs = np.nonzero(labels == label)
            (cx, cy), (w, h), angle = cv2.minAreaRect(np.column_stack([xs, ys]).astype(np.float32))
            corners = cv2.boxPoints(((cx, cy), (w + 1, h + 1), angle))
            found.append(Detection(tuple((float(x), float(y)) for x, y in corners), "thing", 0.9))
        return found


def _scene(rows: int, cols: int, rects: list[tuple[int, int, int, int]], bands: int = 3) -> np.ndarray:
    """A ``(bands, rows, cols)`` uint8 image of GROUND with BRIGHT rectangles (col0, row0, col1, row1), inclusive.

    The ground is flat: the runner stretches the 0.5th-99.5th percentiles to 0-1, so noisy ground
    with few bright pixels would fill the whole range and speckle this detector's threshold.
    """
    image = np.full((rows, cols), GROUND, np.uint8)
    for c0, r0, c1, r1 in rects:
        image[r0 : r1 + 1, c0 : c1 + 1] = BRIGHT
    return np.repeat(image[np.newaxis], bands, axis=0)


def _extent(d: Detection) -> tuple[float, float, float, float]:
    xs, ys = zip(*d.corners, strict=True)
    return min(xs), min(ys), max(xs), max(ys)


def _edges(rect: tuple[int, int, int, int]) -> tuple[float, float, float, float]:
    """The pixel edges of an inclusive (col0, row0, col1, row1) rectangle, pixel centres at whole numbers."""
    c0, r0, c1, r1 = rect
    return c0 - 0.5, r0 - 0.5, c1 + 0.5, r1 + 0.5


def test_an_object_across_slice_edges_is_reported_once() -> None:
    # slice_px 128 at the detector's own GSD: slice cores start at multiples of 128 source pixels
    rects = [
        (120, 40, 139, 47),  # across the column edge at 128
        (40, 250, 47, 269),  # across the row edge at 256
        (250, 375, 265, 390),  # across both, at the corner (256, 384)
        (300, 300, 311, 307),  # inside one core
    ]
    detector = BrightBoxes()
    result = detect_array(_scene(512, 512, rects), 0.5, detector, slice_px=128)
    assert result.resolvable and result.slices == 16
    assert len(result.detections) == len(rects)
    for rect in rects:
        (hit,) = [d for d in result.detections if np.allclose(_extent(d), _edges(rect), atol=0.01)]
        assert hit.cls == "thing" and hit.score == 0.9
    # slices overlap by the detector's context, so the tiles are larger than their cores
    assert max(detector.tiles) == (128 + 2 * 32, 128 + 2 * 32)


def test_slicing_does_not_change_what_is_found() -> None:
    rng = np.random.default_rng(1)
    rects = []
    for row in range(20, 580, 37):
        for col in range(15, 580, 41):
            w, h = (int(v) for v in rng.integers(4, 24, 2))
            rects.append((col, row, col + w, row + min(h, 30)))
    image = _scene(620, 620, rects)
    whole = detect_array(image, 0.5, BrightBoxes(), slice_px=4096)
    sliced = detect_array(image, 0.5, BrightBoxes(), slice_px=100)
    assert whole.slices == 1 and sliced.slices == 49
    assert len(whole.detections) == len(sliced.detections) == len(rects)
    for d in sliced.detections:
        assert max(oriented_iou(d.corners, w.corners) for w in whole.detections) > 0.99


@pytest.mark.parametrize(
    ("gsd", "rect", "tolerance"),
    [
        # finer than the detector's 0.5 m, area averaged down; edges on working pixel edges: exact
        (0.25, (300, 402, 339, 417), 0.01),
        (0.3, (301, 211, 340, 226), 1.0),  # 0.6 working pixels a source pixel: edges within one
        (1.0, (100, 50, 119, 57), 0.01),  # coarser, bilinear up: the 0.5 threshold falls on the edges
        (0.5, (100, 50, 119, 57), 0.01),  # the detector's own GSD: no resampling
    ],
)
def test_boxes_map_back_to_source_pixels(gsd: float, rect: tuple[int, int, int, int], tolerance: float) -> None:
    # A large bright block far away puts the 99.5th percentile on BRIGHT, so the stretch is linear
    # between GROUND and BRIGHT (one small rectangle alone would saturate it, and area-averaged edge
    # pixels would then read as bright).
    block = (700, 600, 779, 679)
    result = detect_array(_scene(700, 800, [rect, block]), gsd, BrightBoxes(), slice_px=256)
    assert len(result.detections) == 2
    c0, r0, c1, r1 = rect
    found = min(result.detections, key=lambda d: abs(d.centre[0] - (c0 + c1) / 2) + abs(d.centre[1] - (r0 + r1) / 2))
    assert np.allclose(_extent(found), _edges(rect), atol=tolerance), (_extent(found), _edges(rect))
    # sizes within one working pixel (the detector sees whole working pixels)
    working_px = max(1.0, BrightBoxes.work_gsd / gsd)
    length, width = found.size_px()
    assert length == pytest.approx(max(c1 - c0, r1 - r0) + 1, abs=working_px)
    assert width == pytest.approx(min(c1 - c0, r1 - r0) + 1, abs=working_px)


def test_coarse_gsd_is_not_resolvable() -> None:
    detector = BrightBoxes()
    result = detect_array(_scene(100, 100, [(10, 10, 30, 20)]), 3.0, detector)
    assert not result.resolvable and result.detections == [] and result.slices == 0
    assert "3.00 m" in result.reason and "1.2 m" in result.reason and "thing" in result.reason
    assert result.counts() == {"thing": 0}
    assert detector.tiles == []  # the detector never ran


def test_single_band_image_is_seen_as_grey() -> None:
    rects = [(20, 30, 39, 37), (70, 60, 77, 79)]
    rgb = detect_array(_scene(128, 128, rects), 0.5, BrightBoxes())
    for image in (_scene(128, 128, rects, bands=1), _scene(128, 128, rects, bands=1)[0]):
        grey = detect_array(image, 0.5, BrightBoxes())
        assert [d.corners for d in grey.detections] == [d.corners for d in rgb.detections]
    assert rgb.counts() == {"thing": 2}


def test_file_read_in_windows_equals_the_array(tmp_path: Path) -> None:
    rects = [(20, 30, 39, 37), (250, 260, 269, 267), (500, 100, 507, 119), (130, 500, 142, 508)]
    image = _scene(600, 560, rects)
    path = write_tif(
        tmp_path / "scene.tif",
        image,
        crs="EPSG:32615",
        transform=Affine(0.5, 0, 367000.0, 0, -0.5, 4104000.0),
        tiled=True,
        blockxsize=128,
        blockysize=128,
    )
    from_file = detect_file(path, None, BrightBoxes(), slice_px=200)  # GSD from the georeference
    from_array = detect_array(image, 0.5, BrightBoxes(), slice_px=200)
    assert from_file.gsd == pytest.approx(0.5) and from_file.slices == from_array.slices == 9
    assert from_file.detections == from_array.detections and len(from_file.detections) == len(rects)


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
def test_file_without_georeference_needs_a_gsd(tmp_path: Path) -> None:
    path = tmp_path / "plain.tif"
    write_tif(path, _scene(64, 64, [(10, 10, 29, 17)]))
    with pytest.raises(GeoreferenceError, match="--gsd"):
        detect_file(path, None, BrightBoxes())
    assert len(detect_file(path, 0.5, BrightBoxes()).detections) == 1
