"""Benchmark harness for postfix-sts: ``python bench/run.py [--quick]``.

See docs/benchmarks.md.
"""
