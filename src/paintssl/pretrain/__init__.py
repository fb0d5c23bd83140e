"""SSL pretraining: objectives (a registry), augmentations, training data, one trainer.

Rules in ``workflow/rules/pretrain.smk``; ``python -m paintssl.pretrain`` runs under torchrun.
"""
