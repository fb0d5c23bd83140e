"""Profiles: annotation and normalisation of well profiles, and replicate-level aggregation.

Rules in ``workflow/rules/profiles.smk``.
"""
