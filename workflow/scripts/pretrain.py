"""Pretrain (or, for method random, initialise) one model and export its backbone (thin wrapper)."""

import logging
import sys
from typing import TYPE_CHECKING

from paintssl.backbones import resolve_device
from paintssl.pretrain import pretrain

if TYPE_CHECKING:  # editor/type-checker stub; Snakemake injects the real object
    from snakemake.script import snakemake

sys.stderr = open(snakemake.log[0], "w", buffering=1)  # noqa: SIM115 - tracebacks go to the log
logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(message)s")

pretrain(
    manifests=list(snakemake.input.manifests),
    weights=snakemake.output.weights,
    model=snakemake.params.model,
    channels=snakemake.params.channels,
    seed=snakemake.params.seed,
    metrics=snakemake.output.metrics,
    ckpt=snakemake.params.ckpt,
    device=resolve_device(snakemake.resources.gpu),
    num_workers=snakemake.threads - 1,
)
