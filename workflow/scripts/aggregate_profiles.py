"""Aggregate well profiles to batch, source and consensus levels (thin wrapper)."""

from typing import TYPE_CHECKING

from paintssl.joblog import log_to_file
from paintssl.profiles.aggregate import aggregate_profiles

if TYPE_CHECKING:  # editor/type-checker stub; Snakemake injects the real object
    from snakemake.script import snakemake

log_to_file(snakemake.log[0])

aggregate_profiles(
    well=snakemake.input.profiles,
    outs=dict(snakemake.output.items()),
)
