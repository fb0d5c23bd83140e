"""Render one plate of the built-in synthetic JUMP-like dataset (thin wrapper)."""

import logging
import sys
from typing import TYPE_CHECKING

from paintssl.synthetic import SyntheticConfig, render_plate

if TYPE_CHECKING:  # editor/type-checker stub; Snakemake injects the real object
    from snakemake.script import snakemake

sys.stderr = open(snakemake.log[0], "w", buffering=1)  # noqa: SIM115 - tracebacks go to the log
logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(message)s")

render_plate(
    cfg=SyntheticConfig(**snakemake.params.synthetic),
    plate=snakemake.wildcards.plate,
    load_data_out=snakemake.output.load_data,
    images_dir=snakemake.output.images,
)
