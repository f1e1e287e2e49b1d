"""Benchmarks for sitewatch, run from the repository root: ``python -m bench NAME [options]``.

Each benchmark is one module with ``add_arguments(parser)`` and ``run(args) -> int``, listed in
``bench.__main__.BENCHMARKS``; its core measuring function returns numbers, so tests can call it
on a tiny input without parsing any output. Every figure the project quotes comes from here.
"""
