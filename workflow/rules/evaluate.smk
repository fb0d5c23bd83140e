rule evaluate_model:
    input:
        **{level: f"results/profiles/{{model}}/{level}.parquet" for level in PROFILE_LEVELS},
    output:
        table=report(
            "results/eval/{model}.tsv",
            caption="../report/evaluate_model.rst",
            category="Evaluation",
            subcategory="{model}",
        ),
        ap="results/eval/{model}/ap.parquet",
        f1="results/eval/{model}/f1.tsv",
    log:
        "logs/evaluate_model/{model}.log",
    benchmark:
        "benchmarks/evaluate_model/{model}.tsv"
    conda:
        "../envs/profiling.yaml"
    threads: 1
    resources:
        mem_mb=8000,
        runtime=60,
    params:
        eval={
            key: config["eval"][key]
            for key in (
                "null_size",
                "max_silhouette",
                "max_replicating",
                "transfer_k",
                "transfer_folds",
            )
        },
        seed=lookup(dpath="seed", within=config),
        profile_chain=get_profile_chain,
    script:
        "../scripts/evaluate_model.py"


rule compare_models:
    input:
        tables=collect("results/eval/{model}.tsv", model=RUN_MODELS),
        ap=collect("results/eval/{model}/ap.parquet", model=RUN_MODELS),
    output:
        summary=report(
            "results/eval/summary.tsv",
            caption="../report/compare_models.rst",
            category="Comparison",
        ),
        wilcoxon=report(
            "results/eval/wilcoxon.tsv",
            caption="../report/wilcoxon.rst",
            category="Comparison",
        ),
        comparison=report(
            "results/eval/comparison.tsv",
            caption="../report/comparison.rst",
            category="Comparison",
        ),
    log:
        "logs/compare_models/compare_models.log",
    benchmark:
        "benchmarks/compare_models/compare_models.tsv"
    conda:
        "../envs/profiling.yaml"
    resources:
        mem_mb=4000,
        runtime=10,
    params:
        models=RUN_MODELS,
        baselines=lookup(dpath="eval/baselines", within=config),
        reference=lookup(dpath="eval/reference", within=config),
    script:
        "../scripts/compare_models.py"


ABLATION = config["ablation"]
ABLATION_MODELS = (
    [ABLATION["full"], *ABLATION["variants"].values(), *ABLATION.get("beside", [])]
    if ABLATION
    else []
)
ABLATION_OUTPUTS = (
    ["results/eval/ablation.tsv", "results/figures/ablation.png"]
    if ABLATION and set(ABLATION_MODELS) <= set(RUN_MODELS)
    else []
)


rule ablation:
    input:
        summary="results/eval/summary.tsv",
    output:
        table=report(
            "results/eval/ablation.tsv",
            caption="../report/ablation.rst",
            category="Comparison",
        ),
        png=report(
            "results/figures/ablation.png",
            caption="../report/ablation.rst",
            category="Comparison",
            labels={"figure": "ablation"},
        ),
        pdf="results/figures/ablation.pdf",
    log:
        "logs/ablation/ablation.log",
    benchmark:
        "benchmarks/ablation/ablation.tsv"
    conda:
        "../envs/profiling.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        ablation=ABLATION,
    script:
        "../scripts/ablation.py"
