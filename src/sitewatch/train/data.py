"""Training samples for the siamese change network: real labelled pairs and changes synthesised into them.

The labelled pairs are few (5 LEVIR-CD, 8 SZTAKI, 4 OSCD in ``shared/datasets``), so every sample is
drawn fresh and heavily augmented, and a share of them is synthesised from the same real imagery:

* **real**: a random window of a labelled pair (any of the three datasets, equally often), rescaled
  by a random zoom (the GSDs differ 20-fold), rotated and flipped, AFTER moved by a sub-pixel
  misregistration, each date with its own brightness, contrast, gamma, colour, haze, blur and noise,
  and the dates swapped half the time (construction and demolition are both change);
* **paste**: one window as both dates with objects pasted into AFTER (changed regions cut from other
  pairs, rescaled to the target's GSD, and textured polygons): the label is the pasted region;
* **same**: one window as both dates with only photometric and misregistration differences and an
  empty label, which teaches what must *not* read as change.

Pairs are read with sitewatch's own loaders (:func:`~sitewatch.eval.change.find_pairs`,
:func:`~sitewatch.change.pair.load_pair`, so alignment is as at inference) and reduced to RGB
(Sentinel-2 B04, B03, B02). Each date is finally normalised with
:func:`sitewatch.change.siamese.normalise`, the function the detector runs. A pair left out of
training (``exclude``) is never read, so no synthesised sample can leak it.

This module needs NumPy and OpenCV only: the training loop turns its arrays into tensors.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import cv2
import numpy as np

from sitewatch.change.siamese import date_stats, normalise
from sitewatch.eval.change import find_pairs, read_label

log = logging.getLogger(__name__)

#: GSD of each layout in metres; LEVIR-CD and SZTAKI PNGs carry no georeference.
GSD_M: dict[str, float] = {"levir-cd": 0.5, "sztaki": 1.5, "oscd": 10.0}

SampleKind = Literal["real", "paste", "same"]


def held_out(ids: Iterable[str], folds: int, fold: int) -> set[str]:
    """The ids fold FOLD of FOLDS leaves out: every FOLDS-th id, by sorted id, per dataset."""
    by_dataset: dict[str, list[str]] = {}
    for pid in sorted(set(ids)):
        by_dataset.setdefault(pid.split(":", 1)[0], []).append(pid)
    return {pid for group in by_dataset.values() for i, pid in enumerate(group) if i % folds == fold}


@dataclass(frozen=True)
class Source:
    """One labelled pair in memory, each date scaled to about 0-1 (for the photometric augmentation).

    Attributes:
        pair_id: the pair's :attr:`~sitewatch.eval.change.LabelledPair.id`.
        layout: its dataset layout.
        before: float32 ``(3, rows, cols)``, RGB.
        after: float32 ``(3, rows, cols)``, RGB, aligned onto BEFORE.
        label: bool ``(rows, cols)``.
        valid: bool ``(rows, cols)``.
        gsd: metres per pixel.
    """

    pair_id: str
    layout: str
    before: np.ndarray
    after: np.ndarray
    label: np.ndarray
    valid: np.ndarray
    gsd: float

    @property
    def pixels(self) -> int:
        """Pixel count, for sampling pairs in proportion to their area."""
        return int(self.label.size)


@dataclass(frozen=True)
class Patch:
    """A changed region cut from a pair's AFTER, to paste elsewhere: RGB ``(3, h, w)`` and its mask."""

    image: np.ndarray
    mask: np.ndarray
    gsd: float


def load_sources(root: Path, exclude: set[str] | frozenset[str] = frozenset()) -> list[Source]:
    """Every labelled pair under ROOT whose id is not in EXCLUDE, read and reduced to RGB as detectors see it."""
    from sitewatch.change.pair import load_pair

    sources = []
    for pair in find_pairs(root):
        pid = pair.id
        if pid in exclude:
            continue
        loaded = load_pair(pair.before, pair.after, gsd=GSD_M[pair.layout]).as_rgb()
        before, after, valid = loaded.before, loaded.after, loaded.valid
        sources.append(
            Source(
                pid,
                pair.layout,
                _unit_scale(before, valid),
                _unit_scale(after, valid),
                read_label(pair.label) & valid,
                valid,
                loaded.gsd or GSD_M[pair.layout],
            )
        )
        log.info("training pair %s: %dx%d", pid, before.shape[2], before.shape[1])
    return sources


def _unit_scale(image: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Each band from its 0.5th-99.5th percentile to 0-1 (not clipped above), so that 8-bit PNGs and
    16-bit Sentinel-2 reflectance take the same photometric augmentation."""
    low, high = np.percentile(image[:, valid], [0.5, 99.5], axis=1)
    scaled = (image - low[:, None, None]) / np.maximum(high - low, 1e-6)[:, None, None]
    out: np.ndarray = np.maximum(scaled, 0.0).astype(np.float32)
    return out


def cut_patches(sources: Iterable[Source], min_px: int = 24, max_px: int = 40_000) -> list[Patch]:
    """The labelled changed regions of each source's AFTER as pasteable patches."""
    patches = []
    for source in sources:
        count, labels, stats, _ = cv2.connectedComponentsWithStats(source.label.astype(np.uint8), connectivity=8)
        for index in range(1, count):
            x, y, w, h, area = (int(v) for v in stats[index])
            if not min_px <= area <= max_px:
                continue
            mask = labels[y : y + h, x : x + w] == index
            patches.append(Patch(source.after[:, y : y + h, x : x + w].copy(), mask, source.gsd))
    return patches


@dataclass(frozen=True)
class Augment:
    """How samples are drawn; the defaults are what the shipped model was trained with."""

    crop: int = 192
    kinds: dict[SampleKind, float] = field(default_factory=lambda: {"real": 0.6, "paste": 0.25, "same": 0.15})
    zoom: tuple[float, float] = (0.6, 1.3)  # output px per source px: GSD rescaling
    misregister_px: float = 1.0
    max_objects: int = 6
    stats_jitter: float = 0.1  # relative error of the normalisation statistics (tiles see scene stats)


@dataclass(frozen=True)
class Batch:
    """Normalised dates ``(n, 3, s, s)``, label and weight ``(n, s, s)``, all float32."""

    before: np.ndarray
    after: np.ndarray
    label: np.ndarray
    weight: np.ndarray


class Sampler:
    """Draws augmented samples from SOURCES; seeded, so a training run is reproducible."""

    def __init__(self, sources: list[Source], augment: Augment | None = None, seed: int = 0) -> None:
        """Group SOURCES by dataset and cut their changed regions for pasting."""
        if not sources:
            raise ValueError("no training pairs to sample from")
        self.augment = augment or Augment()
        self.rng = np.random.default_rng(seed)
        self.sources = sources
        self.by_layout: dict[str, list[Source]] = {}
        for source in sources:
            self.by_layout.setdefault(source.layout, []).append(source)
        self.layouts = sorted(self.by_layout)
        self.patches = cut_patches(sources)

    def batch(self, size: int) -> Batch:
        """SIZE samples stacked."""
        samples = [self.sample() for _ in range(size)]
        return Batch(*(np.stack([s[i] for s in samples]) for i in range(4)))

    def sample(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """One sample: normalised BEFORE and AFTER, label and weight (the valid pixels)."""
        rng, aug = self.rng, self.augment
        kinds = list(aug.kinds)
        kind = kinds[rng.choice(len(kinds), p=np.array([aug.kinds[k] for k in kinds]) / sum(aug.kinds.values()))]
        source = self._pick_source()
        zoom = float(np.exp(rng.uniform(*np.log(aug.zoom))))
        before, after, label, valid = self._window(source, zoom)
        if kind != "real":
            after = before.copy()
            label = np.zeros_like(label)
            if kind == "paste":
                after, label = self._paste(after, label, source.gsd / zoom)
        after, moved = self._misregister(after)
        valid &= moved
        if rng.random() < 0.5:
            before, after = after, before
        before, after = self._photometric(before), self._photometric(after)
        return (
            self._normalise(before, valid),
            self._normalise(after, valid),
            label.astype(np.float32),
            valid.astype(np.float32),
        )

    def _pick_source(self) -> Source:
        """A dataset uniformly, then a pair of it in proportion to its area."""
        group = self.by_layout[self.layouts[self.rng.integers(len(self.layouts))]]
        weights = np.array([s.pixels for s in group], dtype=np.float64)
        return group[self.rng.choice(len(group), p=weights / weights.sum())]

    def _window(self, source: Source, zoom: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """A random window of SOURCE at ZOOM, resized to the crop size, rotated and flipped."""
        rng, crop = self.rng, self.augment.crop
        rows, cols = source.label.shape
        side = min(round(crop / zoom), rows, cols)
        y, x = int(rng.integers(rows - side + 1)), int(rng.integers(cols - side + 1))
        window = (slice(y, y + side), slice(x, x + side))
        interp = cv2.INTER_AREA if side > crop else cv2.INTER_LINEAR

        def resize(image: np.ndarray, method: int) -> np.ndarray:
            out: np.ndarray = cv2.resize(image, (crop, crop), interpolation=method)
            return out

        before = np.stack([resize(band[window], interp) for band in source.before])
        after = np.stack([resize(band[window], interp) for band in source.after])
        label = resize(source.label[window].astype(np.float32), cv2.INTER_LINEAR) > 0.5
        valid = resize(source.valid[window].astype(np.float32), cv2.INTER_LINEAR) > 0.99
        k, flip = int(rng.integers(4)), bool(rng.integers(2))

        def orient(image: np.ndarray) -> np.ndarray:
            image = np.rot90(image, k, axes=(-2, -1))
            return np.ascontiguousarray(image[..., ::-1] if flip else image)

        return orient(before), orient(after), orient(label), orient(valid)

    def _paste(self, image: np.ndarray, label: np.ndarray, gsd: float) -> tuple[np.ndarray, np.ndarray]:
        """Objects pasted into IMAGE (at GSD metres): real changed regions and textured polygons."""
        rng = self.rng
        for _ in range(int(rng.integers(1, self.augment.max_objects + 1))):
            if self.patches and rng.random() < 0.6:
                patch, mask = self._real_patch(gsd)
            else:
                patch, mask = self._polygon_patch(image, gsd)
            h, w = mask.shape
            crop = image.shape[1]
            if h >= crop or w >= crop or mask.sum() < 4:
                continue
            y, x = int(rng.integers(crop - h)), int(rng.integers(crop - w))
            alpha = cv2.GaussianBlur(mask.astype(np.float32), (0, 0), 0.6)
            region = image[:, y : y + h, x : x + w]
            image[:, y : y + h, x : x + w] = region * (1 - alpha) + patch * alpha
            label[y : y + h, x : x + w] |= mask
        return image, label

    def _real_patch(self, gsd: float) -> tuple[np.ndarray, np.ndarray]:
        """A changed region of another pair, rescaled from its GSD to GSD, rotated and flipped."""
        rng = self.rng
        patch = self.patches[int(rng.integers(len(self.patches)))]
        scale = patch.gsd / gsd * float(np.exp(rng.uniform(-0.2, 0.2)))
        h, w = patch.mask.shape
        size = (max(2, round(w * scale)), max(2, round(h * scale)))
        image = np.stack([cv2.resize(band, size, interpolation=cv2.INTER_LINEAR) for band in patch.image])
        mask = cv2.resize(patch.mask.astype(np.float32), size, interpolation=cv2.INTER_LINEAR) > 0.5
        k = int(rng.integers(4))
        image, mask = np.rot90(image, k, axes=(1, 2)), np.rot90(mask, k)
        gain = float(np.exp(rng.normal(0.0, 0.15)))
        return np.ascontiguousarray(image) * gain, np.ascontiguousarray(mask)

    def _polygon_patch(self, image: np.ndarray, gsd: float) -> tuple[np.ndarray, np.ndarray]:
        """A rotated rectangle of 6-40 m (a roof, a slab, a yard), textured from elsewhere in IMAGE."""
        rng, crop = self.rng, image.shape[1]
        side_m = rng.uniform(6.0, 40.0, size=2)
        w, h = (int(np.clip(s / gsd, 3, crop // 3)) for s in side_m)
        box = int(np.ceil(np.hypot(w, h))) + 2
        mask = np.zeros((box, box), dtype=np.uint8)
        corners = cv2.boxPoints(((box / 2, box / 2), (w, h), float(rng.uniform(0, 180))))
        cv2.fillPoly(mask, [np.round(corners).astype(np.int32)], 1)
        if box >= crop:
            return np.zeros((3, box, box), np.float32), mask.astype(bool)
        y, x = int(rng.integers(crop - box)), int(rng.integers(crop - box))
        texture = image[:, y : y + box, x : x + box]
        shade = rng.uniform(0.0, 1.0, size=(3, 1, 1)).astype(np.float32)
        mix = float(rng.uniform(0.3, 0.9))
        patch = texture * (1 - mix) + shade * mix  # a new surface: part texture, part flat colour
        return patch.astype(np.float32), mask.astype(bool)

    def _misregister(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """IMAGE moved by up to ``misregister_px`` in each direction (bilinear), with its still-valid pixels."""
        limit = self.augment.misregister_px
        dx, dy = self.rng.uniform(-limit, limit, size=2)
        matrix = np.array([[1.0, 0.0, dx], [0.0, 1.0, dy]], dtype=np.float32)
        size = (image.shape[2], image.shape[1])
        moved = np.stack([cv2.warpAffine(band, matrix, size, borderMode=cv2.BORDER_REFLECT) for band in image])
        ones = np.ones(image.shape[1:], dtype=np.uint8)
        inside: np.ndarray = cv2.warpAffine(ones, matrix, size, flags=cv2.INTER_NEAREST, borderValue=0) > 0
        return moved, inside

    def _photometric(self, image: np.ndarray) -> np.ndarray:
        return photometric(image, self.rng)

    def _normalise(self, image: np.ndarray, valid: np.ndarray) -> np.ndarray:
        """The detector's normalisation, with statistics of the window (jittered: a tile of a large
        scene is normalised with the scene's statistics, not its own)."""
        stats = date_stats(image[:, ::2, ::2], valid[::2, ::2])
        jitter = self.augment.stats_jitter
        stats[:, 0] += self.rng.normal(0.0, jitter, size=3) * stats[:, 1]
        stats[:, 1] *= np.exp(self.rng.normal(0.0, jitter, size=3))
        out = normalise(image, stats)
        out[:, ~valid] = 0.0
        return out


def photometric(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One look of ``(3, H, W)`` IMAGE on about 0-1: gain per band, brightness, gamma, saturation,
    haze, blur and noise (another date, sensor or processing of the same ground)."""
    image = image * np.exp(rng.normal(0.0, 0.08, size=(3, 1, 1))) * float(np.exp(rng.normal(0.0, 0.2)))
    image = np.maximum(image + float(rng.uniform(-0.08, 0.08)), 0.0) ** float(np.exp(rng.uniform(-0.35, 0.35)))
    grey = image.mean(axis=0, keepdims=True)
    image = grey + (image - grey) * float(rng.uniform(0.6, 1.3))
    if rng.random() < 0.2:
        haze = float(rng.uniform(0.05, 0.35))
        image = image * (1 - haze) + haze * float(rng.uniform(0.6, 1.0))
    if rng.random() < 0.25:
        sigma = float(rng.uniform(0.3, 1.2))
        image = np.stack([cv2.GaussianBlur(band, (0, 0), sigma) for band in image])
    if rng.random() < 0.5:
        image = image + rng.normal(0.0, rng.uniform(0.0, 0.03), size=image.shape)
    out: np.ndarray = image.astype(np.float32)
    return out
