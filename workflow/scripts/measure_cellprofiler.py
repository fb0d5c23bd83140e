"""CellProfiler-style features (cp-measure) of one plate, one row per well (thin wrapper)."""

from typing import TYPE_CHECKING

from paintssl.embed.cellprofiler import CellProfilerConfig, measure_plate
from paintssl.joblog import log_to_file

if TYPE_CHECKING:  # editor/type-checker stub; Snakemake injects the real object
    from snakemake.script import snakemake

log_to_file(snakemake.log[0])

measure_plate(
    manifest=snakemake.input.manifest,
    out=snakemake.output.embeddings,
    cfg=CellProfilerConfig(**snakemake.params.model["method_params"]),
    channels=snakemake.params.channels,
    threads=snakemake.threads,
)
