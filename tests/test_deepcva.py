"""Deep CVA on small synthetic pairs: finds a new bright block, ignores no change, tiles consistently."""

from __future__ import annotations

import numpy as np
import pytest

from sitewatch.change import registry
from sitewatch.change.deepcva import DeepCva


def _texture(rows: int, cols: int, seed: int = 0) -> np.ndarray:
    """An RGB image with structure at several scales, as float32 0-255."""
    import cv2

    rng = np.random.default_rng(seed)
    noise = rng.normal(size=(3, rows, cols)).astype(np.float32)
    image = np.stack([cv2.GaussianBlur(band, (0, 0), 2.0) + 0.3 * band for band in noise])
    image = (image - image.min()) / (image.max() - image.min())
    return (60 + 120 * image).astype(np.float32)


@pytest.fixture
def pair() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A textured 160x192 pair; AFTER has a new bright 32x32 block at rows 60-92, columns 80-112."""
    before = _texture(160, 192)
    after = before + np.random.default_rng(1).normal(0, 2, before.shape).astype(np.float32)
    after[:, 60:92, 80:112] = 250.0
    truth = np.zeros(before.shape[1:], dtype=bool)
    truth[60:92, 80:112] = True
    return before, after, truth


def test_new_block_is_found(pair: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
    before, after, truth = pair
    result = DeepCva().detect(before, after, None, 0.5)
    assert result.probability[66:86, 86:106].mean() > 0.9
    far = np.ones_like(truth)
    far[40:112, 60:132] = False  # the block and the features' reach around it
    assert result.probability[far].mean() < 0.3  # noise scores well under the 0.5 threshold
    assert (result.mask & truth).sum() / truth.sum() > 0.8
    assert (result.mask & far).mean() < 0.01


def test_identical_pair_has_almost_no_change() -> None:
    image = _texture(96, 128, seed=3)
    result = DeepCva().detect(image, image.copy(), None, 1.0)
    assert result.mask.mean() < 0.01


def test_tiled_score_matches_whole_image(pair: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
    before, after, _ = pair
    valid = np.ones(before.shape[1:], dtype=bool)
    detector = DeepCva()
    detector.fit(before, after, valid, 0.5)
    whole = detector.score(before, after, valid, 0.5)
    margin = DeepCva.context_px
    rows, cols = slice(0, 32 + 2 * margin), slice(16, 16 + 40 + 2 * margin)  # an odd-sized tile
    tile = detector.score(before[:, rows, cols], after[:, rows, cols], valid[rows, cols], 0.5)
    interior = tile[margin:-margin, margin:-margin]
    expected = whole[rows, cols][margin:-margin, margin:-margin]
    assert tile.shape == (rows.stop - rows.start, cols.stop - cols.start)
    assert np.abs(interior - expected).max() < 0.02


def test_sentinel2_stack_is_read_as_rgb(pair: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
    before, after, truth = pair
    stack_before = np.zeros((13, *before.shape[1:]), dtype=np.float32)
    stack_after = np.zeros_like(stack_before)
    stack_before[[3, 2, 1]], stack_after[[3, 2, 1]] = before, after  # B04, B03, B02
    result = DeepCva().detect(stack_before, stack_after, None, 10.0)
    assert (result.mask & truth).sum() / truth.sum() > 0.8
    with pytest.raises(ValueError, match="needs red, green and blue"):
        DeepCva().detect(before[:2], after[:2], None, 10.0)


def test_registry_requires_rgb() -> None:
    cls = registry.get("deepcva")
    assert cls is DeepCva and cls.available()
    reason = registry.valid_for(cls, band_count=1, has_rgb=False, gsd=0.5)
    assert reason is not None and "needs red, green and blue" in reason
    assert registry.valid_for(cls, band_count=3, has_rgb=True, gsd=0.5) is None
    assert registry.valid_for(cls, band_count=3, has_rgb=True, gsd=30.0) is not None
    assert registry.choose(3, True, 0.5) != "deepcva"  # ranks below CVA: no measured gain


def test_large_inputs_run_in_chunks_that_agree_with_one_run(
    pair: tuple[np.ndarray, np.ndarray, np.ndarray], monkeypatch: pytest.MonkeyPatch
) -> None:
    """fit's mosaic can be large: chunked feature maps must match one whole run where it matters."""
    from sitewatch.change import deepcva

    before, after, _ = pair
    scaled = (np.clip(before / 255.0, 0, 1)[:3], np.clip(after / 255.0, 0, 1)[:3])
    whole = DeepCva()._differences(*scaled)
    monkeypatch.setattr(deepcva, "CHUNK_PX", 128)
    chunked = DeepCva()._differences(*scaled)
    for (stride, a), (same_stride, b) in zip(whole, chunked, strict=True):
        assert stride == same_stride and a.shape == b.shape
        assert np.median(np.abs(a - b)) < 0.05 * np.median(np.abs(a)) + 1e-6
