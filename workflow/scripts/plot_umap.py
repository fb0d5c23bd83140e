"""UMAP of one model's well profiles: target, batch, source, cell count (thin wrapper)."""

from typing import TYPE_CHECKING

from paintssl.joblog import log_to_file
from paintssl.plots import plot_umap

if TYPE_CHECKING:  # editor/type-checker stub; Snakemake injects the real object
    from snakemake.script import snakemake

log_to_file(snakemake.log[0])

plot_umap(
    profiles=snakemake.input.profiles,
    out_png=snakemake.output.png,
    out_pdf=snakemake.output.pdf,
    title=snakemake.wildcards.model,
    n_pcs=snakemake.params.n_pcs,
    n_neighbors=snakemake.params.n_neighbors,
    min_dist=snakemake.params.min_dist,
    seed=snakemake.params.seed,
    top=snakemake.params.top,
)
