"""Figures: UMAPs, gene-family heatmaps, retrieval and F1 comparisons, training curves.

Rules in ``workflow/rules/figures.smk``.
"""
