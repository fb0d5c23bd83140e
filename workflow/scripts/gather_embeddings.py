"""Gather a plate's embedding shards and average sites to wells (thin wrapper)."""

from typing import TYPE_CHECKING

from paintssl.joblog import log_to_file
from paintssl.wells import gather_embeddings

if TYPE_CHECKING:  # editor/type-checker stub; Snakemake injects the real object
    from snakemake.script import snakemake

log_to_file(snakemake.log[0])

gather_embeddings(
    shards=list(snakemake.input.shards),
    out=snakemake.output.embeddings,
    method=snakemake.params.well_aggregation,
)
