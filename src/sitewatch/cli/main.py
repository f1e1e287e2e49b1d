"""Entry point: builds the Typer app from one module per command group, and turns errors into one line.

Heavy imports (rasterio, numpy, scikit-image) happen inside commands, so ``--help`` stays fast.
"""

from __future__ import annotations

import logging
import sys
import warnings

import typer

from sitewatch import __version__
from sitewatch.errors import SitewatchError, SitewatchWarning

app = typer.Typer(
    name="sitewatch",
    help="Watch named sites in satellite and aerial imagery: what changed there, and when.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"sitewatch {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    verbose: int = typer.Option(0, "--verbose", "-v", count=True, help="More log output (-vv for debug)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Only errors."),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Show version."),
) -> None:
    level = logging.ERROR if quiet else (logging.WARNING, logging.INFO, logging.DEBUG)[min(verbose, 2)]
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    if quiet:
        warnings.simplefilter("ignore", SitewatchWarning)


def _register_commands() -> None:
    from sitewatch.cli import commands

    commands.register(app)


def _show_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: object = None,
    line: str | None = None,
) -> None:
    print(f"warning: {message}", file=sys.stderr)


def main() -> None:
    """Run the CLI; a SitewatchError becomes one line on stderr and exit status 1.

    Typer (click) handles usage errors itself (exit 2); anything unforeseen is one line too, with the
    traceback logged at debug level (``-vv``).
    """
    _register_commands()
    warnings.showwarning = _show_warning
    try:
        app()
    except SitewatchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        sys.exit(130)
    except Exception as exc:
        logging.getLogger(__name__).debug("unexpected error", exc_info=True)
        print(f"error: unexpected {type(exc).__name__}: {exc} (run with -vv for details)", file=sys.stderr)
        sys.exit(2)
