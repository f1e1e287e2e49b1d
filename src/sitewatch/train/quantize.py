"""Static int8 quantisation of a trained detector with ONNX Runtime, calibrated on its training images.

int8 convolutions run about twice as fast as float32 on a CPU without a GPU. Static quantisation
(QDQ, per-channel weights, activations calibrated on real crops) keeps accuracy where dynamic
quantisation of a convolutional network does not; whether it keeps *enough* is measured, not
assumed: ``sitewatch eval detect`` scores the int8 and float32 models on the same held-out images,
and the int8 one ships only where the loss is small.

Calibration crops come from the images the model trained on (never held-out ones), resampled to
the model's GSD and normalised exactly as inference does (:mod:`sitewatch.detect.sliced`).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path

import cv2
import numpy as np

from sitewatch.detect.dota import estimate_gsd, find_images
from sitewatch.detect.model import MODEL_GSD, MODEL_NAME, normalise
from sitewatch.detect.sliced import scaling
from sitewatch.io.raster import read_array

#: Side of a calibration crop in model pixels, and how many crops are used.
CALIBRATION_CROP = 256
CALIBRATION_CROPS = 24


def calibration_crops(data_root: Path, image_ids: Sequence[str], seed: int = 0) -> list[np.ndarray]:
    """Normalised ``(1, 3, s, s)`` crops of IMAGE_IDS under DATA_ROOT at the model's GSD."""
    rng = np.random.default_rng(seed)
    wanted = set(image_ids)
    crops: list[np.ndarray] = []
    images = [i for i in find_images(data_root) if i.image_id in wanted]
    per_image = max(1, CALIBRATION_CROPS // max(1, len(images)))
    for image in images:
        data, _ = read_array(image.image_path)
        rgb = data[:3].astype(np.float32)
        stats = scaling(rgb[:, ::4, ::4])
        unit = np.clip((rgb - stats[:, :1, None]) / (stats[:, 1:, None] - stats[:, :1, None]), 0, 1)
        factor = estimate_gsd(image) / MODEL_GSD
        size = (max(1, round(unit.shape[2] * factor)), max(1, round(unit.shape[1] * factor)))
        small = np.stack([cv2.resize(b, size, interpolation=cv2.INTER_AREA) for b in unit])
        rows, cols = small.shape[1:]
        side = min(CALIBRATION_CROP, rows, cols) // 16 * 16
        for _ in range(per_image):
            r, c = int(rng.integers(0, rows - side + 1)), int(rng.integers(0, cols - side + 1))
            crops.append(normalise(small[:, r : r + side, c : c + side])[np.newaxis])
    return crops


def quantize(model_dir: Path, out_dir: Path, data_root: Path) -> Path:
    """Write an int8 copy of MODEL_DIR's detector into OUT_DIR (with its JSON and card, marked int8).

    Returns:
        The int8 ``.onnx`` path.
    """
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    source = model_dir / f"{MODEL_NAME}.onnx"
    metadata = json.loads((model_dir / f"{MODEL_NAME}.json").read_text(encoding="utf-8"))
    crops = calibration_crops(data_root, metadata["trained_on"])

    class Reader(CalibrationDataReader):  # type: ignore[misc]
        def __init__(self) -> None:
            self.items: Iterator[np.ndarray] = iter(crops)

        def get_next(self) -> dict[str, np.ndarray] | None:
            item = next(self.items, None)
            return None if item is None else {"image": item}

    out_dir.mkdir(parents=True, exist_ok=True)
    prepared = out_dir / f"{MODEL_NAME}.pre.onnx"
    target = out_dir / f"{MODEL_NAME}.onnx"
    quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
    quantize_static(
        str(prepared),
        str(target),
        Reader(),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
    )
    prepared.unlink()
    metadata["precision"] = "int8 (static, QDQ, per-channel weights; calibrated on training crops)"
    (out_dir / f"{MODEL_NAME}.json").write_text(json.dumps(metadata, indent=2) + "\n", encoding="utf-8")
    shutil.copyfile(model_dir / f"{MODEL_NAME}.md", out_dir / f"{MODEL_NAME}.md")
    return target
