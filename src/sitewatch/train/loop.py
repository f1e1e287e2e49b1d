"""The optimisation loop every sitewatch network is trained with, on the CPU.

AdamW with a slower learning rate for the pretrained encoder than for the new layers, a short
linear warm-up, then a cosine decay over the steps or, with a time budget, over whichever runs out
first, so a run stopped by the clock still ends at a low learning rate.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

log = logging.getLogger(__name__)


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
    optimiser = torch.optim.AdamW(
        [
            {"params": encoder, "lr": settings.learning_rate * settings.encoder_lr_factor},
            {"params": decoder, "lr": settings.learning_rate},
        ],
        weight_decay=settings.weight_decay,
    )

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
