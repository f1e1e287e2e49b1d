"""``sitewatch eval ...``: score sitewatch's stages on labelled data (``eval change``, ``eval align``)."""

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
    misregister: Annotated[
        float,
        typer.Option(
            "--misregister",
            help="Move AFTER by a seeded random 1 to PX pixels first (what misregistration costs, and "
            "what alignment recovers).",
            metavar="PX",
        ),
    ] = 0.0,
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

        scores = evaluate(pairs, names, align=not no_align, on_progress=advance, misregister_px=misregister)
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


@eval_app.command("align")
def align(
    dataset: Annotated[
        Path,
        typer.Option(
            "--dataset",
            help="Folder searched at any depth for the s2-coregistration pair and for real images "
            "(LEVIR-CD A/, SZTAKI im1, Joplin pre, OSCD imgs_1/, s2 reference).",
            show_default=False,
        ),
    ],
    cases: Annotated[int, typer.Option("--cases", min=1, help="Synthetic cases per source.")] = 8,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the synthetic transforms.")] = 0,
    as_json: JsonOption = False,
) -> None:
    """Co-registration: the documented pair's shift, then RMSE and success rate on known transforms."""
    from rich.console import Console
    from rich.table import Table

    from sitewatch.eval.align import CaseDone, evaluate_documented, evaluate_synthetic, find_sources, summarise

    sources = find_sources(dataset)  # before the progress bar, so an error is the only output
    documented = evaluate_documented(dataset)
    with progress_bar() as bar:
        task = bar.add_task("eval align", total=None)

        def advance(event: CaseDone) -> None:
            bar.update(task, completed=event.done, total=event.total, description=event.case.source)

        results = evaluate_synthetic(sources, cases_per_source=cases, seed=seed, on_progress=advance)
    by_source = summarise(results, lambda c: c.source)
    by_kind = summarise(results, lambda c: c.kind)

    if as_json:
        print_json(
            {
                "dataset": str(dataset),
                "documented": [d.as_dict() for d in documented],
                "sources": [s.as_dict() for s in by_source],
                "kinds": [s.as_dict() for s in by_kind],
                "cases": [c.as_dict() for c in results],
            }
        )
        return
    console = Console()
    for item in documented:
        row = item.as_dict()
        console.print(
            f"{item.name}: shift_px {row['shift_px']} (documented {row['documented_shift_px']}, "
            f"error {row['error_px']} px), shift_m {row['shift_m']}, {row['status']}"
            f"{'' if row['reason'] is None else ' ' + row['reason']}, {row['model']}, "
            f"{row['tie_points']} tie points, residual {row['residual_rmse_px']} px"
        )
    for title, summaries in (("source", by_source), ("kind", by_kind)):
        table = Table(title=f"align, known transforms, by {title}: {dataset}")
        for column in (title, "cases", "success", "RMSE px", "worst px", "s/case"):
            table.add_column(column, justify="left" if column == title else "right")
        for summary in summaries:
            table.add_row(
                summary.group,
                str(summary.cases),
                f"{summary.success_rate:.0%}",
                "-" if summary.rmse_px is None else f"{summary.rmse_px:.3f}",
                "-" if summary.worst_px is None else f"{summary.worst_px:.3f}",
                f"{summary.seconds:.2f}",
            )
        console.print(table)
