"""Evaluation: retrieval, neighbours, batch effects, families, replication, comparison.

Retrieval mAP, nearest-neighbour accuracy, batch effects, gene families and percent
replicating go into one long-format table per model; ``compare`` sets the models side by side.

Rules in ``workflow/rules/evaluate.smk``.
"""
