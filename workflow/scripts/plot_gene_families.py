"""Gene-family clustering heatmap of one model's consensus profiles (thin wrapper)."""

from typing import TYPE_CHECKING

from paintssl.figures.plots import plot_gene_families
from paintssl.joblog import log_to_file

if TYPE_CHECKING:  # editor/type-checker stub; Snakemake injects the real object
    from snakemake.script import snakemake

log_to_file(snakemake.log[0])

plot_gene_families(
    consensus=snakemake.input.consensus,
    out_png=snakemake.output.png,
    out_pdf=snakemake.output.pdf,
    title=snakemake.wildcards.model,
)
