"""Embedding: tiles of a site, sharded forward passes, and the tile -> site -> well mean.

Rules in ``workflow/rules/embed.smk``. ``tiles``, ``wells``, ``random_features`` (the seeded
noise of the ``random_features`` baseline) and ``oracle`` (the synthetic ground truth as
features, the ceiling) need no torch (the gather jobs start fast); ``shard``
runs the exported backbone, whose tile features (blocks, tokens, flips) ``features`` takes.
``segment`` and ``cellprofiler`` are the CellProfiler-style baseline (cp-measure features of
segmented cells, per-well medians).
"""
