"""``sitewatch eval ...``: score sitewatch's stages on labelled data (``eval change``, ``eval align``,
``eval detect``), and on the analyst's own verdicts (``eval reviews``)."""

from __future__ import annotations

import sys
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from sitewatch.change import registry
from sitewatch.cli.common import JsonOption, NoAlignOption, WorkspaceOption, open_workspace, print_json, progress_bar

if TYPE_CHECKING:
    from sitewatch.eval.change import Score, Skipped
    from sitewatch.eval.detect import Evaluation as DetectEvaluation
    from sitewatch.eval.detect import Skipped as DetectSkipped

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
        list[Path],
        typer.Option(
            "--dataset",
            help="Folder searched at any depth for LEVIR-CD, SZTAKI and OSCD layouts; one split each "
            "(repeat for several).",
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
    models: Annotated[
        Path | None,
        typer.Option(
            "--models",
            help="Folder of fold model folders (fold0/, fold1/, ...): learned detectors score each pair "
            "with a fold model whose trained_on excludes it (held-out figures).",
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
    markdown: Annotated[bool, typer.Option("--markdown", help="Print the table as Markdown (for a README).")] = False,
) -> None:
    """Pixel and object precision, recall and F1 of the changed class, summed per dataset, with how
    each figure was obtained (training-free, held-out or in-sample)."""
    from sitewatch.eval.change import PairDone, check_detectors, evaluate, find_pairs, fold_folders

    if as_json and markdown:
        raise typer.BadParameter("choose one of --json and --markdown", param_hint="--markdown")
    pairs = [p for root in dataset for p in find_pairs(root)]  # before the progress bar: errors come alone
    names = check_detectors(detector)
    if models is not None:
        fold_folders(models)
    # Every pair would repeat the same warning (say, "GSD unknown"): show each one once.
    with progress_bar() as bar, warnings.catch_warnings(record=True) as caught:
        task = bar.add_task("eval change", total=None)

        def advance(event: PairDone) -> None:
            bar.update(task, completed=event.done, total=event.total, description=event.pair.name)

        result = evaluate(
            pairs, names, align=not no_align, on_progress=advance, misregister_px=misregister, models=models
        )
    for category, text in dict.fromkeys((w.category, str(w.message)) for w in caught):
        warnings.warn(text, category, stacklevel=1)

    if as_json:
        print_json(
            {
                "datasets": [str(d) for d in dataset],
                "scores": [s.as_dict() for s in result.scores],
                "skipped": [s.as_dict() for s in result.skipped],
            }
        )
        return
    header, rows = _change_table(result.scores)
    notes = [_skipped_note(s) for s in result.skipped]
    if markdown:
        typer.echo("\n".join(_markdown_row(cells) for cells in [header, ["---"] * len(header), *rows]))
        for note in notes:
            typer.echo(f"\n{note}")
        return
    from rich import box
    from rich.console import Console
    from rich.table import Table

    # Light rules, and text that folds rather than vanishes, keep every figure whole in a narrow
    # terminal; written to a file or a pipe, the table keeps its natural width.
    table = Table(
        title=f"change: {', '.join(str(d) for d in dataset)}", box=box.SIMPLE_HEAD, show_edge=False, padding=(0, 0)
    )
    for column in header:
        if column in _TEXT_COLUMNS:
            table.add_column(column, overflow="fold", min_width=_TEXT_COLUMNS[column])
        else:
            table.add_column(column, justify="right", min_width=5)  # "0.123": the header may wrap
    for cells in rows:
        table.add_row(*cells)
    console = Console() if sys.stdout.isatty() else Console(width=_PIPE_WIDTH)
    console.print(table)
    for note in notes:
        console.print(note, markup=False, highlight=False)


#: Columns of ``eval change``'s table that hold words, not numbers, and the narrowest each may fold to.
_TEXT_COLUMNS = {"dataset": 8, "detector": 6, "protocol": 8}
#: Width of the table written to a file or a pipe: wide enough for every column unfolded.
_PIPE_WIDTH = 200


def _change_table(scores: list[Score]) -> tuple[list[str], list[list[str]]]:
    """Header and rows of ``eval change``'s one table, the same for the terminal and Markdown (seconds
    per pair, which depend on the machine, are in ``--json`` only).

    A dataset is named by its layout, and by its split as well where several splits hold that layout
    (the split's folder name, or its path where two folders share a name).
    """
    header = ["dataset", "detector", "pairs", "P", "R", "F1", "IoU", "obj P", "obj R", "obj F1", "protocol"]
    splits_of: dict[str, set[str]] = {}
    for score in scores:
        splits_of.setdefault(score.dataset, set()).add(score.split)
    short = {split: Path(split).name or split for split in dict.fromkeys(s.split for s in scores)}
    split_name = short if len(set(short.values())) == len(short) else {split: split for split in short}
    rows = []
    for score in scores:
        figures = (
            score.precision,
            score.recall,
            score.f1,
            score.iou,
            score.object_precision,
            score.object_recall,
            score.object_f1,
        )
        rows.append(
            [
                score.dataset if len(splits_of[score.dataset]) == 1 else f"{split_name[score.split]}: {score.dataset}",
                score.detector,
                str(score.pairs),
                *(f"{value:.3f}" for value in figures),
                score.protocol,
            ]
        )
    return header, rows


def _skipped_note(skipped: Skipped) -> str:
    return f"skipped: {skipped.reason} ({skipped.pairs} {skipped.dataset} pair(s) of {skipped.split})"


def _markdown_row(cells: list[str]) -> str:
    return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"


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


@eval_app.command("detect")
def detect(
    dataset: Annotated[
        Path,
        typer.Option(
            "--dataset",
            help="Folder searched at any depth for the DOTA layout: images/*.png|tif|jpg beside labelTxt/*.txt.",
            show_default=False,
        ),
    ],
    detector: Annotated[
        list[str] | None,
        typer.Option(
            "--detector",
            help="Object detector to score (repeat for several; default every one that can run here).",
            show_default=False,
        ),
    ] = None,
    models: Annotated[
        Path | None,
        typer.Option(
            "--models",
            help="Folder of fold model folders (fold0/, fold1/, ...): the learned detector scores each image "
            "with a fold model whose trained_on excludes it (held-out figures).",
            show_default=False,
        ),
    ] = None,
    min_score: Annotated[
        float | None,
        typer.Option(
            "--min-score",
            min=0.0,
            max=1.0,
            help="Operating score: counts and recall are taken there [default: each detector's own].",
        ),
    ] = None,
    gsd: Annotated[
        float | None,
        typer.Option(
            "--gsd", help="Metres per pixel for every image, instead of the labels' gsd: headers.", show_default=False
        ),
    ] = None,
    as_json: JsonOption = False,
    markdown: Annotated[bool, typer.Option("--markdown", help="Print the tables as Markdown (for a README).")] = False,
) -> None:
    """AP at oriented IoU 0.5, recall and count error per detector and vehicle class on DOTA labels,
    with how each figure was obtained (training-free, held-out or in-sample)."""
    from sitewatch.detect.dota import find_images
    from sitewatch.eval.detect import ImageDone, evaluate, select_detectors

    if as_json and markdown:
        raise typer.BadParameter("choose one of --json and --markdown", param_hint="--markdown")
    images = find_images(dataset)  # before the progress bar: errors come alone
    names = select_detectors(detector, models)
    with progress_bar() as bar:
        task = bar.add_task("eval detect", total=None)

        def advance(event: ImageDone) -> None:
            bar.update(task, completed=event.done, total=event.total, description=event.image.image_id)

        result = evaluate(images, names, models=models, gsd=gsd, min_score=min_score, on_progress=advance)

    if as_json:
        print_json(
            {
                "dataset": str(dataset),
                "iou": "oriented > 0.5",
                "min_score": min_score,
                "gsd": gsd,
                "scores": [s.as_dict() for s in result.scores],
                "counts": [c.as_dict() for c in result.counts],
                "skipped": [s.as_dict() for s in result.skipped],
                "estimated_gsd": [e.as_dict() for e in result.estimated_gsd],
            }
        )
        return
    tables = [(f"{title}: {dataset}", header, rows) for title, header, rows in _detect_tables(result)]
    notes = [e.note() for e in result.estimated_gsd] + [_detect_skipped_note(s) for s in result.skipped]
    if not result.scores:
        notes.insert(0, "nothing scored")
    _print_tables(tables, _DETECT_TEXT_COLUMNS, notes, markdown=markdown)


def _print_tables(
    tables: Sequence[tuple[str, list[str], list[list[str]]]],
    text_columns: Mapping[str, int],
    notes: Sequence[str],
    *,
    markdown: bool,
) -> None:
    """Print titled tables, then their notes: as Markdown (titles left out), or as rich tables whose
    TEXT_COLUMNS fold down to the width given in a narrow terminal (numbers stay whole)."""
    if markdown:
        for _, header, rows in tables:
            typer.echo("\n".join(_markdown_row(cells) for cells in [header, ["---"] * len(header), *rows]) + "\n")
        for note in notes:
            typer.echo(note)
        return
    from rich import box
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    console = Console() if sys.stdout.isatty() else Console(width=_PIPE_WIDTH)
    for title, header, rows in tables:
        table = Table(title=title, box=box.SIMPLE_HEAD, show_edge=False, padding=(0, 1))
        for column in header:
            if column in text_columns:
                table.add_column(column, overflow="fold", min_width=text_columns[column])
            else:
                table.add_column(column, justify="right")
        for cells in rows:
            table.add_row(*(Text(cell) for cell in cells))
        console.print(table)
    for note in notes:
        console.print(note, markup=False, highlight=False)


#: Columns of ``eval detect``'s tables that hold words, not numbers, and the narrowest each may fold to.
_DETECT_TEXT_COLUMNS = {"detector": 6, "class": 8, "image": 8, "protocol": 8}


def _detect_tables(result: DetectEvaluation) -> list[tuple[str, list[str], list[list[str]]]]:
    """Title, header and rows of ``eval detect``'s two tables (scores, then counts per image), the same
    for the terminal and Markdown."""
    from sitewatch.eval.detect import NO_LABELS

    header = [
        "detector",
        "class",
        "protocol",
        "images",
        "GT",
        "AP50 (oriented)",
        "op score",
        "recall",
        "predicted@op",
        "count err",
    ]
    rows = [
        [
            s.detector,
            s.cls,
            s.protocol,
            str(s.images),
            str(s.truth),
            NO_LABELS if s.ap is None else f"{s.ap:.3f}",
            f"{s.min_score:g}",
            _figure(s.recall),
            str(s.predicted_at_op),
            _figure(s.mean_count_error),
        ]
        for s in result.scores
    ]
    count_header = ["detector", "image", "class", "true", "predicted@op", "count err"]
    count_rows = [[c.detector, c.image, c.cls, str(c.truth), str(c.predicted), _figure(c.error)] for c in result.counts]
    tables = [
        ("detect, AP at oriented IoU > 0.5; recall and counts at each detector's operating score", header, rows),
        ("detect, count per image at the operating score", count_header, count_rows),
    ]
    return [table for table in tables if table[2]]


#: Image ids a skipped-note names before it only counts the rest (``--json`` lists them all).
_NOTE_IMAGES = 5


def _detect_skipped_note(skipped: DetectSkipped) -> str:
    names = ", ".join(skipped.images[:_NOTE_IMAGES])
    if len(skipped.images) > _NOTE_IMAGES:
        names += f" and {len(skipped.images) - _NOTE_IMAGES} more"
    return f"{skipped.detector}: skipped {names}: {skipped.reason}"


@eval_app.command("reviews")
def reviews(
    site: Annotated[
        list[str] | None,
        typer.Option(
            "--site", "-s", help="Site to score (repeat for several; default every site).", show_default=False
        ),
    ] = None,
    workspace: WorkspaceOption = None,
    as_json: JsonOption = False,
    markdown: Annotated[bool, typer.Option("--markdown", help="Print the table as Markdown (for a README).")] = False,
) -> None:
    """The analyst's verdicts on each site's current changes: confirmed, rejected, unreviewed, and the
    precision they give (confirmed ÷ reviewed)."""
    from sitewatch.review.reviews import ReviewPrecision, review_precision

    if as_json and markdown:
        raise typer.BadParameter("choose one of --json and --markdown", param_hint="--markdown")
    with open_workspace(workspace) as ws:
        rows = review_precision(ws, site)
    total = ReviewPrecision.total(rows)
    if as_json:
        print_json({"sites": [r.as_dict() for r in rows], "total": total.as_dict(), "note": _REVIEWS_NOTE})
        return
    header = ["site", "changes", "confirmed", "rejected", "unreviewed", "precision"]
    cells = [
        [r.site, str(r.changes), str(r.confirmed), str(r.rejected), str(r.unreviewed), _figure(r.precision)]
        for r in [*rows, total]
    ]
    _print_tables(
        [("reviews: precision on reviewed changes", header, cells)], {"site": 8}, [_REVIEWS_NOTE], markdown=markdown
    )


#: What ``eval reviews`` measures, printed under its table.
_REVIEWS_NOTE = (
    "precision is the analyst's own, on the changes they reviewed (confirmed ÷ (confirmed + rejected)); "
    "it is not recall: changes the detector missed are not counted"
)


def _figure(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"
