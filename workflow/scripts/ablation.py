"""The ablation table and its figure (thin wrapper)."""

from typing import TYPE_CHECKING

from paintssl.evaluate.ablation import write_ablation
from paintssl.figures.ablation import plot_ablation
from paintssl.joblog import log_to_file

if TYPE_CHECKING:  # editor/type-checker stub; Snakemake injects the real object
    from snakemake.script import snakemake

log_to_file(snakemake.log[0])

ablation = snakemake.params.ablation
table = write_ablation(
    summary=snakemake.input.summary,
    out=snakemake.output.table,
    full=ablation["full"],
    variants=ablation["variants"],
    beside=ablation.get("beside", []),
)
plot_ablation(table, out_png=snakemake.output.png, out_pdf=snakemake.output.pdf)
