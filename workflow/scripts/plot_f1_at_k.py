"""F1 at k curves of every model (thin wrapper)."""

from typing import TYPE_CHECKING

from paintssl.figures.plots import plot_f1_at_k
from paintssl.joblog import log_to_file

if TYPE_CHECKING:  # editor/type-checker stub; Snakemake injects the real object
    from snakemake.script import snakemake

log_to_file(snakemake.log[0])

plot_f1_at_k(
    tables=dict(zip(snakemake.params.models, snakemake.input.tables, strict=True)),
    out_png=snakemake.output.png,
    out_pdf=snakemake.output.pdf,
)
