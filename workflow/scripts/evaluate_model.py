"""Score one model: copairs mAP and the other metrics, into one TSV (thin wrapper)."""

import logging
import sys
from typing import TYPE_CHECKING

from paintssl.evaluate import evaluate_model

if TYPE_CHECKING:  # editor/type-checker stub; Snakemake injects the real object
    from snakemake.script import snakemake

sys.stderr = open(snakemake.log[0], "w", buffering=1)  # noqa: SIM115 - tracebacks go to the log
logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(message)s")

evaluate_model(
    profiles=dict(snakemake.input.items()),
    out_tsv=snakemake.output.table,
    null_size=snakemake.params.null_size,
    seed=snakemake.params.seed,
    ap_out=snakemake.output.ap,
    f1_out=snakemake.output.f1,
    max_silhouette=snakemake.params.max_silhouette,
)
