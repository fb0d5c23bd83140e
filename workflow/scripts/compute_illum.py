"""Compute a per-plate, per-channel illumination function (thin wrapper)."""

from typing import TYPE_CHECKING

from paintssl.joblog import log_to_file
from paintssl.preprocess.illum import compute_illum

if TYPE_CHECKING:  # editor/type-checker stub; Snakemake injects the real object
    from snakemake.script import snakemake

log_to_file(snakemake.log[0])

compute_illum(
    load_data=snakemake.input.load_data,
    channels=snakemake.params.channels,
    out_npy=snakemake.output.illum,
    threads=snakemake.threads,
    on_bad_site=snakemake.params.on_bad_site,
)
