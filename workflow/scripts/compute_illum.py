"""Compute a per-plate, per-channel illumination function (thin wrapper)."""

import logging
import sys
from typing import TYPE_CHECKING

from paintssl.illum import compute_illum

if TYPE_CHECKING:  # editor/type-checker stub; Snakemake injects the real object
    from snakemake.script import snakemake

sys.stderr = open(snakemake.log[0], "w", buffering=1)  # noqa: SIM115 - tracebacks go to the log
logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(message)s")

compute_illum(
    load_data=snakemake.input.load_data,
    channels=snakemake.params.channels,
    out_npy=snakemake.output.illum,
    threads=snakemake.threads,
)
