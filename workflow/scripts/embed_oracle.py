"""The ground-truth latent of each well of one plate for an oracle model (thin wrapper)."""

from typing import TYPE_CHECKING

from paintssl.embed.oracle import embed_oracle
from paintssl.joblog import log_to_file

if TYPE_CHECKING:  # editor/type-checker stub; Snakemake injects the real object
    from snakemake.script import snakemake

log_to_file(snakemake.log[0])

embed_oracle(
    truth=snakemake.input.truth,
    manifest=snakemake.input.manifest,
    out=snakemake.output.embeddings,
)
