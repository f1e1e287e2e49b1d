"""The detector's training data and network: targets decode back to their boxes, synthesis labels
what it draws, folds keep both kinds of image, and a trained model runs through ONNX Runtime."""

from __future__ import annotations

import importlib.util
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from sitewatch.detect.base import CONTAINER, LARGE, SMALL
from sitewatch.detect.boxes import oriented_iou
from sitewatch.detect.dota import LabelledImage, LabelledObject, estimate_gsd
from sitewatch.detect.model import MODEL_CLASSES, decode
from sitewatch.train.detect_data import (
    Box,
    box_from_corners,
    paste_containers,
    paste_vehicles,
    targets,
)

needs_torch = pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="needs the train extra (torch)")


def test_box_corners_round_trip() -> None:
    box = Box(40.0, 30.0, 18.0, 5.0, 0.7, 1)
    back = box_from_corners(box.corners(), 1)
    assert back.cx == pytest.approx(40.0)
    assert back.length == pytest.approx(18.0)
    assert back.width == pytest.approx(5.0)
    assert math.cos(2 * back.angle) == pytest.approx(math.cos(1.4))


def test_targets_decode_back_to_their_boxes() -> None:
    boxes = [
        Box(20.3, 40.8, 9.2, 3.6, 0.3, MODEL_CLASSES.index(SMALL)),
        Box(23.9, 40.2, 9.0, 3.5, 0.3, MODEL_CLASSES.index(SMALL)),  # parked beside the first
        Box(90.0, 60.0, 28.0, 5.0, 2.0, MODEL_CLASSES.index(LARGE)),
        Box(60.0, 100.0, 24.4, 4.9, 1.1, MODEL_CLASSES.index(CONTAINER)),
    ]
    heatmap, regression, mask, weight = targets(boxes, 128)
    assert mask.sum() == len(boxes)
    assert weight.min() == 1.0
    found = decode(heatmap, regression, floor=0.99)
    assert len(found) == len(boxes)
    for box in boxes:
        best = max(found, key=lambda d: oriented_iou(d.corners, [tuple(c) for c in box.corners()]))
        assert best.cls == MODEL_CLASSES[box.cls]
        assert oriented_iou(best.corners, [tuple(c) for c in box.corners()]) > 0.9


def test_difficult_objects_are_ignored_not_negative() -> None:
    heatmap, _, mask, weight = targets([Box(64.0, 64.0, 20.0, 6.0, 0.0, 0, ignore=True)], 128)
    assert heatmap.max() == 0.0 and mask.sum() == 0
    assert weight[32, 32] == 0.0 and weight[5, 5] == 1.0


def test_synthesis_labels_what_it_draws() -> None:
    rng = np.random.default_rng(3)
    ground = np.full((3, 160, 160), 0.4, np.float32)
    drawn_any = False
    for _ in range(10):
        image, boxes = paste_containers(ground, [], rng)
        assert all(MODEL_CLASSES[b.cls] == CONTAINER for b in boxes)
        for b in boxes:
            inside = image[:, int(b.cy), int(b.cx)]
            assert np.abs(inside - 0.4).max() > 0.02  # something was painted at its centre
            drawn_any = True
        image, boxes = paste_vehicles(ground, [], rng)
        assert {MODEL_CLASSES[b.cls] for b in boxes} <= {SMALL, LARGE}
    assert drawn_any
    assert np.all(ground == np.float32(0.4))  # the input is not modified


def test_gsd_estimated_from_cars_when_the_header_is_missing() -> None:
    car = ((0.0, 0.0), (46.0, 0.0), (46.0, 18.0), (0.0, 18.0))
    objects = tuple(LabelledObject(tuple((x + 60 * k, y) for x, y in car), SMALL, 0) for k in range(6))
    image = LabelledImage("x", Path("x.png"), Path("x.txt"), None, objects)
    assert estimate_gsd(image) == pytest.approx(0.1)
    assert estimate_gsd(replace(image, gsd=0.3)) == 0.3


@needs_torch
def test_fold_split_keeps_vehicle_images_and_negatives_in_every_fold(tmp_path: Path) -> None:
    from sitewatch.train.detect import fold_split

    (tmp_path / "images").mkdir()
    (tmp_path / "labelTxt").mkdir()
    for name, cls in [("a", SMALL), ("b", SMALL), ("c", "plane"), ("d", LARGE), ("e", "ship")]:
        (tmp_path / "images" / f"{name}.png").write_bytes(b"x")
        (tmp_path / "labelTxt" / f"{name}.txt").write_text(f"0 0 10 0 10 5 0 5 {cls} 0\n")
    left_out = [set(fold_split(tmp_path, 2, k)) for k in range(2)]
    assert left_out[0] | left_out[1] == {"a", "b", "c", "d", "e"}
    assert not left_out[0] & left_out[1]
    for held in left_out:
        assert held & {"a", "b", "d"} and held & {"c", "e"}


@needs_torch
def test_a_trained_model_runs_through_onnx_runtime(tmp_path: Path, datasets: Path) -> None:
    from sitewatch.detect import base, sliced
    from sitewatch.train.detect import DETECT_SETTINGS, train
    from sitewatch.train.detect_data import Augment

    settings = replace(DETECT_SETTINGS, steps=2, batch=2, warmup=1, pretrained=False)
    augment = Augment(crop=64)
    path = train(tmp_path, datasets / "dota", exclude=["P0003"], settings=settings, augment=augment, demo_seeds=())
    assert path.is_file()
    detector = base.get("learned", tmp_path)
    card = detector.card  # type: ignore[attr-defined]
    assert "P0003" not in card.metadata["trained_on"] and card.metadata["held_out"] == ["P0003"]
    assert "academic" in card.card_text
    image = np.random.default_rng(0).integers(0, 255, (3, 300, 200)).astype(np.uint8)
    result = sliced.detect_array(image, 0.3, detector)
    assert result.resolvable
    assert all(d.cls in MODEL_CLASSES and 0 <= d.score <= 1 for d in result.detections)

    from sitewatch.train.quantize import quantize

    int8 = quantize(tmp_path, tmp_path / "int8", datasets / "dota")
    assert int8.stat().st_size < path.stat().st_size / 2
    quantized = base.get("learned", tmp_path / "int8")
    assert "int8" in quantized.card.metadata["precision"]  # type: ignore[attr-defined]
    assert sliced.detect_array(image, 0.3, quantized).resolvable


def test_demo_scenes_as_synthetic_sites_never_the_shipped_demo(tmp_path: Path) -> None:
    from sitewatch.train.detect_data import demo_sources

    with pytest.raises(ValueError, match="seed 7"):
        demo_sources([7], tmp_path)
    sources = demo_sources([11], tmp_path)
    assert sources and all(s.synthetic and s.store_gsd == 0.5 for s in sources)
    classes = {MODEL_CLASSES[b.cls] for s in sources for b in s.boxes}
    assert classes == {SMALL, LARGE, CONTAINER}
    source = sources[0]
    assert source.rgb.dtype == np.float32 and source.rgb.min() >= 0.0 and source.rgb.max() <= 1.0
    for box in source.boxes:  # every box lies on the scene
        assert 0 <= box.cx < source.rgb.shape[2] and 0 <= box.cy < source.rgb.shape[1]
