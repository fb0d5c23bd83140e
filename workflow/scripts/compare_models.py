"""All models side by side, and paired Wilcoxon tests on per-perturbation AP (thin wrapper)."""

from typing import TYPE_CHECKING

from paintssl.evaluate.compare import compare_models
from paintssl.joblog import log_to_file

if TYPE_CHECKING:  # editor/type-checker stub; Snakemake injects the real object
    from snakemake.script import snakemake

log_to_file(snakemake.log[0])

compare_models(
    tables=dict(zip(snakemake.params.models, snakemake.input.tables, strict=True)),
    ap_tables=dict(zip(snakemake.params.models, snakemake.input.ap, strict=True)),
    summary_out=snakemake.output.summary,
    wilcoxon_out=snakemake.output.wilcoxon,
    comparison_out=snakemake.output.comparison,
    baselines=snakemake.params.baselines,
    reference=snakemake.params.reference,
)
