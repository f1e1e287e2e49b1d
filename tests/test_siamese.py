"""The siamese detector: shipped model, shapes and ranges, tiling and resampling, a real LEVIR-CD pair."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sitewatch.change.siamese import CLIP, Siamese, date_stats, normalise
from sitewatch.errors import NotFound

needs_model = pytest.mark.skipif(not Siamese.available(), reason="siamese-change.onnx is not installed")


def _pair(rows: int, cols: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Random 8-bit-like RGB BEFORE, AFTER with a bright 12x12 block, and all-valid mask."""
    rng = np.random.default_rng(seed)
    before = rng.uniform(40, 160, (3, rows, cols)).astype(np.float32)
    after = before.copy()
    after[:, rows // 3 : rows // 3 + 12, cols // 3 : cols // 3 + 12] = 250.0
    return before, after, np.ones((rows, cols), dtype=bool)


def test_shipped_model_is_installed() -> None:
    assert Siamese.available()
    assert Siamese().card.metadata["task"] == "change"


def test_missing_model_folder_raises_not_found(tmp_path: Path) -> None:
    with pytest.raises(NotFound, match="no model 'siamese-change'"):
        Siamese(model_dir=tmp_path)


def test_normalisation_ignores_gain_and_offset_per_band() -> None:
    image = np.random.default_rng(1).uniform(0, 255, (3, 40, 40)).astype(np.float32)
    moved = image * np.array([2.0, 0.5, 1.5], dtype=np.float32)[:, None, None] + 30.0
    np.testing.assert_allclose(normalise(moved, date_stats(moved)), normalise(image, date_stats(image)), atol=1e-4)
    assert np.abs(normalise(image * 1000, date_stats(image))).max() == CLIP


@needs_model
@pytest.mark.parametrize(("rows", "cols", "gsd"), [(50, 77, None), (33, 16, 1.0), (40, 1100, 0.5), (96, 96, 0.2)])
def test_probability_keeps_shape_and_range(rows: int, cols: int, gsd: float | None) -> None:
    """Sizes off the stride, a tiled long strip, and a GSD finer than the training data."""
    before, after, valid = _pair(rows, cols)
    valid[0, :] = False
    result = Siamese().detect(before, after, valid, gsd)
    assert result.probability.shape == (rows, cols) == result.mask.shape
    assert result.probability.dtype == np.float32
    assert result.probability.min() >= 0.0 and result.probability.max() <= 1.0
    assert not result.probability[0].any()


@needs_model
@pytest.mark.datasets
def test_finds_building_change_on_levir_pair(datasets: Path) -> None:
    """In sample (the shipped model trained on every shared pair): a floor, not a held-out figure."""
    from sitewatch.change.compare import compare
    from sitewatch.eval.change import confusion, read_label

    root = datasets / "levir-cd" / "test"
    product = compare(root / "A" / "test_7.png", root / "B" / "test_7.png", detector="siamese")
    tp, fp, fn = confusion(product.mask, read_label(root / "label" / "test_7.png"))
    assert 2 * tp / (2 * tp + fp + fn) > 0.6
