"""``sitewatch detect``: the contract of DESIGN.md and the classic vehicle baseline on synthetic scenes."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from affine import Affine
from PIL import Image
from pyproj import Transformer

from sitewatch.detect.vehicles import detect_vehicles
from tests.conftest import run_sitewatch, write_tif

GSD = 0.5
# (centre x, centre y, length m, width m, angle deg, value, class)
OBJECTS = [
    (60, 60, 4.5, 1.8, 0, 230, "small-vehicle"),
    (160, 70, 4.5, 1.8, 35, 25, "small-vehicle"),
    (70, 170, 4.5, 1.8, 90, 220, "small-vehicle"),
    (170, 180, 4.5, 1.8, -60, 30, "small-vehicle"),
    (260, 130, 12.0, 2.5, 20, 235, "large-vehicle"),
]


def _box(cx: float, cy: float, length: float, width: float, angle: float) -> np.ndarray:
    return cv2.boxPoints(((cx, cy), (length / GSD, width / GSD), angle)).astype(np.float32)


def _scene(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    ground = rng.normal(120, 6, (320, 340)).astype(np.float32)
    ground = cv2.GaussianBlur(ground, (0, 0), 1.0) + np.linspace(-15, 15, 340, dtype=np.float32)[None, :]
    # Objects drawn at 8x and averaged down, as a sensor would see them (no rasterisation bias).
    fine = np.zeros((320 * 8, 340 * 8), np.float32)
    cover = np.zeros_like(fine)
    for cx, cy, length, width, angle, value, _ in OBJECTS:
        poly = ((_box(cx, cy, length, width, angle) + 0.5) * 8 - 0.5).round().astype(np.int32)
        cv2.fillPoly(fine, [poly], float(value))
        cv2.fillPoly(cover, [poly], 1.0)
    fine_v = cv2.resize(fine, (340, 320), interpolation=cv2.INTER_AREA)
    frac = cv2.resize(cover, (340, 320), interpolation=cv2.INTER_AREA)
    ground = ground * (1 - frac) + fine_v
    grey = np.clip(ground, 0, 255).astype(np.uint8)
    return np.stack([grey, grey, grey])


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    inter, _ = cv2.intersectConvexConvex(a.astype(np.float32), b.astype(np.float32))
    union = cv2.contourArea(a.astype(np.float32)) + cv2.contourArea(b.astype(np.float32)) - inter
    return float(inter / union) if union > 0 else 0.0


def _parse(path: Path) -> list[tuple[np.ndarray, str, float]]:
    rows = []
    for line in path.read_text().splitlines():
        parts = line.split()
        assert len(parts) == 10
        rows.append((np.array([float(v) for v in parts[:8]]).reshape(4, 2), parts[8], float(parts[9])))
    return rows


def test_baseline_finds_cars_and_truck() -> None:
    found = detect_vehicles(_scene(), GSD)
    hits = 0
    for cx, cy, length, width, angle, _, cls in OBJECTS:
        truth = _box(cx, cy, length, width, angle)
        best = max(found, key=lambda d: _iou(np.array(d.corners), truth))
        if _iou(np.array(best.corners), truth) > 0.5 and best.cls == cls:
            hits += 1
    assert hits >= 4
    assert len(found) <= len(OBJECTS) + 2
    assert all(0 <= d.score <= 1 for d in found)


def test_baseline_is_gsd_aware() -> None:
    big = cv2.resize(_scene().transpose(1, 2, 0), None, fx=4, fy=4, interpolation=cv2.INTER_NEAREST)
    found = detect_vehicles(big.transpose(2, 0, 1), GSD / 4)
    classes = sorted(d.cls for d in found if d.score > 0.3)
    assert classes.count("large-vehicle") >= 1 and classes.count("small-vehicle") >= 3
    assert detect_vehicles(_scene(), 10.0) == []


def test_cli_txt_and_json(tmp_path: Path) -> None:
    img = tmp_path / "scene.png"
    Image.fromarray(_scene().transpose(1, 2, 0)).save(img)
    out = tmp_path / "dets.txt"
    p = run_sitewatch("detect", img, "--gsd", "0.5", "--min-score", "0.01", "-o", out, "--json")
    assert p.returncode == 0, p.stderr
    summary = json.loads(p.stdout.strip().splitlines()[-1])
    assert {"gsd_m", "resolvable", "counts", "seconds"} <= set(summary)
    assert summary["resolvable"] is True and summary["gsd_m"] == 0.5
    rows = _parse(out)
    assert rows and all(0 <= s <= 1 for _, _, s in rows)
    assert {c for _, c, _ in rows} <= {"small-vehicle", "large-vehicle"}
    assert sum(summary["counts"].values()) == len(rows)


def test_cli_coarse_gsd_is_not_resolvable(tmp_path: Path) -> None:
    img = tmp_path / "scene.png"
    Image.fromarray(_scene().transpose(1, 2, 0)).save(img)
    out = tmp_path / "coarse.txt"
    p = run_sitewatch("detect", img, "--gsd", "10", "-o", out, "--json")
    assert p.returncode == 0, p.stderr
    summary = json.loads(p.stdout.strip().splitlines()[-1])
    assert summary["resolvable"] is False and summary["reason"]
    assert out.exists() and out.read_text() == ""


@pytest.mark.parametrize("case", ["no-gsd", "missing"])
def test_cli_bad_input_is_one_line(tmp_path: Path, case: str) -> None:
    img = tmp_path / "scene.png"
    if case == "no-gsd":
        Image.fromarray(_scene().transpose(1, 2, 0)).save(img)
        args: list[str | Path] = ["detect", img, "-o", tmp_path / "d.txt"]
    else:
        args = ["detect", tmp_path / "missing.png", "--gsd", "0.3", "-o", tmp_path / "d.txt"]
    p = run_sitewatch(*args)
    assert p.returncode == 1
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in p.stderr
    if case == "no-gsd":
        assert "--gsd" in lines[0]
    assert not (tmp_path / "d.txt").exists()


def test_cli_geojson_in_wgs84(tmp_path: Path) -> None:
    transform = Affine(0.5, 0, 367000.0, 0, -0.5, 4104000.0)
    img = write_tif(tmp_path / "scene.tif", _scene(), crs="EPSG:32615", transform=transform)
    out = tmp_path / "dets.geojson"
    p = run_sitewatch("detect", img, "--min-score", "0.01", "-o", out, "--json")
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout.strip().splitlines()[-1])["gsd_m"] == 0.5
    features = json.loads(out.read_text())["features"]
    assert features and {"class", "score"} <= set(features[0]["properties"])
    lon0, lat0 = Transformer.from_crs("EPSG:32615", "EPSG:4326", always_xy=True).transform(367085.0, 4103920.0)
    for feature in features:
        ring = np.array(feature["geometry"]["coordinates"][0])
        assert ring.shape == (5, 2)
        assert np.allclose(ring.mean(axis=0), (lon0, lat0), atol=0.003)


def test_cli_geojson_needs_georeference(tmp_path: Path) -> None:
    img = tmp_path / "scene.png"
    Image.fromarray(_scene().transpose(1, 2, 0)).save(img)
    p = run_sitewatch("detect", img, "--gsd", "0.5", "-o", tmp_path / "d.geojson")
    assert p.returncode == 1 and len(p.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "d.geojson").exists()


def test_cli_on_a_dota_image(tmp_path: Path, datasets: Path) -> None:
    dota = datasets / "dota"
    labels = dota / "labelTxt" / "P0003.txt"
    if not labels.exists():
        pytest.skip(f"{labels} not found")
    header = dict(ln.split(":", 1) for ln in labels.read_text().splitlines()[:2] if ":" in ln)
    out = tmp_path / "P0003.txt"
    p = run_sitewatch("detect", dota / "images" / "P0003.png", "--gsd", header["gsd"], "--min-score", "0.01", "-o", out)
    assert p.returncode == 0, p.stderr
    width, height = Image.open(dota / "images" / "P0003.png").size
    for corners, cls, score in _parse(out):
        assert cls in {"small-vehicle", "large-vehicle"} and 0 <= score <= 1
        assert (corners[:, 0] >= -2).all() and (corners[:, 0] <= width + 2).all()
        assert (corners[:, 1] >= -2).all() and (corners[:, 1] <= height + 2).all()
