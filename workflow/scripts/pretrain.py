"""Pretrain (or, for method random, initialise) one model and export its backbone (thin wrapper)."""

from typing import TYPE_CHECKING

from paintssl.joblog import log_to_file
from paintssl.pretrain.backbones import resolve_device
from paintssl.pretrain.run import ModelConfig, pretrain

if TYPE_CHECKING:  # editor/type-checker stub; Snakemake injects the real object
    from snakemake.script import snakemake

log_to_file(snakemake.log[0])

pretrain(
    manifests=list(snakemake.input.manifests),
    weights=snakemake.output.weights,
    model=ModelConfig(**snakemake.params.model),
    channels=snakemake.params.channels,
    seed=snakemake.params.seed,
    metrics=snakemake.output.metrics,
    ckpt=snakemake.params.ckpt,
    device=resolve_device(snakemake.resources.gpu),
    num_workers=snakemake.threads - 1,
)
