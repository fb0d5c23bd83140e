"""Per-plate preprocessing: the site codec and cell rule, illumination, clipping, merged TIFFs.

Rules in ``workflow/rules/preprocess.smk``.
"""
