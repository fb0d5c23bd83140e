"""Evaluation: retrieval mAP, nearest-neighbour accuracy, batch effects, gene families,
percent replicating, one long-format table per model, and the comparison of models.

Rules in ``workflow/rules/evaluate.smk``.
"""
