"""Built-in synthetic JUMP-like dataset: config, layout and metadata, rendered pixels, plates.

Rules in ``workflow/rules/synthetic.smk``.
"""
