"""Annotate and normalise the well profiles of one model (thin wrapper)."""

from typing import TYPE_CHECKING

from paintssl.joblog import log_to_file
from paintssl.profiles.normalize import ProfileConfig, normalize_profiles

if TYPE_CHECKING:  # editor/type-checker stub; Snakemake injects the real object
    from snakemake.script import snakemake

log_to_file(snakemake.log[0])

normalize_profiles(
    embeddings=list(snakemake.input.embeddings),
    metadata=snakemake.input.metadata,
    out=snakemake.output.profiles,
    cfg=ProfileConfig(**snakemake.params.profiles),
    steps=snakemake.params.steps,
)
