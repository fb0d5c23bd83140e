"""Render the well metadata and ground truth of the synthetic dataset (thin wrapper)."""

from typing import TYPE_CHECKING

from paintssl.joblog import log_to_file
from paintssl.synthetic.config import SyntheticConfig
from paintssl.synthetic.layout import render_metadata

if TYPE_CHECKING:  # editor/type-checker stub; Snakemake injects the real object
    from snakemake.script import snakemake

log_to_file(snakemake.log[0])

render_metadata(
    # params.synthetic lacks the split (RENDERING): rendering does not depend on it, and the
    # default split (1 eval plate per batch) is invalid when plates_per_batch is 1.
    cfg=SyntheticConfig(**{**snakemake.params.synthetic, "eval_plates_per_batch": 0}),
    metadata_out=snakemake.output.metadata,
    truth_out=snakemake.output.truth,
)
