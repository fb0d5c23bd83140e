"""Embedding: tiles of a site, sharded forward passes, and the tile -> site -> well mean.

Rules in ``workflow/rules/embed.smk``. ``tiles`` and ``wells`` need no torch (the gather jobs
start fast); ``shard`` runs the exported backbone. ``segment`` and ``cellprofiler`` are the
CellProfiler-style baseline (cp-measure features of segmented cells, one row per well); no
rule runs them yet.
"""
