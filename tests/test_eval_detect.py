"""``sitewatch eval detect``: AP and matching by hand, count error, GSDs estimated where headers fail,
protocol labels with fold models, the CLI end to end on a synthetic DOTA folder, and the classic
detector on the sample (the label reader itself is tested in ``test_dota.py``)."""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from sitewatch.detect import base
from sitewatch.detect.base import CONTAINER, LARGE, SMALL, ObjectDetector
from sitewatch.detect.boxes import Corners, Detection, box_corners
from sitewatch.detect.dota import FALLBACK_GSD_M, LabelledObject, find_images
from sitewatch.errors import InputError, NotFound
from sitewatch.eval.detect import (
    HELD_OUT_KFOLD,
    HELD_OUT_UNSEEN,
    IN_SAMPLE,
    OPERATING_SCORE,
    SCORE_GRID,
    TRAINING_FREE,
    ImageResult,
    average_precision,
    best_operating_score,
    count_rows,
    evaluate,
    match,
    score_class,
)
from sitewatch.models import ModelCard
from tests.conftest import run_sitewatch

# --- matching and AP by hand --------------------------------------------------------------------------


def _box(x: float, y: float, w: float = 10.0, h: float = 4.0) -> Corners:
    """An axis-aligned W x H box with its top-left corner at (X, Y), corners in order around it."""
    return ((x, y), (x + w, y), (x + w, y + h), (x, y + h))


def _det(corners: Corners, score: float, cls: str = SMALL) -> Detection:
    return Detection(corners, cls, score)


def _truth(corners: Corners, cls: str = SMALL, difficult: bool = False) -> LabelledObject:
    return LabelledObject(corners, cls, 1 if difficult else 0)


def _result(detections: list[Detection], truth: list[LabelledObject], image: str = "a") -> ImageResult:
    return ImageResult(image, TRAINING_FREE, tuple(detections), tuple(truth))


def test_perfect_detections_give_ap_one() -> None:
    truth = [_truth(_box(0, 0)), _truth(_box(50, 0)), _truth(_box(0, 50), LARGE)]
    detections = [_det(_box(0, 0), 0.9), _det(_box(50, 0), 0.4), _det(_box(0, 50), 0.8, LARGE)]
    small = score_class("x", SMALL, [_result(detections, truth)], OPERATING_SCORE)
    assert (small.ap, small.recall, small.precision, small.truth, small.predicted) == (1.0, 1.0, 1.0, 2, 2)
    assert score_class("x", LARGE, [_result(detections, truth)], OPERATING_SCORE).ap == 1.0


def test_false_positive_ranked_above_the_hit() -> None:
    # One object; a miss at 0.9 then the hit at 0.8: precision 0 then 1/2 at recall 1, so AP = 1/2.
    one = [_result([_det(_box(80, 80), 0.9), _det(_box(0, 0), 0.8)], [_truth(_box(0, 0))])]
    assert score_class("x", SMALL, one, OPERATING_SCORE).ap == pytest.approx(0.5)
    # Two objects in two images, ranked hit, miss, hit: recall 1/2 at precision 1, then recall 1 at
    # precision 2/3 (the 1/2 between is raised to 2/3 by interpolation): AP = 1/2 + 1/2 * 2/3 = 5/6.
    two = [
        _result([_det(_box(0, 0), 0.9), _det(_box(80, 80), 0.85)], [_truth(_box(0, 0))], "a"),
        _result([_det(_box(0, 0), 0.8)], [_truth(_box(0, 0))], "b"),
    ]
    assert [o for _, o in match(two, SMALL)] == [True, False, True]  # across images, best score first
    score = score_class("x", SMALL, two, OPERATING_SCORE)
    assert score.ap == pytest.approx(5 / 6)
    assert (score.recall, score.precision) == (1.0, pytest.approx(2 / 3))


def test_average_precision_of_ranked_outcomes() -> None:
    assert average_precision([True, False, True], 2) == pytest.approx(5 / 6)
    assert average_precision([True, None, True], 2) == 1.0  # ignored detections take no rank
    # Precision 1/2 at recall 2/3 is raised to the 3/5 reached later (all-point interpolation):
    # 1/3 * 1 + 1/3 * 3/5 + 1/3 * 3/5 = 11/15 (without interpolation it would be 0.7).
    assert average_precision([True, False, False, True, True], 3) == pytest.approx(11 / 15)
    assert average_precision([True], 4) == pytest.approx(0.25)  # recall 1/4 at precision 1
    assert average_precision([], 3) == 0.0
    with pytest.raises(ValueError, match="at least one true object"):
        average_precision([True], 0)


def test_difficult_objects_are_neither_hits_nor_misses() -> None:
    truth = [_truth(_box(0, 0)), _truth(_box(50, 0), difficult=True)]
    detections = [
        _det(_box(50, 0), 0.95),  # on the difficult object: ignored
        _det(_box(50.5, 0), 0.9),  # on it again: still ignored, never a duplicate
        _det(_box(0, 0), 0.8),
        _det(_box(0.5, 0), 0.7),  # a second box on a matched object: a false positive
    ]
    assert [o for _, o in match([_result(detections, truth)], SMALL)] == [None, None, True, False]
    score = score_class("x", SMALL, [_result(detections, truth)], OPERATING_SCORE)
    assert (score.truth, score.difficult, score.ignored_at_op, score.predicted_at_op) == (1, 1, 2, 4)
    assert score.ap == 1.0  # the hit is ranked first among the judged detections
    assert score.precision == 0.5


def test_matching_takes_the_best_unmatched_object_above_half() -> None:
    left, right = _box(0, 0), _box(2, 0)  # two objects overlapping each other by 2/3
    detections = [_det(_box(0, 0), 0.9), _det(_box(0.8, 0), 0.8)]
    # The second detection overlaps left (taken) by 0.85 and right by 0.79: it is right's hit. The
    # devkit would call it a miss, as it looks only at the best-overlapping object.
    assert [o for _, o in match([_result(detections, [_truth(left), _truth(right)])], SMALL)] == [True, True]
    # Half-overlap is IoU 1/3: a miss; other classes are never matched.
    assert [o for _, o in match([_result([_det(_box(5, 0), 0.9)], [_truth(left)])], SMALL)] == [False]
    assert match([_result([_det(_box(0, 0), 0.9, LARGE)], [_truth(left)])], SMALL) == []


def test_rotated_boxes_are_compared_as_polygons() -> None:
    turned = box_corners(50, 50, 20, 4, np.pi / 4)
    xs, ys = zip(*turned, strict=True)
    hull = _box(min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys))
    assert [o for _, o in match([_result([_det(turned, 0.9)], [_truth(turned)])], SMALL)] == [True]
    # The axis-aligned hull of a thin diagonal box holds it, but overlaps it far below 0.5.
    assert [o for _, o in match([_result([_det(hull, 0.9)], [_truth(turned)])], SMALL)] == [False]


# --- count error --------------------------------------------------------------------------------------


def test_count_error_per_image_and_its_mean() -> None:
    far = [_box(100 + 20 * i, 100) for i in range(10)]
    results = [
        # 4 true (and 1 difficult), 6 predicted at 0.3 or above, 2 under it: |6 - 4| / 4 = 0.5.
        _result(
            [_det(far[i], 0.3 + 0.1 * i) for i in range(6)] + [_det(far[6], 0.29), _det(far[7], 0.1)],
            [_truth(_box(0, 10 * i)) for i in range(4)] + [_truth(_box(50, 50), difficult=True)],
            "a",
        ),
        _result([_det(far[0], 0.9)], [], "b"),  # a negative: no error, but its false positive counts
        _result([_det(_box(0, 0), 0.9), _det(_box(0, 10), 0.9)], [_truth(_box(0, 0)), _truth(_box(0, 10))], "c"),
    ]
    rows = count_rows("x", SMALL, results, OPERATING_SCORE)
    assert [(r.image, r.truth, r.predicted, r.error) for r in rows] == [
        ("a", 4, 6, 0.5),
        ("b", 0, 1, None),
        ("c", 2, 2, 0.0),
    ]
    score = score_class("x", SMALL, results, OPERATING_SCORE)
    assert score.mean_count_error == pytest.approx(0.25)
    assert (score.predicted_at_op, score.matched_at_op, score.truth, score.images) == (9, 2, 6, 3)
    assert score_class("x", SMALL, results, 0.05).predicted_at_op == 11


def test_a_class_without_labels_has_no_scores() -> None:
    score = score_class("x", CONTAINER, [_result([_det(_box(0, 0), 0.9, CONTAINER)], [_truth(_box(0, 0))])], 0.3)
    assert (score.ap, score.recall, score.precision, score.mean_count_error) == (None, None, None, None)
    assert score.as_dict()["status"] == "no labels" and score.predicted_at_op == 1


# --- a synthetic DOTA folder ------------------------------------------------------------------------------

#: Objects of the synthetic image at 0.5 m: (class, centre x, centre y, length px, width px, angle, difficulty).
_OBJECTS = (
    (SMALL, 40, 40, 9, 4, 0.0, 0),
    (SMALL, 120, 60, 9, 4, 0.0, 0),
    (SMALL, 200, 40, 9, 4, np.pi / 2, 0),
    (SMALL, 60, 220, 9, 4, 0.0, 1),
    (LARGE, 60, 150, 24, 6, 0.0, 0),
    (LARGE, 180, 180, 24, 6, np.pi / 6, 0),
)


def _background(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (np.full((256, 256, 3), 90) + rng.integers(0, 6, (256, 256, 3))).astype(np.uint8)


def _dota(root: Path, header: str = "imagesource:GoogleEarth\ngsd:2.68220901489e-06\n") -> Path:
    """A DOTA folder: P0001 with bright vehicles and their labels, P0002 a negative (a plane label only)."""
    (root / "images").mkdir(parents=True)
    (root / "labelTxt").mkdir()
    image, lines = _background(1), [header]
    for cls, cx, cy, length, width, angle, difficulty in _OBJECTS:
        corners = box_corners(cx, cy, length, width, angle)
        cv2.fillPoly(image, [np.round(np.array(corners) * 16).astype(np.int32)], (230, 230, 230), shift=4)
        lines.append(" ".join(f"{v:.1f}" for xy in corners for v in xy) + f" {cls} {difficulty}\n")
    cv2.imwrite(str(root / "images" / "P0001.png"), image)
    (root / "labelTxt" / "P0001.txt").write_text("".join(lines))
    cv2.imwrite(str(root / "images" / "P0002.png"), _background(2))
    (root / "labelTxt" / "P0002.txt").write_text(header + "100 100 140 100 140 140 100 140 plane 0\r\n")
    cv2.imwrite(str(root / "images" / "P0003.png"), _background(3))  # no label: not scored
    (root / "labelTxt" / "P0004.txt").write_text(header)  # no image: not scored
    return root


def test_evaluate_estimates_the_gsd_where_the_header_is_implausible(tmp_path: Path) -> None:
    root = _dota(tmp_path)  # both headers say 2.68e-06 m
    extra = "".join(f"{x} 250 {x + 9} 250 {x + 9} 254 {x} 254 {SMALL} 0\n" for x in (10, 30, 50))
    with (root / "labelTxt" / "P0001.txt").open("a") as labels:
        labels.write(extra)  # six cars 9 px long, as drawn at 0.5 m: enough to measure
    result = evaluate(find_images(root), ["classic"])
    assert result.skipped == [] and {s.images for s in result.scores} == {2}  # scored, not skipped
    by_image = {e.image: e.as_dict() for e in result.estimated_gsd}
    assert by_image["P0001"]["gsd"] == pytest.approx(4.6 / 9, abs=1e-4) and by_image["P0001"]["cars"] == 6
    assert (by_image["P0002"]["gsd"], by_image["P0002"]["cars"]) == (FALLBACK_GSD_M, 0)  # a plane only
    assert by_image["P0002"]["gsd_header"] == "2.68220901489e-06"
    assert result.estimated_gsd[0].note() == (
        "P0001: gsd header '2.68220901489e-06' is not a GSD in 0.02-5.0 m; 0.511 m estimated from 6 labelled cars"
    )
    assert evaluate(find_images(root), ["classic"], gsd=0.5).estimated_gsd == []  # --gsd overrides all
    with pytest.raises(InputError, match="must be positive"):
        evaluate(find_images(root), ["classic"], gsd=0.0)
    with pytest.raises(NotFound, match="no object detector 'nope'"):
        evaluate(find_images(root), ["nope"], gsd=0.5)


# --- how figures were obtained ------------------------------------------------------------------------------


class _Learned(ObjectDetector):
    """A 'learned' detector for protocol tests: finds nothing, with a model card like the real one.

    The shipped model (``None``: none installed) was trained on ``shipped_on``; a fold folder holds
    ``vehicle-detector.json`` and a stand-in ``vehicle-detector.onnx``.
    """

    name = "learned"
    classes = (SMALL, LARGE, CONTAINER)
    work_gsd = 0.5
    shipped_on: tuple[str, ...] | None = ()

    @classmethod
    def available(cls, models: Path | None = None) -> bool:
        return cls.shipped_on is not None if models is None else (models / "vehicle-detector.onnx").is_file()

    @property
    def card(self) -> ModelCard:
        if self.models is None:
            metadata = {"trained_on": list(self.shipped_on or ())}
            return ModelCard("vehicle-detector", Path("vehicle-detector.onnx"), metadata)
        folder_metadata = json.loads((self.models / "vehicle-detector.json").read_text())
        return ModelCard("vehicle-detector", self.models / "vehicle-detector.onnx", folder_metadata)

    def detect_tile(self, rgb: np.ndarray) -> list[Detection]:
        return []


@pytest.fixture
def learned(monkeypatch: pytest.MonkeyPatch) -> type[_Learned]:
    base.names()  # the built-in detectors register first, so the fake replaces the real one
    monkeypatch.setitem(base._REGISTRY, "learned", _Learned)
    return _Learned


def _fold(folder: Path, trained_on: list[str]) -> None:
    folder.mkdir(parents=True)
    (folder / "vehicle-detector.onnx").write_bytes(b"stand-in")
    (folder / "vehicle-detector.json").write_text(json.dumps({"trained_on": trained_on}))


def _protocols(root: Path, models: Path | None = None) -> dict[tuple[str, str], str]:
    result = evaluate(find_images(root), ["classic", "learned"], models=models, gsd=0.5)
    return {(s.detector, s.cls): s.protocol for s in result.scores}


def test_protocol_labels_of_the_shipped_model(
    tmp_path: Path, learned: type[_Learned], monkeypatch: pytest.MonkeyPatch
) -> None:
    root = _dota(tmp_path / "data")
    monkeypatch.setattr(learned, "shipped_on", ("P0001", "P0002"))
    protocols = _protocols(root)
    assert protocols[("classic", SMALL)] == TRAINING_FREE
    assert protocols[("learned", SMALL)] == protocols[("learned", CONTAINER)] == IN_SAMPLE
    monkeypatch.setattr(learned, "shipped_on", ("P0002",))
    assert _protocols(root)[("learned", LARGE)] == "in-sample (1 of 2 images)"
    monkeypatch.setattr(learned, "shipped_on", ("P9999",))
    assert _protocols(root)[("learned", LARGE)] == HELD_OUT_UNSEEN


def test_fold_models_give_held_out_figures(
    tmp_path: Path, learned: type[_Learned], monkeypatch: pytest.MonkeyPatch
) -> None:
    root = _dota(tmp_path / "data")
    monkeypatch.setattr(learned, "shipped_on", ("P0001", "P0002"))
    folds = tmp_path / "folds"
    _fold(folds / "fold0", ["P0002"])  # leaves out P0001
    _fold(folds / "fold1", ["P0001"])  # leaves out P0002
    (folds / "fold2").mkdir()  # a fold without the model is passed over
    assert _protocols(root, folds)[("learned", SMALL)] == HELD_OUT_KFOLD
    assert _protocols(root, folds)[("classic", SMALL)] == TRAINING_FREE
    monkeypatch.setattr(learned, "shipped_on", None)
    assert _protocols(root, folds)[("learned", SMALL)] == HELD_OUT_KFOLD  # fold models need no shipped one
    result = evaluate(find_images(root), ["learned"], gsd=0.5)
    assert result.scores == [] and "'learned' is not installed" in result.skipped[0].reason
    monkeypatch.setattr(learned, "shipped_on", ("P0001", "P0002"))
    (folds / "fold1" / "vehicle-detector.onnx").unlink()  # P0002 has no held-out model: never silently
    assert _protocols(root, folds)[("learned", SMALL)] == "in-sample (1 of 2 images)"


def test_learned_scores_classes_with_labels_and_says_no_labels_otherwise(
    tmp_path: Path, learned: type[_Learned]
) -> None:
    result = evaluate(find_images(_dota(tmp_path)), ["learned"], gsd=0.5)
    by_class = {s.cls: s.as_dict() for s in result.scores}
    assert (by_class[SMALL]["ap50"], by_class[SMALL]["truth"], by_class[SMALL]["recall"]) == (0.0, 3, 0.0)
    assert by_class[CONTAINER]["status"] == "no labels" and by_class[CONTAINER]["ap50"] is None
    assert {c.cls for c in result.counts} == {SMALL, LARGE}  # no count rows for a class without labels


# --- the command ------------------------------------------------------------------------------------------------


def test_eval_detect_cli_json(tmp_path: Path) -> None:
    root = _dota(tmp_path / "dota")
    p = run_sitewatch("eval", "detect", "--dataset", tmp_path, "--detector", "classic", "--gsd", "0.5", "--json")
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert (out["dataset"], out["iou"], out["min_score"], out["gsd"], out["skipped"], out["estimated_gsd"]) == (
        str(tmp_path),
        "oriented > 0.5",
        None,  # each detector's own operating score
        0.5,
        [],
        [],
    )
    small, large = out["scores"]
    assert small["min_score"] == large["min_score"] == OPERATING_SCORE  # the classic detector's
    assert (small["detector"], small["class"], small["protocol"]) == ("classic", SMALL, TRAINING_FREE)
    assert (small["images"], small["truth"], small["difficult"], large["truth"]) == (2, 3, 1, 2)
    for row in (small, large):
        assert row["ap50"] >= 0.9 and row["recall"] == 1.0, row
    assert (small["ignored_at_op"], small["predicted_at_op"]) == (1, 4)  # the difficult car is found, not judged
    counts = {(c["image"], c["class"]): (c["truth"], c["predicted"], c["error"]) for c in out["counts"]}
    # ... but counted: the true count leaves difficult objects out, the predicted count cannot tell.
    assert counts[("P0001", SMALL)] == (3, 4, 0.3333)
    assert small["mean_count_error"] == 0.3333 and large["mean_count_error"] == 0.0
    assert counts[("P0001", LARGE)] == (2, 2, 0.0)
    assert counts[("P0002", SMALL)] == (0, 0, None)
    assert (root / "images" / "P0001.png").is_file()


def test_eval_detect_cli_table_markdown_and_errors(tmp_path: Path) -> None:
    _dota(tmp_path)
    md = run_sitewatch("eval", "detect", "--dataset", tmp_path, "--detector", "classic", "--markdown")
    assert md.returncode == 0, md.stderr
    assert "| classic | small-vehicle | training-free | 2 | 3 |" in md.stdout  # scored at estimated GSDs
    for image in ("P0001", "P0002"):
        assert f"\n{image}: gsd header '2.68220901489e-06' is not a GSD in 0.02-5.0 m and fewer than 5" in md.stdout
    estimated = json.loads(
        run_sitewatch("eval", "detect", "--dataset", tmp_path, "--detector", "classic", "--json").stdout
    )
    assert [(e["image"], e["gsd"], e["cars"]) for e in estimated["estimated_gsd"]] == [
        ("P0001", 0.15, 0),
        ("P0002", 0.15, 0),
    ]
    coarse = run_sitewatch("eval", "detect", "--dataset", tmp_path, "--detector", "classic", "--gsd", "2", "--markdown")
    assert coarse.returncode == 0, coarse.stderr
    assert coarse.stdout.splitlines() == [
        "nothing scored",
        "classic: skipped P0001, P0002: GSD 2.00 m is coarser than 1.2 m: classic cannot resolve small-vehicle, "
        "large-vehicle",
    ]
    table = run_sitewatch("eval", "detect", "--dataset", tmp_path, "--detector", "classic", "--gsd", "0.5")
    assert table.returncode == 0, table.stderr
    assert "AP at oriented IoU > 0.5" in table.stdout and "training-free" in table.stdout
    md = run_sitewatch("eval", "detect", "--dataset", tmp_path, "--gsd", "0.5", "--markdown", "--detector", "classic")
    header = md.stdout.splitlines()[0]
    assert header == (
        "| detector | class | protocol | images | GT | AP50 (oriented) | op score | recall | predicted@op | count err |"
    )
    assert "| classic | P0001 | large-vehicle | 2 | 2 | 0.000 |" in md.stdout
    missing = run_sitewatch("eval", "detect", "--dataset", tmp_path / "nope")
    assert missing.returncode == 1 and missing.stderr.strip() == f"error: {tmp_path / 'nope'}: not a folder"
    (tmp_path / "bare").mkdir()
    bare = run_sitewatch("eval", "detect", "--dataset", tmp_path / "bare")
    assert bare.returncode == 1 and "no DOTA images with labels" in bare.stderr
    assert len(bare.stderr.strip().splitlines()) == 1


def test_both_commands_default_to_each_detectors_operating_score(tmp_path: Path) -> None:
    from sitewatch.cli import detect as cli_detect
    from sitewatch.cli import eval as cli_eval

    for command in (cli_eval.detect, cli_detect.detect):
        assert inspect.signature(command).parameters["min_score"].default is None
    assert base.get("classic").operating_score() == OPERATING_SCORE
    # one car found at 0.5, false alarms at 0.9 and 0.2: F1 0.5 under 0.2, 0.67 up to 0.5, then 0
    found = [_det(_box(0, 0), 0.5), _det(_box(200, 0), 0.9), _det(_box(0, 200), 0.2)]
    best = best_operating_score("x", [_result(found, [_truth(_box(0, 0))])], [SMALL])
    assert best in SCORE_GRID and 0.2 < best <= 0.5


# --- the real sample ------------------------------------------------------------------------------------------


@pytest.mark.datasets
def test_classic_on_the_dota_sample(datasets: Path) -> None:
    result = evaluate(find_images(datasets / "dota"), ["classic"])
    by_class = {s.cls: s for s in result.scores}
    assert set(by_class) == {SMALL, LARGE}
    for score in by_class.values():
        assert score.ap is not None and 0.0 < score.ap < 1.0, score
        assert score.images == 7 and score.protocol == TRAINING_FREE
    # The README's counts (difficult ones included), less the patch's 2 zero-area cars: every image is scored.
    assert by_class[SMALL].truth + by_class[SMALL].difficult == 15 + 20 + 9 + 263 - 2
    assert by_class[LARGE].truth + by_class[LARGE].difficult == 40 + 87 + 3 + 32
    assert result.skipped == []
    notes = {e.image: e.note() for e in result.estimated_gsd}
    assert set(notes) == {"P0168", "P1478__1__853___962"}
    assert "'2.68220901489e-06'" in notes["P0168"] and notes["P0168"].endswith("0.15 m assumed")
    assert notes["P1478__1__853___962"].startswith("P1478__1__853___962: no gsd header; 0.131 m estimated from ")
    assert {(c.image, c.cls) for c in result.counts} >= {
        ("P0003", SMALL),
        ("P0004", LARGE),
        ("P1478__1__853___962", SMALL),
    }
