"""``sitewatch train ...``: train sitewatch's models (needs the ``train`` extra, PyTorch)."""

from __future__ import annotations

import importlib.util
import shlex
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from sitewatch.errors import SitewatchError

if TYPE_CHECKING:
    from sitewatch.train.loop import StepDone

train_app = typer.Typer(name="train", help="Train sitewatch's models (needs the training extra).", no_args_is_help=True)


class MissingExtra(SitewatchError):
    """An optional dependency group that a command needs is not installed."""


def register(app: typer.Typer) -> None:
    """Add the ``train`` command group to APP."""
    app.add_typer(train_app, name="train")


# Options every training command takes.
FoldOption = Annotated[int | None, typer.Option("--fold", min=0, help="With --folds: train only fold I.")]
MinutesOption = Annotated[
    float | None, typer.Option("--minutes", min=0.1, help="Stop the steps after M minutes of training.")
]
SeedOption = Annotated[int, typer.Option("--seed", help="Seed of the sampling and initialisation.")]
ThreadsOption = Annotated[int, typer.Option("--threads", min=1, help="PyTorch threads.")]


def _require_torch() -> None:
    if importlib.util.find_spec("torch") is None:
        raise MissingExtra("sitewatch train needs the training extra: pip install 'sitewatch[train]'")


def _check_fold(fold: int | None, folds: int) -> None:
    if fold is not None and not 0 <= fold < folds:
        raise typer.BadParameter(f"--fold must be below --folds ({folds})", param_hint="--fold")


def _report(event: StepDone) -> None:
    """Progress on stderr every 25 steps and at the end."""
    if event.step % 25 == 0 or event.step == event.total:
        typer.echo(f"step {event.step}/{event.total} loss {event.loss:.4f} {event.seconds:.0f} s", err=True)


@train_app.command("change")
def change(
    data: Annotated[
        Path, typer.Option("--data", help="Folder searched for labelled LEVIR-CD, SZTAKI and OSCD pairs.")
    ] = Path("../shared/datasets"),
    out: Annotated[Path, typer.Option("--out", help="Folder for siamese-change.onnx, .json and .md.")] = Path("."),
    folds: Annotated[
        int, typer.Option("--folds", min=0, help="Train K models into OUT/fold-I, each leaving out every K-th pair.")
    ] = 0,
    fold: FoldOption = None,
    steps: Annotated[int, typer.Option("--steps", min=1, help="Optimiser steps.")] = 700,
    minutes: MinutesOption = None,
    seed: SeedOption = 0,
    threads: ThreadsOption = 2,
    folds_root: Annotated[
        Path | None,
        typer.Option("--heldout-folds", help="Also score each pair by the fold model in this folder that left it out."),
    ] = None,
) -> None:
    """Train the siamese change detector on the labelled pairs under --data and export it as ONNX."""
    _require_torch()
    from sitewatch.train.change import score_model, train, train_folds
    from sitewatch.train.loop import TrainSettings

    _check_fold(fold, folds)
    settings = TrainSettings(steps=steps, seed=seed, threads=threads, minutes=minutes)
    base = ["sitewatch", "train", "change", "--data", str(data), "--seed", str(seed), "--steps", str(steps)]
    base += ["--threads", str(threads)]  # float sums, hence the weights, depend on the thread count
    if minutes is not None:
        base += ["--minutes", f"{minutes:g}"]

    if folds:
        for index in range(folds) if fold is None else [fold]:
            command = shlex.join([*base, "--out", str(out), "--folds", str(folds), "--fold", str(index)])
            (folder,) = train_folds(out, data, folds, index, settings, command=command, on_progress=_report)
            score_model(folder, data)
            typer.echo(folder / "siamese-change.onnx")
        return
    command = shlex.join([*base, "--out", str(out)])
    path = train(out, data, settings=settings, command=command, on_progress=_report)
    score_model(out, data, folds_root)
    typer.echo(path)


@train_app.command("detect")
def detect(
    data: Annotated[
        Path, typer.Option("--data", help="Folder searched for DOTA images (images/ beside labelTxt/).")
    ] = Path("../shared/datasets/dota"),
    out: Annotated[Path, typer.Option("--out", help="Folder for vehicle-detector.onnx, .json and .md.")] = Path("."),
    folds: Annotated[
        int, typer.Option("--folds", min=0, help="Train K models into OUT/fold-I, each leaving out every K-th image.")
    ] = 0,
    fold: FoldOption = None,
    steps: Annotated[int, typer.Option("--steps", min=1, help="Optimiser steps.")] = 900,
    batch: Annotated[int, typer.Option("--batch", min=1, help="Crops per step.")] = 12,
    crop: Annotated[int, typer.Option("--crop", min=64, help="Crop side in pixels (multiple of 16).")] = 256,
    minutes: MinutesOption = None,
    seed: SeedOption = 0,
    threads: ThreadsOption = 2,
    demo_seeds: Annotated[
        str,
        typer.Option("--demo-seeds", help="Demo generator seeds rendered as synthetic training sites ('' for none)."),
    ] = "11,12",
    freeze_to: Annotated[
        int, typer.Option("--freeze-to", help="Keep the ImageNet encoder frozen up to this stride (4, 8 or 16).")
    ] = 4,
    int8: Annotated[
        bool, typer.Option("--int8", help="Ship a static int8 copy in OUT (the float32 model goes to OUT/fp32).")
    ] = False,
    folds_root: Annotated[
        Path | None,
        typer.Option("--heldout-folds", help="Also score each image with the fold model here that left it out."),
    ] = None,
) -> None:
    """Train the oriented vehicle and container detector on DOTA images under --data; export it as ONNX."""
    _require_torch()
    from dataclasses import replace

    from sitewatch.train.detect import DETECT_SETTINGS, fold_split, record_scores, train
    from sitewatch.train.detect_data import Augment
    from sitewatch.train.quantize import quantize

    _check_fold(fold, folds)
    if crop % 16:
        raise typer.BadParameter("--crop must be a multiple of 16", param_hint="--crop")
    settings = replace(DETECT_SETTINGS, steps=steps, batch=batch, seed=seed, threads=threads, minutes=minutes)
    augment = Augment(crop=crop)
    try:
        seeds = [int(v) for v in demo_seeds.split(",") if v.strip()]
    except ValueError:
        raise typer.BadParameter("comma-separated integers", param_hint="--demo-seeds") from None
    base = ["sitewatch", "train", "detect", "--data", str(data), "--seed", str(seed), "--steps", str(steps)]
    base += ["--batch", str(batch), "--crop", str(crop), "--threads", str(threads), "--demo-seeds", demo_seeds]
    if minutes is not None:
        base += ["--minutes", f"{minutes:g}"]
    if freeze_to not in (2, 4, 8, 16):
        raise typer.BadParameter("one of 2, 4, 8, 16", param_hint="--freeze-to")
    base += ["--freeze-to", str(freeze_to)]
    if int8:
        base += ["--int8"]

    runs: list[tuple[Path, list[str], list[str]]] = [(out, [], [*base, "--out", str(out)])]
    if folds:
        runs = [
            (
                out / f"fold-{i}",
                fold_split(data, folds, i),
                [*base, "--out", str(out), "--folds", str(folds), "--fold", str(i)],
            )
            for i in (range(folds) if fold is None else [fold])
        ]
    for folder, exclude, command in runs:
        trained_in = folder / "fp32" if int8 else folder
        path = train(
            trained_in,
            data,
            exclude,
            settings,
            augment,
            shlex.join(command),
            on_progress=_report,
            demo_seeds=seeds,
            frozen_stride=freeze_to,
        )
        if int8:
            path = quantize(trained_in, folder, data)
        if not folds:
            record_scores(folder, data, folds_root)
        typer.echo(path)
