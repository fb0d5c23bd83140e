"""Embed one shard of one plate with one exported backbone (thin wrapper)."""

from typing import TYPE_CHECKING

from paintssl.embed.shard import embed_shard
from paintssl.embed.tiles import EmbedConfig
from paintssl.joblog import log_to_file
from paintssl.pretrain.backbones import resolve_device

if TYPE_CHECKING:  # editor/type-checker stub; Snakemake injects the real object
    from snakemake.script import snakemake

log_to_file(snakemake.log[0])

embed_shard(
    manifest=snakemake.input.manifest,
    weights=snakemake.input.weights,
    out=snakemake.output.embeddings,
    shard=int(snakemake.wildcards.shard),
    cfg=EmbedConfig(**snakemake.params.embed),
    num_workers=snakemake.threads - 1,
    device=resolve_device(snakemake.resources.gpu),
)
