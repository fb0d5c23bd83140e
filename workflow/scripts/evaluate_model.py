"""Score one model: copairs mAP and the other metrics, into one TSV (thin wrapper)."""

from typing import TYPE_CHECKING

from paintssl.evaluate.model import EvalConfig, evaluate_model
from paintssl.joblog import log_to_file

if TYPE_CHECKING:  # editor/type-checker stub; Snakemake injects the real object
    from snakemake.script import snakemake

log_to_file(snakemake.log[0])

evaluate_model(
    profiles=dict(snakemake.input.items()),
    out_tsv=snakemake.output.table,
    cfg=EvalConfig(**snakemake.params.eval),
    seed=snakemake.params.seed,
    ap_out=snakemake.output.ap,
    f1_out=snakemake.output.f1,
    profile_chain=snakemake.params.profile_chain,
)
