"""``sitewatch eval ...``: score sitewatch's stages on labelled data (``eval change`` for now)."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Annotated

import typer

from sitewatch.change import registry
from sitewatch.cli.common import JsonOption, NoAlignOption, print_json, progress_bar

eval_app = typer.Typer(
    name="eval",
    help="Score sitewatch on labelled datasets (the evaluation contracts of DESIGN.md).",
    no_args_is_help=True,
)


def register(app: typer.Typer) -> None:
    """Add the ``eval`` command group to APP."""
    app.add_typer(eval_app, name="eval")


@eval_app.command("change")
def change(
    dataset: Annotated[
        Path,
        typer.Option(
            "--dataset",
            help="Folder searched at any depth for LEVIR-CD, SZTAKI and OSCD layouts.",
            show_default=False,
        ),
    ],
    detector: Annotated[
        list[str] | None,
        typer.Option(
            "--detector",
            help=f"Detector to score (repeat for several; default all: {', '.join(registry.names())}).",
            show_default=False,
        ),
    ] = None,
    no_align: NoAlignOption = False,
    as_json: JsonOption = False,
) -> None:
    """Pixel precision, recall, F1 and IoU of the changed class, TP/FP/FN summed per dataset."""
    from rich.console import Console
    from rich.table import Table

    from sitewatch.eval.change import PairDone, evaluate, find_pairs

    pairs = find_pairs(dataset)  # before the progress bar, so an error is the only output
    names = detector or registry.names()
    for name in names:
        registry.get(name)
    # Every pair would repeat the same warning (say, "GSD unknown"): show each one once.
    with progress_bar() as bar, warnings.catch_warnings(record=True) as caught:
        task = bar.add_task("eval change", total=None)

        def advance(event: PairDone) -> None:
            bar.update(task, completed=event.done, total=event.total, description=event.pair.name)

        scores = evaluate(pairs, names, align=not no_align, on_progress=advance)
    for category, text in dict.fromkeys((w.category, str(w.message)) for w in caught):
        warnings.warn(text, category, stacklevel=1)

    if as_json:
        print_json({"dataset": str(dataset), "scores": [s.as_dict() for s in scores]})
        return
    table = Table(title=f"change: {dataset}")
    for column in ("dataset", "detector", "pairs", "precision", "recall", "F1", "IoU", "s/pair"):
        table.add_column(column, justify="left" if column in ("dataset", "detector") else "right")
    for score in scores:
        row = score.as_dict()
        table.add_row(
            score.dataset,
            score.detector,
            str(score.pairs),
            f"{score.precision:.3f}",
            f"{score.recall:.3f}",
            f"{score.f1:.3f}",
            f"{score.iou:.3f}",
            f"{row['seconds_per_pair']:.2f}",
        )
    Console().print(table)
