"""Validate the user's well metadata table and store it as Parquet (thin wrapper)."""

import logging
import sys
from typing import TYPE_CHECKING

from paintssl.inputs import read_metadata

if TYPE_CHECKING:  # editor/type-checker stub; Snakemake injects the real object
    from snakemake.script import snakemake

sys.stderr = open(snakemake.log[0], "w", buffering=1)  # noqa: SIM115 - tracebacks go to the log
logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(message)s")

read_metadata(snakemake.input.metadata, plates=snakemake.params.plates).to_parquet(
    snakemake.output.metadata, index=False
)
