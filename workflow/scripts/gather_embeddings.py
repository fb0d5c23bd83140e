"""Gather a plate's embedding shards and average sites to wells (thin wrapper)."""

import logging
import sys
from typing import TYPE_CHECKING

from paintssl.embed import gather_embeddings

if TYPE_CHECKING:  # editor/type-checker stub; Snakemake injects the real object
    from snakemake.script import snakemake

sys.stderr = open(snakemake.log[0], "w", buffering=1)  # noqa: SIM115 - tracebacks go to the log
logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(message)s")

gather_embeddings(
    shards=list(snakemake.input.shards),
    out=snakemake.output.embeddings,
    method=snakemake.params.well_aggregation,
)
