"""Embed every site of one plate with one exported backbone and write its wells (thin wrapper)."""

from typing import TYPE_CHECKING

from paintssl.embed.shard import embed_plate
from paintssl.embed.tiles import EmbedConfig
from paintssl.joblog import log_to_file
from paintssl.pretrain.backbones import resolve_device

if TYPE_CHECKING:  # editor/type-checker stub; Snakemake injects the real object
    from snakemake.script import snakemake

log_to_file(snakemake.log[0])

embed_plate(
    manifest=snakemake.input.manifest,
    weights=snakemake.input.weights,
    out=snakemake.output.embeddings,
    cfg=EmbedConfig(**snakemake.params.embed),
    num_workers=snakemake.threads - 1,
    device=resolve_device(snakemake.resources.gpu),
)
