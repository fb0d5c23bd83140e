"""Annotate and normalise the well profiles of one model (thin wrapper)."""

import logging
import sys
from typing import TYPE_CHECKING

from paintssl.profiles import normalize_profiles

if TYPE_CHECKING:  # editor/type-checker stub; Snakemake injects the real object
    from snakemake.script import snakemake

sys.stderr = open(snakemake.log[0], "w", buffering=1)  # noqa: SIM115 - tracebacks go to the log
logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(message)s")

normalize_profiles(
    embeddings=list(snakemake.input.embeddings),
    metadata=snakemake.input.metadata,
    out=snakemake.output.profiles,
    **snakemake.params.settings,
)
