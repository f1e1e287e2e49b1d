"""What every sitewatch network shares in training: the optimisation loop on the CPU, the checked
ONNX export, and writing a model's three files.

AdamW with a slower learning rate for the pretrained encoder than for the new layers, a short
linear warm-up, then a cosine decay over the steps or, with a time budget, over whichever runs out
first, so a run stopped by the clock still ends at a low learning rate. The export is checked:
ONNX Runtime must compute what PyTorch computes, or nothing is written.
"""

from __future__ import annotations

import json
import logging
import math
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from sitewatch.errors import SitewatchError
from sitewatch.io.files import atomic_path

log = logging.getLogger(__name__)

#: Largest difference between PyTorch's and ONNX Runtime's outputs accepted at export.
EXPORT_TOLERANCE = 1e-3


class ExportError(SitewatchError):
    """The exported ONNX model does not compute what the PyTorch model computes."""


@dataclass(frozen=True)
class TrainSettings:
    """One training run (the defaults trained the shipped siamese change model).

    ``minutes`` caps the wall time of the steps, and the cosine schedule then follows the clock too,
    so a stopped run still ends at a low learning rate; such a run depends on the machine's speed,
    and its metadata records the steps it did.
    """

    steps: int = 700
    batch: int = 8
    learning_rate: float = 1e-3
    encoder_lr_factor: float = 0.3  # the pretrained stages move slower than the new decoder
    weight_decay: float = 1e-4
    warmup: int = 30
    seed: int = 0
    threads: int = 2
    minutes: float | None = None
    pretrained: bool = True


@dataclass(frozen=True)
class StepDone:
    """Progress event: one optimiser step finished."""

    step: int
    total: int
    loss: float
    seconds: float


def optimise(
    model: nn.Module,
    next_loss: Callable[[], torch.Tensor],
    settings: TrainSettings,
    on_progress: Callable[[StepDone], None] | None = None,
) -> tuple[list[float], float]:
    """Run the steps (or until ``minutes``) on the loss NEXT_LOSS computes from a fresh batch;
    the losses and the seconds taken.

    The trainable parameters under ``model.encoder`` (pretrained) learn ``encoder_lr_factor`` times
    slower than the rest (new layers).
    """
    encoder = [p for name, p in model.named_parameters() if p.requires_grad and name.startswith("encoder.")]
    decoder = [p for name, p in model.named_parameters() if p.requires_grad and not name.startswith("encoder.")]
    groups = [
        {"params": encoder, "lr": settings.learning_rate * settings.encoder_lr_factor},
        {"params": decoder, "lr": settings.learning_rate},
    ]
    optimiser = torch.optim.AdamW([g for g in groups if g["params"]], weight_decay=settings.weight_decay)

    start = time.perf_counter()

    def schedule(step: int) -> float:
        """Warm-up, then cosine over the steps or, with a time budget, over whichever runs out first."""
        if step < settings.warmup:
            return (step + 1) / settings.warmup
        progress = (step - settings.warmup) / max(1, settings.steps - settings.warmup)
        if settings.minutes is not None:
            progress = max(progress, (time.perf_counter() - start) / (settings.minutes * 60))
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimiser, schedule)
    model.train()
    losses: list[float] = []
    for step in range(settings.steps):
        loss = next_loss()
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        scheduler.step()
        losses.append(float(loss.detach()))
        elapsed = time.perf_counter() - start
        if on_progress is not None:
            on_progress(StepDone(step + 1, settings.steps, losses[-1], elapsed))
        if settings.minutes is not None and elapsed > settings.minutes * 60:
            log.warning("time budget of %s min reached after %d steps", settings.minutes, step + 1)
            break
    model.eval()
    return losses, time.perf_counter() - start


def export_onnx(model: nn.Module, path: Path, inputs: Sequence[str], outputs: Sequence[str]) -> None:
    """Export MODEL, which takes ``(N, 3, H, W)`` INPUTS and returns OUTPUTS (dynamic batch, height
    and width; opset 17), to PATH, once ONNX Runtime agrees with PyTorch on random inputs.

    Raises:
        ExportError: If an output differs by more than :data:`EXPORT_TOLERANCE`, or in shape.
    """
    import onnxruntime

    model.eval()
    dynamic = {name: {0: "n", 2: "height", 3: "width"} for name in (*inputs, *outputs)}
    with atomic_path(path) as tmp, torch.no_grad(), warnings.catch_warnings():
        # The TorchScript exporter's notices (constant folding of slices, its own deprecation): harmless.
        warnings.filterwarnings("ignore", category=UserWarning)
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        torch.onnx.export(
            model,
            tuple(torch.zeros(1, 3, 64, 64) for _ in inputs),
            str(tmp),
            input_names=list(inputs),
            output_names=list(outputs),
            dynamic_axes=dynamic,
            opset_version=17,
            dynamo=False,  # the TorchScript exporter keeps H and W dynamic without onnxscript
            external_data=False,
        )
        generator = torch.Generator().manual_seed(0)
        sample = [torch.randn(1, 3, 96, 128, generator=generator) for _ in inputs]
        result = model(*sample)
        expected = [t.numpy() for t in (result if isinstance(result, tuple) else (result,))]
        session = onnxruntime.InferenceSession(str(tmp), providers=["CPUExecutionProvider"])
        got = session.run(list(outputs), {name: x.numpy() for name, x in zip(inputs, sample, strict=True)})
        for name, g, e in zip(outputs, got, expected, strict=True):
            error = float(np.abs(g - e).max()) if g.shape == e.shape else math.inf
            if error > EXPORT_TOLERANCE:
                raise ExportError(f"{path}: ONNX Runtime's {name} differs from PyTorch's by {error:.2g} ({g.shape})")
    log.info("exported %s", path)


def write_model_files(
    out_dir: Path, name: str, metadata: dict[str, Any], card: Callable[[dict[str, Any], int], str]
) -> None:
    """Write ``NAME.json`` (METADATA) and the model card ``NAME.md`` (CARD of it and the model's size)."""
    onnx_path = out_dir / f"{name}.onnx"
    with atomic_path(out_dir / f"{name}.json") as tmp:
        tmp.write_text(json.dumps(metadata, indent=2) + "\n", encoding="utf-8")
    with atomic_path(out_dir / f"{name}.md") as tmp:
        tmp.write_text(card(metadata, onnx_path.stat().st_size), encoding="utf-8")
