"""Training the siamese network: a tiny run exports an ONNX model that matches PyTorch; folds leave pairs out."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from sitewatch.change.siamese import MODEL_NAME
from sitewatch.train.data import held_out

needs_torch = pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="needs the train extra (torch)")


def _tiny() -> dict[str, Any]:
    """Settings of a run of a few seconds: two steps of two 64 px samples."""
    from sitewatch.train.data import Augment
    from sitewatch.train.loop import TrainSettings

    return {"settings": TrainSettings(steps=2, batch=2, warmup=1, threads=2), "augment": Augment(crop=64)}


@pytest.fixture(scope="module")
def levir_like(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three 80x80 pairs in the LEVIR-CD layout: AFTER has a new bright roof, labelled."""
    root = tmp_path_factory.mktemp("levir") / "test"
    for folder in ("A", "B", "label"):
        (root / folder).mkdir(parents=True)
    rng = np.random.default_rng(0)
    for index in range(3):
        before = rng.integers(30, 180, (80, 80, 3), dtype=np.uint8)
        after, label = before.copy(), np.zeros((80, 80), dtype=np.uint8)
        after[20:40, 30:50], label[20:40, 30:50] = 240, 255
        for folder, image in (("A", before), ("B", after), ("label", label)):
            Image.fromarray(image).save(root / folder / f"test_{index}.png")
    return root.parent


@needs_torch
def test_tiny_run_exports_onnx_matching_torch(levir_like: Path, tmp_path: Path) -> None:
    import onnxruntime
    import torch

    from sitewatch.train.change import export_onnx, train
    from sitewatch.train.model import build

    path = train(tmp_path, levir_like, command="sitewatch train change", **_tiny())
    metadata = json.loads((tmp_path / f"{MODEL_NAME}.json").read_text())
    assert metadata["task"] == "change"
    assert metadata["trained_on"] == ["levir-cd:test_0", "levir-cd:test_1", "levir-cd:test_2"]
    assert metadata["reproduce"] == "sitewatch train change"
    assert "non-commercial" in (tmp_path / f"{MODEL_NAME}.md").read_text()

    model = build(pretrained=False).eval()
    export_onnx(model, path)
    before, after = np.random.default_rng(2).normal(size=(2, 1, 3, 48, 80)).astype(np.float32)
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (got,) = session.run(["logit"], {"before": before, "after": after})
    with torch.no_grad():
        expected = model(torch.from_numpy(before), torch.from_numpy(after)).numpy()
    assert got.shape == (1, 1, 48, 80)
    np.testing.assert_allclose(got, expected, atol=1e-3)


@needs_torch
def test_fold_model_never_trains_on_its_held_out_pairs(levir_like: Path, tmp_path: Path) -> None:
    from sitewatch.train.change import train_folds

    ids = ["levir-cd:test_0", "levir-cd:test_1", "levir-cd:test_2"]
    (folder,) = train_folds(tmp_path, levir_like, folds=2, only=1, **_tiny())
    metadata = json.loads((folder / f"{MODEL_NAME}.json").read_text())
    assert folder.name == "fold-1"
    assert metadata["held_out"] == ["levir-cd:test_1"]
    assert set(metadata["trained_on"]) == set(ids) - {"levir-cd:test_1"}

    from sitewatch.change.siamese import Siamese
    from sitewatch.eval.change import HELD_OUT_KFOLD, HELD_OUT_UNSEEN, find_pairs
    from sitewatch.train.heldout import heldout_scores, model_scores

    pairs = [p for p in find_pairs(levir_like) if p.id == "levir-cd:test_1"]
    (row,) = model_scores(pairs, folder, HELD_OUT_UNSEEN)
    assert (row.dataset, row.pairs, row.protocol) == ("levir-cd", 1, HELD_OUT_UNSEEN)
    if Siamese.available():  # eval makes the shipped model too, for pairs no fold left out
        (row,) = heldout_scores(pairs, tmp_path)
        assert (row.pairs, row.protocol) == (1, HELD_OUT_KFOLD)


def test_folds_split_every_dataset() -> None:
    ids = ["levir-cd:a", "levir-cd:b", "levir-cd:c", "oscd:x", "oscd:y"]
    folds = [held_out(ids, 2, f) for f in range(2)]
    assert folds == [{"levir-cd:a", "levir-cd:c", "oscd:x"}, {"levir-cd:b", "oscd:y"}]


def test_cli_without_torch_says_which_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    from sitewatch.cli.main import app
    from sitewatch.cli.train import MissingExtra

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "torch" else real(name, *a))
    from sitewatch.cli import commands

    commands.register(app)
    result = CliRunner().invoke(app, ["train", "change", "--steps", "1"])
    assert isinstance(result.exception, MissingExtra)
    assert str(result.exception) == "sitewatch train needs the training extra: pip install 'sitewatch[train]'"
