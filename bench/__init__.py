"""Benchmarks for sitewatch, run from the repository root: ``python -m bench NAME [options]``.

Each benchmark is one module with ``add_arguments(parser)`` and ``run(args) -> int``, listed in
``bench.__main__.BENCHMARKS``; its core measuring function returns numbers, so tests can call it
on a tiny input without parsing any output. Every figure the project quotes comes from here.
"""

from __future__ import annotations

import argparse
from pathlib import Path

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
