"""Render the well metadata and ground truth of the synthetic dataset (thin wrapper)."""

import logging
import sys
from typing import TYPE_CHECKING

from paintssl.synthetic import SyntheticConfig, render_metadata

if TYPE_CHECKING:  # editor/type-checker stub; Snakemake injects the real object
    from snakemake.script import snakemake

sys.stderr = open(snakemake.log[0], "w", buffering=1)  # noqa: SIM115 - tracebacks go to the log
logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(message)s")

render_metadata(
    cfg=SyntheticConfig(**snakemake.params.synthetic),
    metadata_out=snakemake.output.metadata,
    truth_out=snakemake.output.truth,
)
