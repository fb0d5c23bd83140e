"""Benchmark scripts (run from the repository root: ``python -m bench.<script>``); not tests.

Snakemake writes its per-rule timing tables to ``benchmarks/`` (git-ignored).
"""
