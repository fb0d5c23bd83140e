"""paintssl: Cell Painting self-supervised representations -> JUMP-style profiles -> metrics."""

from snakemake.utils import min_version

min_version("9.19")


configfile: "config/config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/synthetic.smk"
include: "workflow/rules/qc.smk"
include: "workflow/rules/preprocess.smk"
include: "workflow/rules/pretrain.smk"
include: "workflow/rules/embed.smk"
include: "workflow/rules/profiles.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/figures.smk"


# Single jobs of seconds: on a cluster, Snakemake runs them itself instead of submitting them.
localrules:
    validate_metadata,
    render_synthetic_metadata,
    compare_models,


rule all:
    default_target: True
    input:
        collect("results/eval/{model}.tsv", model=RUN_MODELS),
        "results/eval/summary.tsv",
        FIGURES,
        ABLATION_OUTPUTS,


rule validate:
    input:
        "results/qc/preflight.tsv",
