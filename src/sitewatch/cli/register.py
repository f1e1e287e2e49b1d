"""``sitewatch register REFERENCE MOVING``: the co-registration evaluation contract of DESIGN.md."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from sitewatch.cli.common import JsonOption, print_json


def register(app: typer.Typer) -> None:
    """Add the ``register`` command to APP."""
    app.command("register")(register_images)


def register_images(
    reference: Annotated[Path, typer.Argument(help="Reference image: any supported raster.")],
    moving: Annotated[Path, typer.Argument(help="Image to register against REFERENCE.")],
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="ALIGNED.tif: MOVING resampled once onto REFERENCE's grid."),
    ] = None,
    as_json: JsonOption = False,  # accepted as the contract says; the JSON is printed either way
) -> None:
    """Measure how MOVING is misregistered against REFERENCE; print one JSON object.

    A feature at REFERENCE pixel (x, y) appears in MOVING at (x + dx, y + dy).

    Georeferenced MOVING is first placed on REFERENCE's grid; the rest is given in pixels and metres.

    A pair that cannot be registered prints status "failed" with a reason and exits 0 (-o writes nothing).
    """
    import warnings

    from sitewatch.align.files import register_files, write_aligned
    from sitewatch.errors import SitewatchWarning

    result = register_files(reference, moving)
    if output is not None and result.registration.ok:
        write_aligned(result, output)
    elif output is not None:
        reason = result.registration.reason
        warnings.warn(f"{output}: not written, the registration failed ({reason})", SitewatchWarning, stacklevel=1)
    print_json(result.to_json())
