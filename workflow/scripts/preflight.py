"""Check the inputs of the run, image headers included, before any job reads them (thin wrapper)."""

from typing import TYPE_CHECKING

from paintssl.joblog import log_to_file
from paintssl.preflight import run_preflight

if TYPE_CHECKING:  # editor/type-checker stub; Snakemake injects the real object
    from snakemake.script import snakemake

log_to_file(snakemake.log[0])

run_preflight(
    plates=snakemake.params.plates,
    load_data=snakemake.input.load_data,
    metadata=snakemake.input.metadata,
    out=snakemake.output.findings,
    channels=snakemake.params.channels,
    threads=snakemake.threads,
    on_bad_site=snakemake.params.on_bad_site,
)
