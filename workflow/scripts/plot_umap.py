"""UMAP of every run model's well profiles: target, batch, source, cell count (thin wrapper)."""

from typing import TYPE_CHECKING

from paintssl.figures.plots import UmapConfig, plot_umap
from paintssl.joblog import log_to_file

if TYPE_CHECKING:  # editor/type-checker stub; Snakemake injects the real object
    from snakemake.script import snakemake

log_to_file(snakemake.log[0])

plot_umap(
    profiles={model: snakemake.input[model] for model in snakemake.params.models},
    out_png=snakemake.output.png,
    out_pdf=snakemake.output.pdf,
    cfg=UmapConfig(**snakemake.params.umap),
    seed=snakemake.params.seed,
)
