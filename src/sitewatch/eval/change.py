"""Score change detectors on labelled pairs, as ``sitewatch eval change --dataset DIR`` promises.

Pairs are found by their files, at any depth under DIR (DESIGN.md, "Evaluation contracts"):

* LEVIR-CD: a folder with ``A/``, ``B/`` and ``label/`` holding images of the same names;
* SZTAKI: ``im1.*``, ``im2.*`` and ``gt.*`` in one folder (PNG, BMP, TIFF or JPEG);
* OSCD: ``images/<city>/imgs_1/`` and ``imgs_2/`` band folders with ``*_labels/<city>/cm/cm.png``
  beside ``images/`` (``cm.png`` > 127 is change; ``cm.tif`` holds 1/2 and is not used).

Every pair runs through :func:`sitewatch.change.compare`, the same path as ``sitewatch change``.
TP, FP and FN are summed over all pixels of a dataset (not averaged per image) before precision,
recall, F1 and IoU of the changed class are computed.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from sitewatch.change import registry
from sitewatch.change.compare import compare, detect_pair
from sitewatch.change.pair import ImagePair, prepare, read_pair
from sitewatch.errors import InputError
from sitewatch.io.raster import open_raster
from sitewatch.settings import DEFAULT_LIMITS, Limits

Layout = Literal["levir-cd", "sztaki", "oscd"]

#: Image suffixes a label or plain-image pair may have.
IMAGE_SUFFIXES: tuple[str, ...] = (".png", ".bmp", ".tif", ".tiff", ".jpg", ".jpeg")

#: Name of the row that sums every dataset (the whole split) when there are several.
ALL = "all"


@dataclass(frozen=True)
class LabelledPair:
    """A BEFORE/AFTER pair and its change label, found under the dataset folder."""

    layout: Layout
    name: str  # path of the pair relative to the dataset folder, for messages
    before: Path
    after: Path
    label: Path


@dataclass(frozen=True)
class Score:
    """Pixel counts of the changed class for one dataset and detector, and the scores from them."""

    dataset: str  # a layout, "all", or for one pair its name
    detector: str
    pairs: int
    tp: int
    fp: int
    fn: int
    seconds: float  # detector wall time summed over the pairs (loading included)

    @property
    def precision(self) -> float:
        """TP / (TP + FP); 0 when nothing was predicted."""
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 0.0

    @property
    def recall(self) -> float:
        """TP / (TP + FN); 0 when the labels hold no change."""
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 0.0

    @property
    def f1(self) -> float:
        """2 TP / (2 TP + FP + FN)."""
        denominator = 2 * self.tp + self.fp + self.fn
        return 2 * self.tp / denominator if denominator else 0.0

    @property
    def iou(self) -> float:
        """TP / (TP + FP + FN), the intersection over union of the changed class."""
        denominator = self.tp + self.fp + self.fn
        return self.tp / denominator if denominator else 0.0

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready fields, the scores rounded to four decimals."""
        return {
            "dataset": self.dataset,
            "detector": self.detector,
            "pairs": self.pairs,
            "tp": self.tp,
            "fp": self.fp,
            "fn": self.fn,
            "precision": round(self.precision, 4),
            "recall": round(self.recall, 4),
            "f1": round(self.f1, 4),
            "iou": round(self.iou, 4),
            "seconds_per_pair": round(self.seconds / self.pairs, 3) if self.pairs else 0.0,
        }


@dataclass(frozen=True)
class PairDone:
    """Progress event: one detector finished one pair (its score is that pair's alone)."""

    pair: LabelledPair
    score: Score
    done: int
    total: int


def find_pairs(root: str | Path) -> list[LabelledPair]:
    """Every labelled pair under ROOT, at any depth, in a stable order.

    Raises:
        InputError: If ROOT is not a folder or holds no pair of a known layout.
    """
    root = Path(root)
    if not root.is_dir():
        raise InputError(root, "not a folder")
    pairs: list[LabelledPair] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        folder = Path(dirpath)
        pairs.extend(_levir_pairs(root, folder, dirnames))
        pairs.extend(_sztaki_pairs(root, folder, filenames))
        pairs.extend(_oscd_pairs(root, folder, dirnames))
    if not pairs:
        raise InputError(
            root,
            "no labelled change pairs found (looked for A/ B/ label/, im1.* im2.* gt.*, "
            "and images/<city>/imgs_1|imgs_2 with *_labels/<city>/cm/cm.png)",
        )
    return pairs


def _images(folder: Path) -> dict[str, Path]:
    return {p.stem: p for p in sorted(folder.iterdir()) if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES}


def _levir_pairs(root: Path, folder: Path, dirnames: list[str]) -> Iterable[LabelledPair]:
    if not {"A", "B", "label"} <= set(dirnames):
        return []
    a, b, label = (_images(folder / d) for d in ("A", "B", "label"))
    return [
        LabelledPair("levir-cd", str(a[stem].relative_to(root)), a[stem], b[stem], label[stem])
        for stem in sorted(a.keys() & b.keys() & label.keys())
    ]


def _sztaki_pairs(root: Path, folder: Path, filenames: list[str]) -> Iterable[LabelledPair]:
    found: dict[str, Path] = {}
    for name in sorted(filenames):
        path = folder / name
        stem = path.stem.lower()
        if stem in ("im1", "im2", "gt") and path.suffix.lower() in IMAGE_SUFFIXES:
            found.setdefault(stem, path)
    if found.keys() != {"im1", "im2", "gt"}:
        return []
    name = str(folder.relative_to(root)) if folder != root else folder.name
    return [LabelledPair("sztaki", name, found["im1"], found["im2"], found["gt"])]


def _oscd_pairs(root: Path, folder: Path, dirnames: list[str]) -> Iterable[LabelledPair]:
    if "images" not in dirnames:
        return []
    label_roots = sorted(p for p in folder.iterdir() if p.is_dir() and p.name.endswith("_labels"))
    pairs = []
    for city in sorted(p for p in (folder / "images").iterdir() if p.is_dir()):
        before, after = city / "imgs_1", city / "imgs_2"
        labels = [cm for cm in (r / city.name / "cm" / "cm.png" for r in label_roots) if cm.is_file()]
        if before.is_dir() and after.is_dir() and labels:
            pairs.append(LabelledPair("oscd", str(city.relative_to(root)), before, after, labels[0]))
    return pairs


def read_label(path: Path, limits: Limits = DEFAULT_LIMITS) -> np.ndarray:
    """A change label as bool: first band > 127 (0/255 masks, and OSCD's RGBA ``cm.png``)."""
    with open_raster(path, limits) as src:
        band = src.read(1)
    result: np.ndarray = band > 127
    return result


def confusion(predicted: np.ndarray, truth: np.ndarray) -> tuple[int, int, int]:
    """TP, FP and FN of the changed class."""
    tp = int(np.count_nonzero(predicted & truth))
    fp = int(np.count_nonzero(predicted & ~truth))
    fn = int(np.count_nonzero(~predicted & truth))
    return tp, fp, fn


def evaluate(
    pairs: Sequence[LabelledPair],
    detectors: Iterable[str] | None = None,
    align: bool = True,
    on_progress: Callable[[PairDone], None] | None = None,
    misregister_px: float = 0.0,
) -> list[Score]:
    """Run every detector on every pair (from :func:`find_pairs`); one score per layout and detector.

    With MISREGISTER_PX, AFTER is first moved by a seeded random 1 to MISREGISTER_PX pixels (any
    direction), to measure what misregistration costs and what alignment recovers.

    When pairs of more than one layout are given, a row named ``all`` per detector sums them
    (the whole folder as one split, as DESIGN.md defines it).

    Raises:
        UnknownName: If a detector name is not registered (before any pair is read).
        InputError: If a pair cannot be read, or a label's size differs from its BEFORE image.
    """
    names = list(detectors) if detectors else registry.names()
    for name in names:
        registry.get(name)
    total, done = len(pairs) * len(names), 0
    scores: list[Score] = []
    for detector in names:
        by_layout: dict[str, list[Score]] = {}
        for index, pair in enumerate(pairs):
            if misregister_px > 0:
                started = time.perf_counter()
                moved = misregistered(read_pair(pair.before, pair.after), misregister_px, seed=index)
                product = detect_pair(prepare(moved, align=align), detector, started=started)
            else:
                product = compare(pair.before, pair.after, detector=detector, align=align)
            truth = read_label(pair.label)
            if truth.shape != product.mask.shape:
                raise InputError(
                    pair.label,
                    f"label is {truth.shape[1]}x{truth.shape[0]}, BEFORE is {product.width}x{product.height}",
                )
            score = Score(pair.name, detector, 1, *confusion(product.mask, truth), product.seconds)
            by_layout.setdefault(pair.layout, []).append(score)
            done += 1
            if on_progress is not None:
                on_progress(PairDone(pair, score, done, total))
        rows = [_total(layout, detector, items) for layout, items in sorted(by_layout.items())]
        if len(rows) > 1:
            rows.append(_total(ALL, detector, [s for items in by_layout.values() for s in items]))
        scores.extend(rows)
    return scores


def misregistered(pair: ImagePair, max_px: float, *, seed: int) -> ImagePair:
    """PAIR with AFTER moved by 1 to MAX_PX pixels in a seeded random direction (bilinear); pixels
    moved in from outside are invalid."""
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    length, angle = rng.uniform(1.0, max(1.0, max_px)), rng.uniform(0.0, 2 * np.pi)
    dy, dx = length * np.sin(angle), length * np.cos(angle)
    after = ndimage.shift(pair.after, (0.0, dy, dx), order=1, mode="constant", cval=0.0)
    inside = ndimage.shift(pair.valid.astype(np.float32), (dy, dx), order=1, mode="constant", cval=0.0) > 0.999
    return dataclasses.replace(pair, after=after.astype(np.float32), valid=pair.valid & inside)


def _total(dataset: str, detector: str, scores: list[Score]) -> Score:
    """The scores' pixel counts and times summed, under DATASET."""
    return Score(
        dataset,
        detector,
        sum(s.pairs for s in scores),
        sum(s.tp for s in scores),
        sum(s.fp for s in scores),
        sum(s.fn for s in scores),
        sum(s.seconds for s in scores),
    )
