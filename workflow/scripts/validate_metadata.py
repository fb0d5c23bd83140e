"""Validate the user's well metadata table and store it as Parquet (thin wrapper)."""

from typing import TYPE_CHECKING

from paintssl.inputs import validate_metadata
from paintssl.joblog import log_to_file

if TYPE_CHECKING:  # editor/type-checker stub; Snakemake injects the real object
    from snakemake.script import snakemake

log_to_file(snakemake.log[0])

validate_metadata(
    path=snakemake.input.metadata,
    plates=snakemake.params.plates,
    out=snakemake.output.metadata,
)
