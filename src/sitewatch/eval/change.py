"""Score change detectors on labelled pairs, as ``sitewatch eval change --dataset DIR`` promises.

Pairs are found by their files, at any depth under DIR (DESIGN.md, "Evaluation contracts"):

* LEVIR-CD: a folder with ``A/``, ``B/`` and ``label/`` holding images of the same names;
* SZTAKI: ``im1.*``, ``im2.*`` and ``gt.*`` in one folder (PNG, BMP, TIFF or JPEG);
* OSCD: ``images/<city>/imgs_1/`` and ``imgs_2/`` band folders with ``*_labels/<city>/cm/cm.png``
  beside ``images/`` (``cm.png`` > 127 is change; ``cm.tif`` holds 1/2 and is not used).

Each DIR is one split. Every pair is read and prepared once (:func:`sitewatch.change.pair.load_pair`,
the path ``sitewatch change`` takes), then each detector runs on it through
:func:`sitewatch.change.compare.detect_pair`. A detector that cannot run on a pair (module not
installed, model missing, no known RGB for an RGB detector, GSD out of its range) is skipped for that
pair with the reason, never a crash.

Pixel scores: TP, FP and FN of the changed class are summed over all pixels of a dataset (not
averaged per image) before precision, recall, F1 and IoU are computed.

Object scores: the objects are the 8-connected components of the label and of the predicted mask
(the prediction as written, after the minimum mapping unit). A predicted object and a true object
match when their intersection over union is above 0.5. Above 0.5, one true object can overlap at
most one predicted object that much and the reverse (their unions would otherwise exceed the
pixels they hold), so the matching is one-to-one without any assignment step, as in COCO at IoU 0.5
and panoptic quality; it asks that an outline be roughly right, not merely touched, which is what
an analyst measuring a new building needs, and it penalises merging two changes into one blob or
splitting one. Matches, predicted objects and true objects are summed over a dataset like pixels:
object precision = matches / predicted objects, object recall = matches / true objects, object F1 =
2 matches / (predicted + true objects). Every true object counts, however small.

How each figure was obtained (the ``protocol`` column):

* ``training-free``: a detector without a trained model (fixed settings, such as ``cva``);
* ``held-out (k-fold by pair)``: a learned detector scored each pair with a fold model (``--models
  DIR``: one folder a fold) whose metadata ``trained_on`` excludes that pair;
* ``held-out (not in training set)``: the shipped model, whose ``trained_on`` excludes the pair;
* ``in-sample``: the shipped model was trained on the pair (its ``trained_on`` lists it) and no fold
  model excludes it. A row with any in-sample pair is labelled in-sample, with the count.

A learned detector is one whose instances carry their model's :class:`~sitewatch.models.ModelCard`
as ``card`` (see :class:`LearnedDetector`) and whose constructor takes ``model_dir``; pairs are
named in ``trained_on`` by :attr:`LabelledPair.id`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, cast, runtime_checkable

import numpy as np

from sitewatch.change import registry
from sitewatch.change.base import ChangeDetector
from sitewatch.change.compare import detect_pair, refusal
from sitewatch.change.pair import ImagePair, load_pair, prepare, read_pair
from sitewatch.errors import InputError, NotFound, UnknownName
from sitewatch.io.raster import open_raster
from sitewatch.settings import DEFAULT_LIMITS, Limits

if TYPE_CHECKING:
    from sitewatch.models import ModelCard

Layout = Literal["levir-cd", "sztaki", "oscd"]

#: Image suffixes a label or plain-image pair may have.
IMAGE_SUFFIXES: tuple[str, ...] = (".png", ".bmp", ".tif", ".tiff", ".jpg", ".jpeg")

#: Name of the row that sums every dataset of a split when it holds several.
ALL = "all"

#: How a figure was obtained; see the module docstring.
TRAINING_FREE = "training-free"
HELD_OUT_KFOLD = "held-out (k-fold by pair)"
HELD_OUT_UNSEEN = "held-out (not in training set)"
IN_SAMPLE = "in-sample"
#: A row's protocol is the first of these any of its pairs has: a figure is never shown as better
#: founded than its weakest pair.
_PROTOCOL_ORDER = (IN_SAMPLE, HELD_OUT_KFOLD, HELD_OUT_UNSEEN, TRAINING_FREE)

#: Connectivity of objects: 8 neighbours, so a diagonal step does not split a building.
_EIGHT = np.ones((3, 3), dtype=bool)
#: A predicted and a true object match above this IoU (one-to-one by construction).
OBJECT_IOU = 0.5


@dataclass(frozen=True)
class LabelledPair:
    """A BEFORE/AFTER pair and its change label, found under the dataset folder SPLIT."""

    layout: Layout
    name: str  # path of the pair relative to the dataset folder, for messages
    before: Path
    after: Path
    label: Path
    split: str  # the dataset folder as given

    @property
    def id(self) -> str:
        """The pair's name whatever folder it was found from: ``layout:name``, as models' ``trained_on`` lists it.

        LEVIR-CD images are named by split and number (``levir-cd:test_2``), SZTAKI pairs by site
        and number (``sztaki:Szada/1``), OSCD pairs by city (``oscd:bercy``).
        """
        if self.layout == "levir-cd":
            return f"levir-cd:{self.before.stem}"
        if self.layout == "sztaki":
            return f"sztaki:{self.before.parent.parent.name}/{self.before.parent.name}"
        return f"oscd:{self.before.parent.name}"


@dataclass(frozen=True)
class Score:
    """Pixel and object counts of the changed class for one dataset and detector, and the scores from them."""

    split: str  # the dataset folder as given
    dataset: str  # a layout, "all", or for one pair its name
    detector: str
    pairs: int
    tp: int
    fp: int
    fn: int
    objects_matched: int
    objects_predicted: int
    objects_truth: int
    seconds: float  # detector wall time summed over the pairs (loading included)
    protocol: str

    @property
    def precision(self) -> float:
        """TP / (TP + FP); 0 when nothing was predicted."""
        return _ratio(self.tp, self.tp + self.fp)

    @property
    def recall(self) -> float:
        """TP / (TP + FN); 0 when the labels hold no change."""
        return _ratio(self.tp, self.tp + self.fn)

    @property
    def f1(self) -> float:
        """2 TP / (2 TP + FP + FN)."""
        return _ratio(2 * self.tp, 2 * self.tp + self.fp + self.fn)

    @property
    def iou(self) -> float:
        """TP / (TP + FP + FN), the intersection over union of the changed class."""
        return _ratio(self.tp, self.tp + self.fp + self.fn)

    @property
    def object_precision(self) -> float:
        """Matched / predicted objects; 0 when nothing was predicted."""
        return _ratio(self.objects_matched, self.objects_predicted)

    @property
    def object_recall(self) -> float:
        """Matched / true objects; 0 when the labels hold none."""
        return _ratio(self.objects_matched, self.objects_truth)

    @property
    def object_f1(self) -> float:
        """2 matched / (predicted + true objects)."""
        return _ratio(2 * self.objects_matched, self.objects_predicted + self.objects_truth)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready fields, the scores rounded to four decimals."""
        return {
            "split": self.split,
            "dataset": self.dataset,
            "detector": self.detector,
            "protocol": self.protocol,
            "pairs": self.pairs,
            "tp": self.tp,
            "fp": self.fp,
            "fn": self.fn,
            "precision": round(self.precision, 4),
            "recall": round(self.recall, 4),
            "f1": round(self.f1, 4),
            "iou": round(self.iou, 4),
            "objects_matched": self.objects_matched,
            "objects_predicted": self.objects_predicted,
            "objects_truth": self.objects_truth,
            "object_precision": round(self.object_precision, 4),
            "object_recall": round(self.object_recall, 4),
            "object_f1": round(self.object_f1, 4),
            "seconds_per_pair": round(self.seconds / self.pairs, 3) if self.pairs else 0.0,
        }


def _ratio(numerator: int, denominator: int) -> float:
    return numerator / denominator if denominator else 0.0


@dataclass(frozen=True)
class Skipped:
    """A detector that did not run on some pairs of a dataset, and why."""

    split: str
    dataset: str
    detector: str
    pairs: int
    reason: str

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready fields."""
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Evaluation:
    """Rows per split, dataset and detector, in the order they are shown, and what was skipped."""

    scores: list[Score]
    skipped: list[Skipped]


@dataclass(frozen=True)
class PairDone:
    """Progress event: one detector finished one pair (its score is that pair's alone; ``None``: skipped)."""

    pair: LabelledPair
    score: Score | None
    done: int
    total: int


@runtime_checkable
class LearnedDetector(Protocol):
    """What eval reads of a detector that runs a trained model: the model's card (``trained_on``)."""

    card: ModelCard


def find_pairs(root: str | Path) -> list[LabelledPair]:
    """Every labelled pair under ROOT, at any depth, in a stable order; ROOT is their split.

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
        LabelledPair("levir-cd", str(a[stem].relative_to(root)), a[stem], b[stem], label[stem], str(root))
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
    return [LabelledPair("sztaki", name, found["im1"], found["im2"], found["gt"], str(root))]


def _oscd_pairs(root: Path, folder: Path, dirnames: list[str]) -> Iterable[LabelledPair]:
    if "images" not in dirnames:
        return []
    label_roots = sorted(p for p in folder.iterdir() if p.is_dir() and p.name.endswith("_labels"))
    pairs = []
    for city in sorted(p for p in (folder / "images").iterdir() if p.is_dir()):
        before, after = city / "imgs_1", city / "imgs_2"
        labels = [cm for cm in (r / city.name / "cm" / "cm.png" for r in label_roots) if cm.is_file()]
        if before.is_dir() and after.is_dir() and labels:
            pairs.append(LabelledPair("oscd", str(city.relative_to(root)), before, after, labels[0], str(root)))
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


def object_matches(predicted: np.ndarray, truth: np.ndarray) -> tuple[int, int, int]:
    """Matched objects, predicted objects and true objects (8-connected; matched above :data:`OBJECT_IOU`)."""
    from scipy import ndimage

    truth_labels, truth_count = ndimage.label(truth, structure=_EIGHT)
    predicted_labels, predicted_count = ndimage.label(predicted, structure=_EIGHT)
    both = (truth_labels > 0) & (predicted_labels > 0)
    # Each overlapping (true, predicted) pair once, with its intersection in pixels.
    keys = truth_labels[both].astype(np.int64) * (predicted_count + 1) + predicted_labels[both]
    pairs, intersection = np.unique(keys, return_counts=True)
    truth_area = np.bincount(truth_labels.ravel(), minlength=truth_count + 1)
    predicted_area = np.bincount(predicted_labels.ravel(), minlength=predicted_count + 1)
    union = truth_area[pairs // (predicted_count + 1)] + predicted_area[pairs % (predicted_count + 1)] - intersection
    matched = int(np.count_nonzero(intersection > OBJECT_IOU * union))
    return matched, int(predicted_count), int(truth_count)


def score_pair(
    pair: LabelledPair, detector: str, predicted: np.ndarray, truth: np.ndarray, seconds: float, protocol: str
) -> Score:
    """PAIR's score alone: every pixel and object count of PREDICTED against TRUTH (the one place scoring happens)."""
    tp, fp, fn = confusion(predicted, truth)
    matched, n_predicted, n_truth = object_matches(predicted, truth)
    return Score(pair.split, pair.name, detector, 1, tp, fp, fn, matched, n_predicted, n_truth, seconds, protocol)


def combine(split: str, dataset: str, detector: str, scores: Sequence[Score]) -> Score:
    """SCORES' counts and times summed, under DATASET; the protocol of the weakest pair (:data:`_PROTOCOL_ORDER`)."""
    return Score(
        split,
        dataset,
        detector,
        sum(s.pairs for s in scores),
        sum(s.tp for s in scores),
        sum(s.fp for s in scores),
        sum(s.fn for s in scores),
        sum(s.objects_matched for s in scores),
        sum(s.objects_predicted for s in scores),
        sum(s.objects_truth for s in scores),
        sum(s.seconds for s in scores),
        _protocol([s.protocol for s in scores]),
    )


def _protocol(labels: Sequence[str]) -> str:
    """The first label of :data:`_PROTOCOL_ORDER` among LABELS; in-sample with its share when not all are."""
    weakest = next(p for p in _PROTOCOL_ORDER if p in labels)
    in_sample = labels.count(IN_SAMPLE)
    if weakest == IN_SAMPLE and in_sample < len(labels):
        return f"{IN_SAMPLE} ({in_sample} of {len(labels)} pairs)"
    return weakest


def evaluate(
    pairs: Sequence[LabelledPair],
    detectors: Iterable[str] | None = None,
    align: bool = True,
    on_progress: Callable[[PairDone], None] | None = None,
    misregister_px: float = 0.0,
    models: str | Path | None = None,
) -> Evaluation:
    """Run every detector on every pair (from :func:`find_pairs`); one row per split, layout and detector.

    Args:
        pairs: the labelled pairs, of one split or several.
        detectors: registered names; by default every one.
        align: co-register each pair first, as the pipeline does.
        on_progress: called after each detector on each pair.
        misregister_px: move AFTER by a seeded random 1 to MISREGISTER_PX pixels (any direction)
            first, to measure what misregistration costs and what alignment recovers.
        models: a folder of fold model folders (one a fold): learned detectors score each pair with
            a fold model that did not train on it (see :func:`fold_folders`).

    A split with more than one layout also gets a row named ``all`` per detector that sums them
    (the whole folder as one split, as DESIGN.md defines it).

    Raises:
        UnknownName: If a detector name is not registered (before any pair is read).
        InputError: If a pair cannot be read, a label's size differs from its BEFORE image, or
            MODELS holds no fold folder.
    """
    names = check_detectors(detectors)
    chooser = _ModelChooser(fold_folders(models) if models is not None else [])
    total, done = len(pairs) * len(names), 0
    scored: dict[tuple[str, str, str], list[Score]] = {}
    skipped: dict[tuple[str, str, str, str], int] = {}
    for index, pair in enumerate(pairs):
        image_pair, load_seconds = _load(pair, align, misregister_px, seed=index)
        truth = read_label(pair.label)
        if truth.shape != (image_pair.height, image_pair.width):
            raise InputError(
                pair.label,
                f"label is {truth.shape[1]}x{truth.shape[0]}, BEFORE is {image_pair.width}x{image_pair.height}",
            )
        for name in names:
            choice = chooser.choose(name, pair, image_pair)
            score = None
            if isinstance(choice, str):
                key = (pair.split, pair.layout, name, choice)
                skipped[key] = skipped.get(key, 0) + 1
            else:
                detector, protocol = choice
                product = detect_pair(image_pair, detector)
                score = score_pair(pair, name, product.mask, truth, load_seconds + product.seconds, protocol)
                scored.setdefault((pair.split, pair.layout, name), []).append(score)
            done += 1
            if on_progress is not None:
                on_progress(PairDone(pair, score, done, total))
    return Evaluation(_rows(pairs, names, scored), [Skipped(*key[:3], n, key[3]) for key, n in skipped.items()])


def check_detectors(detectors: Iterable[str] | None) -> list[str]:
    """DETECTORS, or every registered name when none are given.

    A name that is known but whose module is missing passes: :func:`evaluate` skips it with a note.

    Raises:
        UnknownName: If a name is not known, listing the known names.
    """
    names = list(detectors) if detectors else registry.names()
    for name in names:
        if name not in registry.names():
            registry.get(name)
    return names


def _load(pair: LabelledPair, align: bool, misregister_px: float, *, seed: int) -> tuple[ImagePair, float]:
    """PAIR read and prepared as ``sitewatch change`` does (moved first by MISREGISTER_PX), and its seconds."""
    started = time.perf_counter()
    if misregister_px > 0:
        image_pair = prepare(misregistered(read_pair(pair.before, pair.after), misregister_px, seed=seed), align=align)
    else:
        image_pair = load_pair(pair.before, pair.after, align=align)
    return image_pair, time.perf_counter() - started


def _rows(
    pairs: Sequence[LabelledPair], names: list[str], scored: dict[tuple[str, str, str], list[Score]]
) -> list[Score]:
    """Per split (in the order given), layout (then ``all``) and detector (in the order given)."""
    rows = []
    for split in dict.fromkeys(p.split for p in pairs):
        layouts = sorted({p.layout for p in pairs if p.split == split})
        for dataset in [*layouts, ALL] if len(layouts) > 1 else layouts:
            wanted = layouts if dataset == ALL else [dataset]
            for name in names:
                scores = [s for layout in wanted for s in scored.get((split, layout, name), [])]
                if scores:
                    rows.append(combine(split, dataset, name, scores))
    return rows


def fold_folders(models: str | Path) -> list[Path]:
    """The fold model folders directly under MODELS, sorted (``fold0/``, ``fold1/``, ...).

    Raises:
        InputError: If MODELS is not a folder or holds none.
    """
    root = Path(models)
    if not root.is_dir():
        raise InputError(root, "not a folder of fold model folders")
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not folders:
        raise InputError(root, "no fold model folders in it (fold0/, fold1/, ..., each with NAME.onnx and NAME.json)")
    return folders


class _ModelChooser:
    """Which detector instance scores each pair, and how the figure is labelled.

    Instances are made once (a learned one loads its model once) and reused across pairs: every
    detection fits the pair afresh.
    """

    def __init__(self, folds: list[Path]) -> None:
        self.folds = folds
        self._classes: dict[str, type[ChangeDetector] | str] = {}
        self._shipped: dict[str, ChangeDetector] = {}
        self._fold_models: dict[tuple[str, Path], ChangeDetector | None] = {}

    def choose(self, name: str, pair: LabelledPair, image_pair: ImagePair) -> tuple[ChangeDetector, str] | str:
        """The detector NAME runs PAIR with and the protocol label, or why it cannot run it.

        A fold model that left PAIR out comes first, and needs no shipped model beside it.
        """
        cls = self._class(name)
        if isinstance(cls, str):
            return cls
        for fold in self.folds:
            model = self._fold_model(cls, fold)
            if isinstance(model, LearnedDetector) and pair.id not in model.card.trained_on:
                return refusal(model, image_pair) or (model, HELD_OUT_KFOLD)
        reason = registry.valid_for(cls, image_pair.band_count, image_pair.rgb is not None, image_pair.gsd)
        if reason is not None:
            return reason
        if name not in self._shipped:
            self._shipped[name] = cls()
        shipped = self._shipped[name]
        if not isinstance(shipped, LearnedDetector):
            return shipped, TRAINING_FREE
        return shipped, IN_SAMPLE if pair.id in shipped.card.trained_on else HELD_OUT_UNSEEN

    def _class(self, name: str) -> type[ChangeDetector] | str:
        """The class registered as NAME, or why it cannot be had (its module is not installed)."""
        if name not in self._classes:
            try:
                self._classes[name] = registry.get(name)
            except UnknownName as exc:
                self._classes[name] = str(exc)
        return self._classes[name]

    def _fold_model(self, cls: type[ChangeDetector], fold: Path) -> ChangeDetector | None:
        """CLS with the model in FOLD, or ``None`` when FOLD has none for it (or CLS loads no model)."""
        key = (cls.name, fold)
        if key not in self._fold_models:
            self._fold_models[key] = None
            if "model_dir" in inspect.signature(cls).parameters:
                with contextlib.suppress(NotFound):
                    self._fold_models[key] = cast(Callable[..., ChangeDetector], cls)(model_dir=fold)
        return self._fold_models[key]


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
