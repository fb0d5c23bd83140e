"""Validate an external model's profile table and write per-plate well embeddings (thin wrapper)."""

from typing import TYPE_CHECKING

from paintssl.external import import_external_profiles
from paintssl.joblog import log_to_file

if TYPE_CHECKING:  # editor/type-checker stub; Snakemake injects the real object
    from snakemake.script import snakemake

log_to_file(snakemake.log[0])

import_external_profiles(
    profiles=snakemake.input.profiles,
    metadata=snakemake.input.metadata,
    plates=snakemake.params.plates,
    outs=list(snakemake.output.embeddings),
)
