"""Embedding: tiles of a site, sharded forward passes, and the tile -> site -> well mean.

Rules in ``workflow/rules/embed.smk``. ``tiles`` and ``wells`` need no torch (the gather jobs
start fast); ``shard`` runs the exported backbone.
"""
