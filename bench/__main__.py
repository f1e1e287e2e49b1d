"""``python -m bench NAME [options]``: dispatch to one named benchmark module."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from typing import Protocol, cast

#: Benchmark name -> module. A new benchmark is one new module and one line here.
BENCHMARKS: dict[str, str] = {
    "ingest": "bench.ingest",
    "align": "bench.align",
    "change": "bench.change",
    "detect": "bench.detect",
    "tiles": "bench.tiles",
}


class Benchmark(Protocol):
    """What a benchmark module provides."""

    __doc__: str | None

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        """Add the benchmark's own options."""

    def run(self, args: argparse.Namespace) -> int:
        """Run it with the parsed options; returns the exit status."""


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the benchmark name and its options, then run it."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    commands = parser.add_subparsers(dest="benchmark", required=True, metavar="BENCHMARK")
    for name, module_name in BENCHMARKS.items():
        module = cast(Benchmark, importlib.import_module(module_name))
        doc = module.__doc__ or name
        sub = commands.add_parser(name, help=doc.splitlines()[0], description=doc)
        module.add_arguments(sub)
        sub.set_defaults(run=module.run)
    args = parser.parse_args(argv)
    status: int = args.run(args)
    return status


if __name__ == "__main__":
    sys.exit(main())
