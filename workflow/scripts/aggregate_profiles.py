"""Aggregate well profiles to batch, source and consensus levels (thin wrapper)."""

import logging
import sys
from typing import TYPE_CHECKING

from paintssl.profiles import aggregate_profiles

if TYPE_CHECKING:  # editor/type-checker stub; Snakemake injects the real object
    from snakemake.script import snakemake

sys.stderr = open(snakemake.log[0], "w", buffering=1)  # noqa: SIM115 - tracebacks go to the log
logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(message)s")

aggregate_profiles(
    well=snakemake.input.profiles,
    outs=dict(snakemake.output.items()),
)
