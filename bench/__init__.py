"""Benchmarks for ephemesh: ``python -m bench.run_all`` (``make bench``) runs them all.

Each module has a ``main(argv)`` that prints its figures and writes ``bench/results/<name>.json``; run one
alone with small parameters, e.g. ``python -m bench.latency --sizes 2 --messages 20``.
"""
