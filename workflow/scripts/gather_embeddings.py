"""Gather a plate's embedding shards and average sites to wells (thin wrapper)."""

from typing import TYPE_CHECKING

from paintssl.embed.tiles import EmbedConfig
from paintssl.embed.wells import gather_embeddings
from paintssl.joblog import log_to_file

if TYPE_CHECKING:  # editor/type-checker stub; Snakemake injects the real object
    from snakemake.script import snakemake

log_to_file(snakemake.log[0])

gather_embeddings(
    shards=list(snakemake.input.shards),
    out=snakemake.output.embeddings,
    method=EmbedConfig(**snakemake.params.embed).well_aggregation,
)
