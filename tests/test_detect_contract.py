"""``sitewatch detect``: the contract of DESIGN.md and the classic vehicle baseline on synthetic scenes."""

from __future__ import annotations

import json
import subprocess
import sys
import tracemalloc
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import rasterio
from affine import Affine
from PIL import Image
from pyproj import Transformer
from rasterio.io import DatasetReader
from rasterio.windows import Window

from sitewatch.detect import base, sliced
from sitewatch.detect.boxes import Detection
from sitewatch.detect.vehicles import CLASSES, ClassicVehicles, detect_vehicles
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


def test_classic_is_registered_and_runs_sliced() -> None:
    detector = base.get("classic")
    assert isinstance(detector, ClassicVehicles) and detector.name == "classic" and "classic" in base.names()
    assert detector.classes == CLASSES == ("small-vehicle", "large-vehicle")
    scene = _scene()
    direct = detect_vehicles(scene, GSD)
    assert all(isinstance(d, Detection) for d in direct)
    result = sliced.detect_array(scene, GSD, detector)
    assert result.resolvable and result.slices == 1 and set(result.counts()) == set(CLASSES)
    hits = 0
    for cx, cy, length, width, angle, _, cls in OBJECTS:
        truth = _box(cx, cy, length, width, angle)
        if any(_iou(np.array(d.corners), truth) > 0.5 and d.cls == cls for d in result.detections):
            hits += 1
    assert hits >= 4


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
    assert {"gsd_m", "resolvable", "counts", "seconds", "detector"} <= set(summary)
    assert summary["resolvable"] is True and summary["gsd_m"] == 0.5 and "reason" not in summary
    assert summary["detector"] in base.names()
    rows = _parse(out)
    assert rows and all(0 <= s <= 1 for _, _, s in rows)
    assert {c for _, c, _ in rows} <= set(base.get(summary["detector"]).classes)
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


def test_cli_explicit_classic_detector(tmp_path: Path) -> None:
    img = tmp_path / "scene.png"
    Image.fromarray(_scene().transpose(1, 2, 0)).save(img)
    out = tmp_path / "dets.txt"
    p = run_sitewatch("detect", img, "--gsd", "0.5", "--detector", "classic", "-o", out, "--json")
    assert p.returncode == 0, p.stderr
    summary = json.loads(p.stdout.strip().splitlines()[-1])
    assert summary["detector"] == "classic" and set(summary["counts"]) == set(CLASSES)
    rows = _parse(out)
    assert len(rows) == sum(summary["counts"].values()) >= 4 and all(s >= 0.3 for _, _, s in rows)
    coarse = run_sitewatch("detect", img, "--gsd", "3", "--detector", "classic", "-o", out, "--json")
    summary = json.loads(coarse.stdout.strip().splitlines()[-1])
    assert summary["resolvable"] is False and "classic" in summary["reason"] and out.read_text() == ""


BAD_INPUTS = ["no-gsd", "missing", "empty", "not-an-image", "unknown-detector", "learned-not-installed", "bad-models"]


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_cli_bad_input_is_one_line(tmp_path: Path, case: str) -> None:
    img = tmp_path / "scene.png"
    Image.fromarray(_scene().transpose(1, 2, 0)).save(img)
    out = tmp_path / "d.txt"
    args: list[str | Path] = ["detect", img, "--gsd", "0.5", "-o", out]
    if case == "no-gsd":
        args = ["detect", img, "-o", out]
    elif case == "missing":
        args[1] = tmp_path / "missing.png"
    elif case == "empty":
        args[1] = tmp_path / "empty.png"
        args[1].write_bytes(b"")
    elif case == "not-an-image":
        args[1] = tmp_path / "notes.png"
        args[1].write_text("not an image\n" * 50)
    elif case == "unknown-detector":
        args += ["--detector", "yolo"]
    elif case == "learned-not-installed":  # an empty model folder: never installed, whatever ships
        (tmp_path / "no-models").mkdir()
        args += ["--detector", "learned", "--models", tmp_path / "no-models"]
    else:
        args += ["--models", tmp_path / "no-such-folder"]
    p = run_sitewatch(*args)
    assert p.returncode == 1
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in p.stderr, p.stderr
    expected = {
        "no-gsd": "--gsd",
        "empty": "empty file",
        "unknown-detector": "'yolo'",
        "learned-not-installed": "not installed",
        "bad-models": "--models",
    }
    assert expected.get(case, "") in lines[0]
    assert not out.exists() and not list(tmp_path.glob(".d.txt*"))


def test_help_lists_installed_classes_without_slowing_the_cli() -> None:
    p = run_sitewatch("detect", "--help")
    assert p.returncode == 0 and "--detector" in p.stdout
    text = " ".join(p.stdout.split())
    installed = [base.get(n) for n in base.names() if _installed(n)]
    assert installed and all(c in text for d in installed for c in d.classes)
    # building the CLI and its top-level help imports no detector (nor numpy, OpenCV, ONNX Runtime)
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from sitewatch.cli.main import _register_commands, app\n"
        "_register_commands()\n"
        "result = CliRunner().invoke(app, ['--help'])\n"
        "assert result.exit_code == 0 and 'detect' in result.output, result.output\n"
        "heavy = [m for m in ('numpy', 'cv2', 'shapely', 'onnxruntime', 'sitewatch.detect') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    check = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert check.returncode == 0, check.stderr


def _installed(name: str) -> bool:
    try:
        base.get(name)
    except Exception:
        return False
    return True


def test_cli_geojson_in_wgs84(tmp_path: Path) -> None:
    transform = Affine(0.5, 0, 367000.0, 0, -0.5, 4104000.0)
    img = write_tif(tmp_path / "scene.tif", _scene(), crs="EPSG:32615", transform=transform)
    out = tmp_path / "dets.geojson"
    # the classic detector outlines the drawn vehicles to the pixel: this tests the georeferencing
    p = run_sitewatch("detect", img, "--detector", "classic", "--min-score", "0.01", "-o", out, "--json")
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout.strip().splitlines()[-1])["gsd_m"] == 0.5
    features = json.loads(out.read_text())["features"]
    assert features and {"class", "score"} <= set(features[0]["properties"])
    lon0, lat0 = Transformer.from_crs("EPSG:32615", "EPSG:4326", always_xy=True).transform(367085.0, 4103920.0)
    for feature in features:
        ring = np.array(feature["geometry"]["coordinates"][0])
        assert ring.shape == (5, 2)
        assert np.allclose(ring.mean(axis=0), (lon0, lat0), atol=0.003)
    # each object lands where it was drawn: pixel centre (cx, cy) is (x0 + (cx + 0.5) * 0.5, ...)
    to_utm = Transformer.from_crs("EPSG:4326", "EPSG:32615", always_xy=True)
    errors = []
    for cx, cy, *_ in OBJECTS:
        x, y = transform @ (cx + 0.5, cy + 0.5)
        centres = [
            np.array(to_utm.transform(*np.array(f["geometry"]["coordinates"][0][:4]).T)).mean(axis=1) for f in features
        ]
        errors.append(min(float(np.hypot(*(c - (x, y)))) for c in centres))
    assert float(np.median(errors)) < 0.2, errors  # metres; half a pixel off would be 0.35


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
        assert cls in {"small-vehicle", "large-vehicle", "container"} and 0 <= score <= 1
        assert (corners[:, 0] >= -2).all() and (corners[:, 0] <= width + 2).all()
        assert (corners[:, 1] >= -2).all() and (corners[:, 1] <= height + 2).all()


@pytest.mark.slow
def test_large_image_is_read_window_by_window(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A 6000² RGB GeoTIFF (108 MB of pixels) goes through in 1088² windows, in memory bounded by a window."""
    size, block = 6000, 512
    path = tmp_path / "large.tif"
    profile: dict[str, Any] = {
        "driver": "GTiff",
        "width": size,
        "height": size,
        "count": 3,
        "dtype": "uint8",
        "crs": "EPSG:32615",
        "transform": Affine(0.5, 0, 367000.0, 0, -0.5, 4104000.0),
        "tiled": True,
        "blockxsize": block,
        "blockysize": block,
        "compress": "deflate",
    }
    car = np.full((3, 4, 9), 235, np.uint8)  # 4.5 x 2 m at 0.5 m
    with rasterio.open(path, "w", **profile) as dst:
        for top in range(0, size, block):
            rows = min(block, size - top)
            strip = np.full((3, rows, size), 110, np.uint8)
            strip[:, ::7, ::5] = 118  # a little texture for the radiometric scaling
            for col in range(300, size - 300, 1500):
                strip[:, 200:204, col : col + 9] = car
            dst.write(strip, window=Window(0, top, size, rows))

    reads: list[tuple[int, int]] = []
    original = DatasetReader.read

    def spy(self: DatasetReader, *args: Any, **kwargs: Any) -> np.ndarray:
        data: np.ndarray = original(self, *args, **kwargs)
        reads.append((data.shape[1], data.shape[2]))
        return data

    monkeypatch.setattr(DatasetReader, "read", spy)
    detector = base.get("classic")
    tracemalloc.start()
    try:
        result = sliced.detect_file(path, None, detector)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    window = sliced.SLICE_PX + 2 * detector.context_px
    stats_read, *windows = reads
    assert stats_read[0] * stats_read[1] <= 1.1 * sliced.STATS_PIXELS
    assert len(windows) == result.slices == 36 and max(max(w) for w in windows) <= window
    # numpy's allocations (tracemalloc sees them) stay at a few float32 copies of one window, under
    # the image's own uint8 size and far under the 432 MB it would take as float32
    full = 3 * size * size
    window_float = 3 * window * window * 4
    assert peak < min(full, 6 * window_float), f"traced peak {peak / 1e6:.0f} MB for a {full / 1e6:.0f} MB image"
    assert result.gsd == pytest.approx(0.5) and result.resolvable
    rows_of_cars = -(-size // block)
    assert result.counts()["small-vehicle"] >= rows_of_cars * 3
