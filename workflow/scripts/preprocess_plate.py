"""Illumination-correct, clip, scale and merge one plate into 5-channel TIFFs (thin wrapper)."""

from typing import TYPE_CHECKING

from paintssl.joblog import log_to_file
from paintssl.preprocess.plate import PreprocessConfig, preprocess_plate

if TYPE_CHECKING:  # editor/type-checker stub; Snakemake injects the real object
    from snakemake.script import snakemake

log_to_file(snakemake.log[0])

preprocess_plate(
    load_data=snakemake.input.load_data,
    source=snakemake.params.labels["source"],
    batch=snakemake.params.labels["batch"],
    out_manifest=snakemake.output.manifest,
    out_sites=snakemake.output.sites,
    cfg=PreprocessConfig(**snakemake.params.preprocess),
    channels=snakemake.params.channels,
    illum=snakemake.input.get("illum"),
    threads=snakemake.threads,
    on_bad_site=snakemake.params.on_bad_site,
    out_skipped=snakemake.output.skipped,
)
