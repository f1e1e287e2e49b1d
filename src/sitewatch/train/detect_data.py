"""Training samples for the vehicle and container detector: DOTA imagery resampled to satellite GSDs,
augmented, with vehicles and containers synthesised into it.

The labelled vehicles at hand are few (four DOTA images at 0.12-0.14 m, about 470 vehicles) and no
labelled shipping-container set exists here, so every sample is drawn fresh:

* **GSD**: each window is taken from the image as a satellite of a random GSD (0.3-0.8 m) would see
  it (anti-aliased to that GSD) and then resampled to the network's 0.5 m, as inference resamples;
* **geometry**: random rotation, flip and a ±12 % zoom (GSDs in metadata are rarely exact);
* **look**: :func:`sitewatch.train.data.photometric` (gain, gamma, saturation, haze, blur, noise);
* **synthesis**: container stacks and rows (sitewatch's ``container`` class is learnt from these
  alone: 20 ft and 40 ft boxes, 2.44 m wide, corrugated, in the usual liveries) and cars and
  trucks (so the network also sees vehicle colours and layouts the four images lack), each with a
  shadow cast away from a random sun;
* **negatives**: DOTA images without vehicles (planes, ships, courts) are sampled as they are.

Objects marked difficult in DOTA (difficulty 1, or 2 for objects cut by a patch border) are
neither positives nor negatives: the loss ignores their footprint.

This module needs NumPy and OpenCV only: the training loop turns its arrays into tensors.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from sitewatch.detect.base import CONTAINER, LARGE, SMALL
from sitewatch.detect.dota import estimate_gsd, find_images
from sitewatch.detect.model import MODEL_CLASSES, MODEL_GSD, OUTPUT_STRIDE, normalise
from sitewatch.detect.sliced import scaling
from sitewatch.io.raster import read_array
from sitewatch.train.data import photometric

log = logging.getLogger(__name__)

#: Images are kept in memory at this GSD (finer than any simulated satellite): sampling is cheaper.
STORE_GSD_M = 0.25
#: Simulated satellite GSDs (metres), drawn log-uniformly.
SOURCE_GSD_M = (0.3, 0.8)

#: Container liveries (RGB on 0-1): rust, maroon, blue, green, grey, white, orange, yellow.
CONTAINER_COLOURS: tuple[tuple[float, float, float], ...] = (
    (0.55, 0.22, 0.15),
    (0.45, 0.12, 0.12),
    (0.15, 0.3, 0.55),
    (0.2, 0.45, 0.3),
    (0.55, 0.57, 0.58),
    (0.85, 0.85, 0.82),
    (0.85, 0.45, 0.12),
    (0.85, 0.72, 0.2),
)
#: Vehicle paint (RGB on 0-1): white, silver, black, grey, red, blue, dark green, beige.
VEHICLE_COLOURS: tuple[tuple[float, float, float], ...] = (
    (0.9, 0.9, 0.9),
    (0.7, 0.7, 0.72),
    (0.08, 0.08, 0.09),
    (0.4, 0.4, 0.42),
    (0.7, 0.1, 0.1),
    (0.15, 0.25, 0.6),
    (0.15, 0.3, 0.2),
    (0.75, 0.68, 0.55),
)


@dataclass(frozen=True)
class Box:
    """One object in a sample, in its pixels: centre, length >= width, heading (radians), class index.

    ``ignore`` marks objects the loss must neither reward nor punish (DOTA's difficult ones).
    """

    cx: float
    cy: float
    length: float
    width: float
    angle: float
    cls: int
    ignore: bool = False

    def corners(self) -> np.ndarray:
        """``(4, 2)`` corners in order around the box."""
        c, s = math.cos(self.angle), math.sin(self.angle)
        hl, hw = self.length / 2, self.width / 2
        offsets = np.array([(hl, hw), (-hl, hw), (-hl, -hw), (hl, -hw)])
        corners: np.ndarray = np.array([self.cx, self.cy]) + offsets @ np.array([[c, s], [-s, c]])
        return corners


def box_from_corners(corners: np.ndarray, cls: int, ignore: bool = False) -> Box:
    """The oriented box through four CORNERS (in order around it), as :class:`Box`."""
    centre = corners.mean(axis=0)
    side_a, side_b = corners[1] - corners[0], corners[2] - corners[1]
    len_a, len_b = float(np.hypot(*side_a)), float(np.hypot(*side_b))
    long_side = side_a if len_a >= len_b else side_b
    return Box(
        float(centre[0]),
        float(centre[1]),
        max(len_a, len_b),
        min(len_a, len_b),
        math.atan2(float(long_side[1]), float(long_side[0])),
        cls,
        ignore,
    )


@dataclass(frozen=True)
class Source:
    """One labelled image in memory at ``store_gsd`` (DOTA: :data:`STORE_GSD_M`), RGB scaled to 0-1."""

    image_id: str
    rgb: np.ndarray
    boxes: tuple[Box, ...]
    native_gsd: float
    store_gsd: float = STORE_GSD_M
    synthetic: bool = False

    @property
    def has_vehicles(self) -> bool:
        """Whether any scored vehicle is labelled in it (else it is a negative)."""
        return any(not b.ignore for b in self.boxes)


def load_sources(root: Path, exclude: Iterable[str] = ()) -> list[Source]:
    """Every DOTA image under ROOT except EXCLUDE (image ids), never reading the excluded ones.

    Raises:
        InputError: If ROOT holds no labelled image.
    """
    skip = set(exclude)
    sources = []
    for image in find_images(root):
        if image.image_id in skip:
            continue
        gsd = estimate_gsd(image)
        data, _ = read_array(image.image_path)
        unit = _unit(data[:3] if data.shape[0] >= 3 else np.repeat(data[:1], 3, axis=0))
        factor = gsd / STORE_GSD_M
        size = (max(1, round(unit.shape[2] * factor)), max(1, round(unit.shape[1] * factor)))
        method = cv2.INTER_AREA if factor < 1 else cv2.INTER_LINEAR
        stored = np.stack([cv2.resize(b, size, interpolation=method) for b in unit])
        boxes = []
        for obj in image.objects:
            if obj.cls not in MODEL_CLASSES:
                continue
            corners = (np.asarray(obj.corners, dtype=np.float64) + 0.5) * factor
            box = box_from_corners(corners, MODEL_CLASSES.index(obj.cls), obj.difficult)
            if box.width > 0:
                boxes.append(box)
        sources.append(Source(image.image_id, stored, tuple(boxes), gsd))
    return sources


def _unit(rgb: np.ndarray) -> np.ndarray:
    """RGB scaled to 0-1 by its 0.5th-99.5th percentiles per band, as inference scales it."""
    stats = scaling(rgb[:, ::4, ::4])
    low, high = stats[:, :1, None], stats[:, 1:, None]
    out: np.ndarray = np.clip((rgb.astype(np.float32) - low) / (high - low), 0, 1)
    return out


def demo_sources(seeds: Sequence[int], folder: Path) -> list[Source]:
    """The demo generator's clear scenes for SEEDS (rendered into FOLDER), with their true objects.

    Synthetic sites drawn by :mod:`sitewatch.demo.generator`: whole yards of trucks, cars and
    container stacks with their shadows, on the generator's ground. Seed 7 is the shipped demo
    and is refused, so the demo's own dates never train the model that counts them.
    """
    from sitewatch.demo.generator import generate

    if 7 in seeds:
        raise ValueError("seed 7 is the shipped demo site: train on other seeds")
    sources = []
    for seed in seeds:
        site = generate(folder / f"seed-{seed}", seed=seed)
        for scene in site.scenes:
            if scene.cloud_fraction > 0:
                continue  # clouds hide objects the truth still lists
            data, _ = read_array(scene.path)
            boxes = tuple(
                box_from_corners(np.asarray(o.corners_px, dtype=np.float64) + 0.5, MODEL_CLASSES.index(o.cls))
                for o in (*scene.vehicles, *scene.containers)
            )
            image_id = f"demo-seed-{seed}:{scene.acquired:%Y-%m-%d}"
            sources.append(Source(image_id, _unit(data[:3]), boxes, site.gsd, site.gsd, synthetic=True))
    return sources


@dataclass(frozen=True)
class Augment:
    """How samples are drawn; the defaults trained the shipped model."""

    crop: int = 256
    zoom: float = 0.12
    negative: float = 0.15
    demo: float = 0.2
    on_object: float = 0.5
    containers: float = 0.35
    vehicles: float = 0.3


@dataclass(frozen=True)
class Batch:
    """Normalised images ``(n, 3, s, s)`` and targets at the output stride ``(n, ., s/2, s/2)``."""

    image: np.ndarray
    heatmap: np.ndarray
    boxes: np.ndarray
    box_mask: np.ndarray
    weight: np.ndarray


class Sampler:
    """Draws augmented, partly synthesised samples from SOURCES; seeded, so runs are reproducible."""

    def __init__(self, sources: Sequence[Source], augment: Augment | None = None, seed: int = 0) -> None:
        """Split SOURCES into real images with vehicles, negatives and synthetic scenes."""
        self.positives = [s for s in sources if s.has_vehicles and not s.synthetic]
        self.negatives = [s for s in sources if not s.has_vehicles and not s.synthetic]
        self.synthetic = [s for s in sources if s.synthetic]
        if not self.positives:
            raise ValueError("no training image with vehicles to sample from")
        self.augment = augment or Augment()
        self.rng = np.random.default_rng(seed)

    def batch(self, size: int) -> Batch:
        """SIZE samples, stacked."""
        samples = [self.sample() for _ in range(size)]
        return Batch(*(np.stack([s[i] for s in samples]) for i in range(5)))

    def sample(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """One sample: normalised image, heatmap, box targets, box mask and heatmap weight."""
        rng, aug = self.rng, self.augment
        draw = rng.random()
        pool = self.positives
        if self.negatives and draw < aug.negative:
            pool = self.negatives
        elif self.synthetic and draw < aug.negative + aug.demo:
            pool = self.synthetic
        weights = np.array([s.rgb.shape[1] * s.rgb.shape[2] for s in pool], dtype=np.float64)
        source = pool[rng.choice(len(pool), p=weights / weights.sum())]
        image, boxes = self._window(source)
        if rng.random() < aug.containers:
            image, boxes = paste_containers(image, boxes, rng)
        if rng.random() < aug.vehicles:
            image, boxes = paste_vehicles(image, boxes, rng)
        image = np.clip(photometric(image, rng), 0.0, 1.0)
        return (normalise(image), *targets(boxes, aug.crop))

    def _window(self, source: Source) -> tuple[np.ndarray, list[Box]]:
        """A crop of SOURCE as a satellite of random GSD sees it, at the network's GSD, turned and flipped."""
        rng, crop = self.rng, self.augment.crop
        source_gsd = max(float(np.exp(rng.uniform(*np.log(SOURCE_GSD_M)))), source.store_gsd)
        scale = source.store_gsd / MODEL_GSD * float(np.exp(rng.uniform(-self.augment.zoom, self.augment.zoom)))
        angle = float(rng.uniform(0, 360))
        rows, cols = source.rgb.shape[1:]
        span = crop / scale  # stored pixels the crop covers
        reach = span * 0.75
        cx = float(rng.uniform(min(reach, cols / 2), max(cols - reach, cols / 2)))
        cy = float(rng.uniform(min(reach, rows / 2), max(rows - reach, rows / 2)))
        if source.has_vehicles and rng.random() < self.augment.on_object:  # often centred on an object
            box = source.boxes[rng.integers(len(source.boxes))]
            cx, cy = box.cx + float(rng.uniform(-span / 3, span / 3)), box.cy + float(rng.uniform(-span / 3, span / 3))
        matrix = np.asarray(cv2.getRotationMatrix2D((cx, cy), angle, scale), dtype=np.float64)
        matrix[:, 2] += np.array([crop / 2 - cx, crop / 2 - cy])
        if rng.random() < 0.5:
            matrix = np.array([[-1.0, 0.0, crop], [0.0, 1.0, 0.0]]) @ np.vstack([matrix, [0, 0, 1]])
        sigma = 0.45 * source_gsd / source.store_gsd  # the satellite's own blur, before sampling
        # Blur only the part of the image the crop covers (plus the blur's reach), not all of it.
        pad = int(span * 0.75 + 4 * sigma) + 2
        r0, c0 = max(0, int(cy) - pad), max(0, int(cx) - pad)
        part = source.rgb[:, r0 : int(cy) + pad, c0 : int(cx) + pad]
        blurred = np.stack([cv2.GaussianBlur(b, (0, 0), sigma) for b in part])
        coarse = max(8, round(crop * MODEL_GSD / source_gsd))
        shift = np.array([[1.0, 0.0, c0], [0.0, 1.0, r0], [0.0, 0.0, 1.0]])  # part -> stored pixels
        to_coarse = np.diag([coarse / crop, coarse / crop, 1.0]) @ np.vstack([matrix, [0, 0, 1]]) @ shift
        low = np.stack(
            [cv2.warpAffine(b, to_coarse[:2], (coarse, coarse), borderMode=cv2.BORDER_REFLECT) for b in blurred]
        )
        image = np.stack([cv2.resize(b, (crop, crop), interpolation=cv2.INTER_LINEAR) for b in low])
        boxes = []
        for box in source.boxes:
            corners = np.hstack([box.corners(), np.ones((4, 1))]) @ matrix.T
            moved = box_from_corners(corners, box.cls, box.ignore)
            if -moved.length < moved.cx < crop + moved.length and -moved.length < moved.cy < crop + moved.length:
                boxes.append(moved)
        return image.astype(np.float32), boxes


def targets(boxes: Sequence[Box], crop: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Heatmap ``(C, h, w)``, box targets ``(6, h, w)``, box mask ``(h, w)`` and heatmap weight ``(h, w)``.

    The heatmap is an oriented Gaussian per object (standard deviations a sixth of its length and
    width in output cells, at least 0.6), so neighbouring parked cars keep separate peaks. Box
    targets are set at the centre cell: sub-cell offset, log length and width (network pixels),
    cos 2θ and sin 2θ. Ignored objects zero the heatmap weight over their footprint.
    """
    size = crop // OUTPUT_STRIDE
    heatmap = np.zeros((len(MODEL_CLASSES), size, size), np.float32)
    regression = np.zeros((6, size, size), np.float32)
    mask = np.zeros((size, size), np.float32)
    weight = np.ones((size, size), np.float32)
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    for box in boxes:
        u, v = (box.cx + 0.5) / OUTPUT_STRIDE, (box.cy + 0.5) / OUTPUT_STRIDE  # cell units, edge-based
        if box.ignore:
            corners = (box.corners() + 0.5) / OUTPUT_STRIDE - 0.5
            cv2.fillConvexPoly(weight, np.round(corners).astype(np.int32), 0.0)
            continue
        if not (0 <= u < size and 0 <= v < size):
            continue
        c, s = math.cos(box.angle), math.sin(box.angle)
        sl = max(0.6, box.length / OUTPUT_STRIDE / 6)
        sw = max(0.6, box.width / OUTPUT_STRIDE / 6)
        reach = int(3 * max(sl, sw)) + 2  # the Gaussian is negligible beyond three deviations
        rows = slice(max(0, int(v) - reach), min(size, int(v) + reach + 1))
        cols = slice(max(0, int(u) - reach), min(size, int(u) + reach + 1))
        dx, dy = xs[rows, cols] - u, ys[rows, cols] - v
        along, across = dx * c + dy * s, -dx * s + dy * c
        gauss = np.exp(-0.5 * ((along / sl) ** 2 + (across / sw) ** 2))
        np.maximum(heatmap[box.cls, rows, cols], gauss, out=heatmap[box.cls, rows, cols])
        j, i = int(u), int(v)
        heatmap[box.cls, i, j] = 1.0
        regression[:, i, j] = (
            u - j,
            v - i,
            math.log(box.length),
            math.log(max(box.width, 1.0)),
            math.cos(2 * box.angle),
            math.sin(2 * box.angle),
        )
        mask[i, j] = 1.0
    return heatmap, regression, mask, weight


def _shadowed(image: np.ndarray, polygon: np.ndarray, offset: np.ndarray, depth: float) -> None:
    """Darken IMAGE under POLYGON moved by OFFSET (a cast shadow), in place."""
    cover = np.zeros(image.shape[1:], np.float32)
    cv2.fillConvexPoly(cover, np.round((polygon + offset) * 4).astype(np.int32), 1.0, cv2.LINE_AA, 2)
    image *= 1 - depth * cv2.GaussianBlur(cover, (0, 0), 0.7)


def _fill(image: np.ndarray, polygon: np.ndarray, colour: Sequence[float] | np.ndarray) -> None:
    """Paint POLYGON (sub-pixel, anti-aliased) with COLOUR on IMAGE, in place."""
    cover = np.zeros(image.shape[1:], np.float32)
    cv2.fillConvexPoly(cover, np.round(polygon * 4).astype(np.int32), 1.0, cv2.LINE_AA, 2)
    for band in range(3):
        image[band] = image[band] * (1 - cover) + colour[band] * cover


def _rect(cx: float, cy: float, length: float, width: float, angle: float, a0: float = -1, a1: float = 1) -> np.ndarray:
    """Corners of the part of a box between fractions A0 and A1 of its half-length, in pixels."""
    c, s = math.cos(angle), math.sin(angle)
    hl, hw = length / 2, width / 2
    pts = np.array([(a0 * hl, -hw), (a1 * hl, -hw), (a1 * hl, hw), (a0 * hl, hw)])
    corners: np.ndarray = np.array([cx, cy]) + pts @ np.array([[c, s], [-s, c]])
    return corners


def _free(boxes: Sequence[Box], cx: float, cy: float, radius: float) -> bool:
    return all(math.hypot(b.cx - cx, b.cy - cy) > radius + b.length / 2 for b in boxes)


def paste_containers(image: np.ndarray, boxes: list[Box], rng: np.random.Generator) -> tuple[np.ndarray, list[Box]]:
    """IMAGE with a block of shipping containers (rows side by side, 20 or 40 ft), and their boxes."""
    image = image.copy()
    px = 1 / MODEL_GSD
    length = (6.06 if rng.random() < 0.5 else 12.19) * px
    width = 2.44 * px
    rows_n, cols_n = int(rng.integers(1, 5)), int(rng.integers(1, 4))
    angle = float(rng.uniform(0, math.pi))
    c, s = math.cos(angle), math.sin(angle)
    crop = image.shape[1]
    ox, oy = rng.uniform(0.15, 0.85, size=2) * crop
    if not _free(boxes, ox, oy, max(rows_n * width, cols_n * length)):
        return image, boxes
    sun = rng.uniform(0, 2 * math.pi)
    shadow = np.array([math.cos(sun), math.sin(sun)]) * float(rng.uniform(1.0, 4.0)) * px
    gap = float(rng.uniform(0.2, 0.8)) * px
    placed = []
    for r in range(rows_n):
        for k in range(cols_n):
            along, across = k * (length + gap), r * (width + gap)
            cx, cy = ox + along * c - across * s, oy + along * s + across * c
            if not (4 < cx < crop - 4 and 4 < cy < crop - 4):
                continue
            placed.append(Box(cx, cy, length, width, angle, MODEL_CLASSES.index(CONTAINER)))
    for box in placed:
        _shadowed(image, box.corners(), shadow, float(rng.uniform(0.3, 0.6)))
    for box in placed:
        colour = np.array(CONTAINER_COLOURS[rng.integers(len(CONTAINER_COLOURS))]) * float(rng.uniform(0.8, 1.15))
        _fill(image, box.corners(), colour)
        ribs = int(box.length / 1.5)
        for rib in range(1, ribs):  # corrugation: thin darker bands across the roof
            a = -1 + 2 * rib / ribs
            _fill(image, _rect(box.cx, box.cy, box.length, box.width, angle, a - 0.02, a + 0.02), colour * 0.85)
    return image, boxes + placed


def paste_vehicles(image: np.ndarray, boxes: list[Box], rng: np.random.Generator) -> tuple[np.ndarray, list[Box]]:
    """IMAGE with a few cars (in a row, as parked) and trucks drawn in, and their boxes."""
    image = image.copy()
    px = 1 / MODEL_GSD
    crop = image.shape[1]
    sun = rng.uniform(0, 2 * math.pi)
    shadow_dir = np.array([math.cos(sun), math.sin(sun)])
    placed: list[Box] = []
    for _ in range(int(rng.integers(1, 4))):
        truck = rng.random() < 0.35
        length = (float(rng.uniform(8.0, 16.5)) if truck else float(rng.uniform(3.8, 5.2))) * px
        width = (float(rng.uniform(2.3, 2.6)) if truck else float(rng.uniform(1.6, 2.0))) * px
        angle = float(rng.uniform(0, 2 * math.pi))
        count = 1 if truck else int(rng.integers(1, 6))
        step = width + float(rng.uniform(0.6, 1.5)) * px
        ox, oy = rng.uniform(0.1, 0.9, size=2) * crop
        for k in range(count):
            cx, cy = ox - k * step * math.sin(angle), oy + k * step * math.cos(angle)
            if not (4 < cx < crop - 4 and 4 < cy < crop - 4) or not _free(boxes + placed, cx, cy, length / 2):
                continue
            cls = MODEL_CLASSES.index(LARGE if truck else SMALL)
            box = Box(cx, cy, length, width, angle % math.pi, cls)
            height = (3.5 if truck else 1.5) * px
            _shadowed(image, box.corners(), shadow_dir * height * float(rng.uniform(0.4, 1.2)), 0.5)
            paint = np.array(VEHICLE_COLOURS[rng.integers(len(VEHICLE_COLOURS))]) * float(rng.uniform(0.85, 1.1))
            _fill(image, box.corners(), paint)
            if truck:
                cab = 2.4 * px / length
                cab_colour = np.array(VEHICLE_COLOURS[rng.integers(len(VEHICLE_COLOURS))])
                _fill(image, _rect(cx, cy, length, width, angle, 1 - 2 * cab, 1), cab_colour)
            else:  # windscreen and rear window read as darker bands
                _fill(image, _rect(cx, cy, length, width * 0.85, angle, 0.25, 0.5), paint * 0.35)
                _fill(image, _rect(cx, cy, length, width * 0.85, angle, -0.75, -0.6), paint * 0.45)
            placed.append(box)
    return image, boxes + placed
