"""Training curves of one pretraining run (thin wrapper)."""

import logging
from typing import TYPE_CHECKING

from paintssl.figures.training import plot_training_curves
from paintssl.joblog import log_to_file
from paintssl.pretrain.collapse import CollapseConfig
from paintssl.pretrain.config import ModelConfig

if TYPE_CHECKING:  # editor/type-checker stub; Snakemake injects the real object
    from snakemake.script import snakemake

log_to_file(snakemake.log[0])

model = ModelConfig(**snakemake.params.model)
verdict = plot_training_curves(
    metrics_jsonl=snakemake.input.metrics,
    out_png=snakemake.output.png,
    out_pdf=snakemake.output.pdf,
    collapse=CollapseConfig.from_value(model.train.get("collapse")),
    model=snakemake.wildcards.model,
)
logging.info("%s", verdict)
