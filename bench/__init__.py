"""Benchmarks for sitewatch, run from the repository root: ``python -m bench NAME [options]``.

Each benchmark is one module with ``add_arguments(parser)`` and ``run(args) -> int``, listed in
``bench.__main__.BENCHMARKS``; its core measuring function returns numbers, so tests can call it
on a tiny input without parsing any output. Every figure the project quotes comes from here.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol, TypeVar

from sitewatch.errors import SitewatchError

#: The shared sample datasets beside the checkout (real imagery where a benchmark can use it).
DEFAULT_DATASETS = Path(__file__).resolve().parents[2] / "shared" / "datasets"


def add_source_options(parser: argparse.ArgumentParser, generated: str) -> None:
    """``--datasets``, ``--no-datasets`` (GENERATED says what is used instead) and ``--json``."""
    parser.add_argument(
        "--datasets",
        type=Path,
        default=DEFAULT_DATASETS,
        help="Shared datasets folder; its Joplin pre scene is used when present (default: ../shared/datasets).",
    )
    parser.add_argument("--no-datasets", action="store_true", help=f"{generated} only.")
    parser.add_argument("--json", action="store_true", help="Print one JSON object instead of the table.")


class Measured(Protocol):
    """A benchmark's result: numbers a test can read, and the JSON ``--json`` prints."""

    def to_dict(self) -> dict[str, Any]: ...


M = TypeVar("M", bound=Measured)


def print_result(measure: Callable[[], M], as_json: bool, format_table: Callable[[M], str]) -> int:
    """Run MEASURE and print its result as JSON or a table; a refused input is one line on stderr, exit 1."""
    try:
        result = measure()
    except SitewatchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(result.to_dict()) if as_json else format_table(result))
    return 0
