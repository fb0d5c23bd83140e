"""Seeded N(0, 1) well features of one plate for a random_features model (thin wrapper)."""

from typing import TYPE_CHECKING

from paintssl.embed.random_features import embed_random_features
from paintssl.joblog import log_to_file
from paintssl.pretrain.config import ModelConfig

if TYPE_CHECKING:  # editor/type-checker stub; Snakemake injects the real object
    from snakemake.script import snakemake

log_to_file(snakemake.log[0])

embed_random_features(
    manifest=snakemake.input.manifest,
    out=snakemake.output.embeddings,
    dim=ModelConfig(**snakemake.params.model).random_features_dim,
    seed=snakemake.params.seed,
)
