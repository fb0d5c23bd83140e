"""Embed one shard of one plate with one exported backbone (thin wrapper)."""

from typing import TYPE_CHECKING

from paintssl.backbones import resolve_device
from paintssl.embed import embed_shard
from paintssl.joblog import log_to_file

if TYPE_CHECKING:  # editor/type-checker stub; Snakemake injects the real object
    from snakemake.script import snakemake

log_to_file(snakemake.log[0])

embed_shard(
    manifest=snakemake.input.manifest,
    weights=snakemake.input.weights,
    out=snakemake.output.embeddings,
    shard=int(snakemake.wildcards.shard),
    n_shards=snakemake.params.n_shards,
    stride=snakemake.params.stride,
    batch_size=snakemake.params.batch_size,
    num_workers=snakemake.threads - 1,
    device=resolve_device(snakemake.resources.gpu),
)
