"""``sitewatch change BEFORE AFTER -o MASK.png``: the change evaluation contract of DESIGN.md."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from sitewatch.change import registry
from sitewatch.cli.common import JsonOption, NoAlignOption, print_json

#: Listed in ``--detector`` help; names only, so no detector module is imported to build it.
DETECTOR_HELP = (
    f"Change detector: {registry.AUTO} (the best one valid for the pair's bands and GSD) or one of "
    f"{', '.join(registry.names())}."
)


def register(app: typer.Typer) -> None:
    """Add the ``change`` command to APP."""
    app.command("change")(change)


def change(
    before: Annotated[Path, typer.Argument(help="Earlier image: a raster file or a Sentinel-2 band folder.")],
    after: Annotated[Path, typer.Argument(help="Later image, put on BEFORE's grid.")],
    output: Annotated[
        Path,
        typer.Option("--output", "-o", help="MASK.png to write: 8-bit, BEFORE's size, 255 = changed, 0 = not."),
    ],
    detector: Annotated[str, typer.Option("--detector", help=DETECTOR_HELP)] = registry.AUTO,
    gsd: Annotated[
        float | None, typer.Option("--gsd", help="Metres per pixel, for images without a georeference.")
    ] = None,
    prob: Annotated[
        Path | None, typer.Option("--prob", help="Also write the change probability (float32 0-1) as a GeoTIFF.")
    ] = None,
    no_align: NoAlignOption = False,
    as_json: JsonOption = False,
) -> None:
    """Write a change mask for BEFORE -> AFTER (pairs over 36 MP are streamed tile by tile, unaligned)."""
    from sitewatch.change.compare import compare, compare_large, contract_summary, is_large, write_products

    if is_large(before):
        large = compare_large(before, after, output, prob, detector=detector, gsd=gsd)
        summary = contract_summary(large.detector, large.width, large.height, large.changed_fraction, large.seconds)
    else:
        product = compare(before, after, detector=detector, gsd=gsd, align=not no_align)
        write_products(product, output, prob)
        summary = product.summary()
    if as_json:
        print_json(summary)
    else:
        typer.echo(
            f"{output}: {summary['changed_fraction']:.2%} of {summary['width']}x{summary['height']} px "
            f"changed ({summary['detector']}, {summary['seconds']:.2f} s)"
        )
