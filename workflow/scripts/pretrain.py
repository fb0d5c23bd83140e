"""Pretrain (or, for method random, initialise) one model and export its backbone (thin wrapper).

With ``resources: gpu=N`` (N > 1) and CUDA, the job runs as N torchrun ranks.
"""

from typing import TYPE_CHECKING

from paintssl.joblog import log_to_file
from paintssl.pretrain.backbones import resolve_device
from paintssl.pretrain.launch import launch_pretrain
from paintssl.pretrain.run import ModelConfig

if TYPE_CHECKING:  # editor/type-checker stub; Snakemake injects the real object
    from snakemake.script import snakemake

log_to_file(snakemake.log[0])

device = resolve_device(snakemake.resources.gpu)
launch_pretrain(
    processes=snakemake.resources.gpu if device == "cuda" else 1,  # >1: torchrun, a rank per GPU
    manifests=list(snakemake.input.manifests),
    weights=snakemake.output.weights,
    model=ModelConfig(**snakemake.params.model),
    channels=snakemake.params.channels,
    seed=snakemake.params.seed,
    metrics=snakemake.output.metrics,
    ckpt=snakemake.params.ckpt,
    device=device,
    num_workers=snakemake.threads - 1,
    name=snakemake.wildcards.model,
)
