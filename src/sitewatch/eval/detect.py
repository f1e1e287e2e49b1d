"""Score object detectors on DOTA-labelled images, as ``sitewatch eval detect --dataset DIR`` promises.

Images and labels are found and read by :mod:`sitewatch.detect.dota` (the reader training uses
too): ``images/NAME.png|tif|jpg`` beside ``labelTxt/NAME.txt`` at any depth under DIR, NAME (the
file stem) being the image's id, as models' ``trained_on`` lists it. An object is *difficult* when
its difficulty is not 0: 1 is DOTA's "difficult", and 2 is what the devkit's ``ImgSplit`` gives an
object cut by a patch border; both count neither as a hit nor as a miss, as in the devkit.

GSD: ``--gsd`` for every image, else the label's ``gsd:`` header. Where that is missing or
implausible (DOTA's patches have none; one DOTA image says ``2.68e-06``), the GSD is estimated from
the labelled cars' lengths (:func:`sitewatch.detect.dota.gsd_from_cars`) and the estimate is
reported (:attr:`Evaluation.estimated_gsd`): it comes from the labels, not from what a detector
finds, so it favours no detector, and such images are scored rather than dropped.

Scores, per detector and class (only the classes the detector reports, and only those with
ground truth in the scored images; the others are reported as "no labels"):

* AP at oriented IoU > 0.5 (:data:`IOU_THRESHOLD`), all-point interpolated as in the DOTA devkit
  and VOC 2010+: every detection of the class over all images, best score first, is matched to
  the unmatched true object of its image that overlaps it most; a match to a difficult object is
  ignored (neither TP nor FP; difficult objects may be matched repeatedly). This is the devkit's
  rule except that the devkit looks only at the single best-overlapping object and calls the
  detection a false positive when that one is taken, even if another unmatched object overlaps
  it by more than 0.5; matching the best *unmatched* object is the usual greedy rule (COCO).
* Recall and precision at the operating score (:data:`OPERATING_SCORE`, what ``sitewatch
  detect`` writes by default): the same matching, cut at that score.
* Count error per image: ``|predicted count at the operating score - true count| / true count``,
  the true count without difficult objects; its mean over the images that hold the class.
  Images without the class still count for false positives (they are negatives).

How each figure was obtained (the ``protocol`` column), as in :mod:`sitewatch.eval.change`:
``training-free`` (the classic detector), ``held-out (k-fold by image)`` (``--models DIR``: a fold
model whose ``trained_on`` excludes the image), ``held-out (not in training set)`` (the shipped
model did not train on it), ``in-sample`` (the shipped model trained on it and no fold model left
it out); a row is labelled by its weakest image.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sitewatch.detect import base, sliced
from sitewatch.detect.boxes import Corners, Detection, oriented_iou
from sitewatch.detect.dota import GsdEstimate, LabelledImage, LabelledObject, gsd_from_cars
from sitewatch.errors import InputError, NotFound
from sitewatch.eval.change import HELD_OUT_UNSEEN, IN_SAMPLE, TRAINING_FREE, LearnedDetector, fold_folders
from sitewatch.io.raster import read_array

#: Detections above this oriented IoU with a true object match it (DOTA's AP50, strictly above).
IOU_THRESHOLD = 0.5
#: The score ``sitewatch detect`` writes from by default: counts and recall are taken there.
OPERATING_SCORE = base.OPERATING_SCORE
#: Scores tried when choosing a learned detector's operating point on held-out images.
SCORE_GRID: tuple[float, ...] = tuple(round(0.05 * k, 2) for k in range(2, 15))
#: A learned detector scored with a fold model that did not train on the image.
HELD_OUT_KFOLD = "held-out (k-fold by image)"
#: Shown for a class the detector reports but no scored image has a (non-difficult) object of.
NO_LABELS = "no labels"
#: A row's protocol is the first of these any of its images has: never better founded than its weakest image.
_PROTOCOL_ORDER = (IN_SAMPLE, HELD_OUT_KFOLD, HELD_OUT_UNSEEN, TRAINING_FREE)


@dataclass(frozen=True)
class ImageResult:
    """One detector's detections on one image, the image's labels, and how the figure was obtained."""

    image: str  # the image id
    protocol: str
    detections: tuple[Detection, ...]
    truth: tuple[LabelledObject, ...]


@dataclass(frozen=True)
class ClassScore:
    """AP and operating-point figures of one detector and class over the scored images.

    ``ap``, ``recall``, ``precision`` and ``mean_count_error`` are ``None`` where no scored image
    holds the class (``no labels``; precision also when nothing was predicted at the operating score).
    """

    detector: str
    cls: str
    protocol: str
    images: int
    truth: int  # objects that are not difficult
    difficult: int
    predicted: int  # every detection, whatever its score (the ranking AP is computed on)
    predicted_at_op: int
    matched_at_op: int
    ignored_at_op: int  # detections at the operating score on difficult objects
    ap: float | None
    mean_count_error: float | None
    min_score: float

    @property
    def recall(self) -> float | None:
        """Matched / true objects at the operating score."""
        return self.matched_at_op / self.truth if self.truth else None

    @property
    def precision(self) -> float | None:
        """Matched / predicted at the operating score, detections on difficult objects left out."""
        judged = self.predicted_at_op - self.ignored_at_op
        return self.matched_at_op / judged if self.truth and judged else None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready fields, the scores rounded to four decimals."""
        return {
            "detector": self.detector,
            "class": self.cls,
            "protocol": self.protocol,
            "status": "scored" if self.truth else NO_LABELS,
            "images": self.images,
            "truth": self.truth,
            "difficult": self.difficult,
            "predicted": self.predicted,
            "min_score": self.min_score,
            "predicted_at_op": self.predicted_at_op,
            "matched_at_op": self.matched_at_op,
            "ignored_at_op": self.ignored_at_op,
            "ap50": _rounded(self.ap),
            "iou": f"oriented > {IOU_THRESHOLD}",
            "recall": _rounded(self.recall),
            "precision": _rounded(self.precision),
            "mean_count_error": _rounded(self.mean_count_error),
        }


@dataclass(frozen=True)
class ImageCount:
    """Predicted (at the operating score) and true count of one class in one image; ``error`` is
    ``None`` where the image holds none of the class (the ratio is undefined)."""

    detector: str
    image: str
    cls: str
    protocol: str
    truth: int
    predicted: int

    @property
    def error(self) -> float | None:
        """|predicted - true| / true."""
        return abs(self.predicted - self.truth) / self.truth if self.truth else None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready fields."""
        return {
            "detector": self.detector,
            "image": self.image,
            "class": self.cls,
            "protocol": self.protocol,
            "truth": self.truth,
            "predicted": self.predicted,
            "error": _rounded(self.error),
        }


@dataclass(frozen=True)
class Skipped:
    """Images a detector did not score, and why."""

    detector: str
    images: tuple[str, ...]
    reason: str

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready fields."""
        return {"detector": self.detector, "images": list(self.images), "reason": self.reason}


@dataclass(frozen=True)
class EstimatedGsd:
    """An image scored at a GSD estimated from its labels: its header is missing or implausible."""

    image: str  # the image id
    estimate: GsdEstimate

    def note(self) -> str:
        """One line for the report: the image, why its header was not used, and what was used instead."""
        return f"{self.image}: {self.estimate}"

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready fields (``cars`` 0: too few cars, a fallback GSD was assumed)."""
        return {
            "image": self.image,
            "gsd": round(self.estimate.metres, 4),
            "cars": self.estimate.cars,
            "gsd_header": self.estimate.gsd_header,
            "note": str(self.estimate),
        }


@dataclass(frozen=True)
class Evaluation:
    """Rows per detector and class, per-image counts, what was skipped, and which GSDs were estimated."""

    scores: list[ClassScore]
    counts: list[ImageCount]
    skipped: list[Skipped]
    estimated_gsd: list[EstimatedGsd]
    results: dict[str, list[ImageResult]] = field(default_factory=dict)


@dataclass(frozen=True)
class ImageDone:
    """Progress event: one detector finished (or skipped) one image."""

    image: LabelledImage
    detector: str
    done: int
    total: int


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def select_detectors(detectors: Iterable[str] | None, models: str | Path | None = None) -> list[str]:
    """DETECTORS as given, or every detector that can run here (shipped or in a fold of MODELS).

    A named detector that cannot run here passes: :func:`evaluate` skips it with the reason.

    Raises:
        NotFound: If a name is not a known detector, listing the known names.
        InputError: If MODELS is not a folder of fold folders.
    """
    return _select(detectors, _ModelChooser(fold_folders(models) if models is not None else []))


def _select(detectors: Iterable[str] | None, chooser: _ModelChooser) -> list[str]:
    """:func:`select_detectors` with CHOOSER's detectors (made once, reused by :func:`evaluate`)."""
    known = base.names()
    if not detectors:
        return [name for name in known if chooser.available(name)]
    names = list(detectors)
    for name in names:
        if name not in known:
            base.get(name)  # raises NotFound with the known names
    return names


def evaluate(
    images: Sequence[LabelledImage],
    detectors: Iterable[str] | None = None,
    models: str | Path | None = None,
    gsd: float | None = None,
    min_score: float | None = None,
    on_progress: Callable[[ImageDone], None] | None = None,
    shipped: Path | None = None,
) -> Evaluation:
    """Run every detector on every image (from :func:`sitewatch.detect.dota.find_images`) and score it per class.

    Args:
        images: the labelled images.
        detectors: detector names (see :func:`select_detectors`).
        models: a folder of fold model folders (one a fold): a learned detector scores each image
            with a fold model whose ``trained_on`` excludes it.
        gsd: metres per pixel for every image, instead of the label headers and the estimates.
        min_score: the operating score counts, recall and precision are taken at (None: each
            detector's own, see :meth:`~sitewatch.detect.base.ObjectDetector.operating_score`).
        on_progress: called after each detector on each image (skipped ones included).
        shipped: a model folder to treat as the shipped models (scoring a model before it ships).

    Raises:
        NotFound: If a detector name is unknown (before any image is read).
        InputError: If GSD is not positive, MODELS holds no fold folder, or an image cannot be read.
    """
    if gsd is not None and not gsd > 0:
        raise InputError("--gsd", f"must be positive, got {gsd}")
    chooser = _ModelChooser(fold_folders(models) if models is not None else [], shipped)
    names = _select(detectors, chooser)
    results: dict[str, list[ImageResult]] = {name: [] for name in names}
    classes: dict[str, tuple[str, ...]] = {}
    skipped: dict[tuple[str, str], list[str]] = {}
    estimated: list[EstimatedGsd] = []
    total, done = len(images) * len(names), 0
    for image in images:
        run_gsd = gsd if gsd is not None else image.gsd
        if run_gsd is None:
            estimate = gsd_from_cars(image)
            estimated.append(EstimatedGsd(image.image_id, estimate))
            run_gsd = estimate.metres
        array = read_array(image.image_path)[0]
        for name in names:
            outcome = _run(chooser, name, image, array, run_gsd)
            if isinstance(outcome, str):
                skipped.setdefault((name, outcome), []).append(image.image_id)
            else:
                result, classes[name] = outcome
                results[name].append(result)
            done += 1
            if on_progress is not None:
                on_progress(ImageDone(image, name, done, total))
    scores: list[ClassScore] = []
    counts: list[ImageCount] = []
    for name in names:
        operating = min_score if min_score is not None else chooser.operating_score(name)
        for cls in classes.get(name, ()):
            scores.append(score_class(name, cls, results[name], operating))
            if scores[-1].truth:
                counts.extend(count_rows(name, cls, results[name], operating))
    return Evaluation(
        scores, counts, [Skipped(d, tuple(ids), reason) for (d, reason), ids in skipped.items()], estimated, results
    )


def best_operating_score(detector: str, results: Sequence[ImageResult], classes: Sequence[str]) -> float:
    """The score of :data:`SCORE_GRID` with the best mean F1 over CLASSES (those with ground truth)."""

    def mean_f1(threshold: float) -> float:
        values = []
        for cls in classes:
            score = score_class(detector, cls, results, threshold)
            if score.truth and score.recall is not None and score.precision is not None:
                total = score.recall + score.precision
                values.append(2 * score.recall * score.precision / total if total > 0 else 0.0)
        return float(np.mean(values)) if values else 0.0

    return max(SCORE_GRID, key=mean_f1)


def _run(
    chooser: _ModelChooser, name: str, image: LabelledImage, array: np.ndarray, gsd: float
) -> tuple[ImageResult, tuple[str, ...]] | str:
    """Detector NAME's result on IMAGE (its pixels ARRAY) and the classes it reports, or why it did not run."""
    choice = chooser.choose(name, image.image_id)
    if isinstance(choice, str):
        return choice
    detector, protocol = choice
    found = sliced.detect_array(array, gsd, detector)
    if not found.resolvable:
        return found.reason
    return ImageResult(image.image_id, protocol, tuple(found.detections), image.objects), detector.classes


def match(results: Sequence[ImageResult], cls: str, iou: float = IOU_THRESHOLD) -> list[tuple[float, bool | None]]:
    """Every detection of CLS over RESULTS, best score first, as (score, outcome).

    Outcome: ``True`` a hit, ``False`` a false positive, ``None`` a match to a difficult object
    (ignored). Ties in score keep the images' order, then each image's detection order.
    """
    ranked: list[tuple[float, int, int, Detection]] = []
    for i, result in enumerate(results):
        ranked.extend((d.score, i, j, d) for j, d in enumerate(result.detections) if d.cls == cls)
    ranked.sort(key=lambda item: (-item[0], item[1], item[2]))
    truths = [[t for t in result.truth if t.cls == cls] for result in results]
    bounds = [_bounds([t.corners for t in objects]) for objects in truths]
    taken = [np.zeros(len(objects), dtype=bool) for objects in truths]
    outcomes: list[tuple[float, bool | None]] = []
    for score, i, _, detection in ranked:
        best, best_iou = -1, iou
        for k in _overlapping(bounds[i], detection.corners):
            truth = truths[i][k]
            if taken[i][k] and not truth.difficult:
                continue
            overlap = oriented_iou(detection.corners, truth.corners)
            if overlap > best_iou:
                best, best_iou = k, overlap
        if best < 0:
            outcomes.append((score, False))
        elif truths[i][best].difficult:
            outcomes.append((score, None))
        else:
            taken[i][best] = True
            outcomes.append((score, True))
    return outcomes


def _bounds(polygons: Sequence[Corners]) -> np.ndarray:
    """``(n, 4)`` axis-aligned bounds (xmin, ymin, xmax, ymax) of POLYGONS."""
    if not polygons:
        return np.zeros((0, 4))
    points = np.array(polygons, dtype=float)
    return np.concatenate([points.min(axis=1), points.max(axis=1)], axis=1)


def _overlapping(bounds: np.ndarray, corners: Corners) -> list[int]:
    """Indices of BOUNDS that touch CORNERS' bounds: the only objects it can overlap (cheap prefilter)."""
    xs, ys = zip(*corners, strict=True)
    hit = (bounds[:, 0] <= max(xs)) & (bounds[:, 2] >= min(xs)) & (bounds[:, 1] <= max(ys)) & (bounds[:, 3] >= min(ys))
    return [int(k) for k in np.flatnonzero(hit)]


def average_precision(outcomes: Sequence[bool | None], truth: int) -> float:
    """All-point interpolated AP (DOTA devkit, VOC 2010+) of ranked OUTCOMES against TRUTH objects.

    Ignored outcomes (``None``) are dropped; precision is made monotone from the right, and the
    area under it is summed where recall changes.
    """
    if truth <= 0:
        raise ValueError("AP needs at least one true object")
    hits = np.array([o for o in outcomes if o is not None], dtype=bool)
    tp = np.cumsum(hits)
    fp = np.cumsum(~hits)
    recall = np.concatenate([[0.0], tp / truth, [1.0]])
    precision = np.concatenate([[0.0], tp / np.maximum(tp + fp, 1), [0.0]])
    precision = np.maximum.accumulate(precision[::-1])[::-1]
    changes = np.flatnonzero(recall[1:] != recall[:-1])
    return float(np.sum((recall[changes + 1] - recall[changes]) * precision[changes + 1]))


def score_class(detector: str, cls: str, results: Sequence[ImageResult], min_score: float) -> ClassScore:
    """DETECTOR's figures for CLS over RESULTS (one per image it scored)."""
    truth = sum(1 for r in results for t in r.truth if t.cls == cls and not t.difficult)
    difficult = sum(1 for r in results for t in r.truth if t.cls == cls and t.difficult)
    outcomes = match(results, cls)
    at_op = [outcome for score, outcome in outcomes if score >= min_score]
    counts = count_rows(detector, cls, results, min_score)
    errors = [c.error for c in counts if c.error is not None]
    return ClassScore(
        detector=detector,
        cls=cls,
        protocol=_protocol([r.protocol for r in results]),
        images=len(results),
        truth=truth,
        difficult=difficult,
        predicted=len(outcomes),
        predicted_at_op=len(at_op),
        matched_at_op=sum(1 for outcome in at_op if outcome),
        ignored_at_op=sum(1 for outcome in at_op if outcome is None),
        ap=average_precision([o for _, o in outcomes], truth) if truth else None,
        mean_count_error=float(np.mean(errors)) if errors else None,
        min_score=min_score,
    )


def count_rows(detector: str, cls: str, results: Sequence[ImageResult], min_score: float) -> list[ImageCount]:
    """Per image: CLS detections at MIN_SCORE or above, and true (not difficult) CLS objects."""
    return [
        ImageCount(
            detector,
            r.image,
            cls,
            r.protocol,
            truth=sum(1 for t in r.truth if t.cls == cls and not t.difficult),
            predicted=sum(1 for d in r.detections if d.cls == cls and d.score >= min_score),
        )
        for r in results
    ]


def _protocol(labels: Sequence[str]) -> str:
    """The first label of :data:`_PROTOCOL_ORDER` among LABELS; in-sample with its share when not all are."""
    weakest = next(p for p in _PROTOCOL_ORDER if p in labels)
    in_sample = labels.count(IN_SAMPLE)
    if weakest == IN_SAMPLE and in_sample < len(labels):
        return f"{IN_SAMPLE} ({in_sample} of {len(labels)} images)"
    return weakest


class _ModelChooser:
    """Which detector instance scores each image, and how the figure is labelled.

    Instances are made once per (name, model folder) and reused: a learned one loads its model once.
    """

    def __init__(self, folds: list[Path], shipped: Path | None = None) -> None:
        self.folds = folds
        self.shipped = shipped
        self._made: dict[tuple[str, Path | None], base.ObjectDetector | str] = {}

    def operating_score(self, name: str) -> float:
        """NAME's operating score: the shipped model's, else the first fold model's, else the default."""
        for folder in (None, *self.folds):
            made = self._get(name, folder)
            if not isinstance(made, str):
                return made.operating_score()
        return OPERATING_SCORE

    def available(self, name: str) -> bool:
        """Whether NAME can run here, shipped or from a fold folder."""
        return any(not isinstance(self._get(name, folder), str) for folder in (None, *self.folds))

    def choose(self, name: str, image: str) -> tuple[base.ObjectDetector, str] | str:
        """The detector NAME runs IMAGE (an id) with and the protocol label, or why it cannot run it.

        A fold model that left IMAGE out comes first, and needs no shipped model beside it.
        """
        for fold in self.folds:
            model = self._get(name, fold)
            if not isinstance(model, str) and isinstance(model, LearnedDetector) and image not in model.card.trained_on:
                return model, HELD_OUT_KFOLD
        shipped = self._get(name, None)
        if isinstance(shipped, str):
            return shipped
        if not isinstance(shipped, LearnedDetector):
            return shipped, TRAINING_FREE
        return shipped, IN_SAMPLE if image in shipped.card.trained_on else HELD_OUT_UNSEEN

    def _get(self, name: str, folder: Path | None) -> base.ObjectDetector | str:
        """NAME with the models in FOLDER (``None``: the shipped ones), or why it cannot run."""
        key = (name, folder)
        if key not in self._made:
            try:
                self._made[key] = base.get(name, folder or self.shipped)
            except NotFound as exc:
                self._made[key] = str(exc)
        return self._made[key]
