"""All models side by side, and paired Wilcoxon tests on per-perturbation AP (thin wrapper)."""

import logging
import sys
from typing import TYPE_CHECKING

from paintssl.metrics_compare import compare_models

if TYPE_CHECKING:  # editor/type-checker stub; Snakemake injects the real object
    from snakemake.script import snakemake

sys.stderr = open(snakemake.log[0], "w", buffering=1)  # noqa: SIM115 - tracebacks go to the log
logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(message)s")

compare_models(
    tables=dict(zip(snakemake.params.models, snakemake.input.tables, strict=True)),
    ap_tables=dict(zip(snakemake.params.models, snakemake.input.ap, strict=True)),
    summary_out=snakemake.output.summary,
    wilcoxon_out=snakemake.output.wilcoxon,
    baselines=snakemake.params.baselines,
)
