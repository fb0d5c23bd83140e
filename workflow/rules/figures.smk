# Figures (PNG + PDF) of every model and of the comparison, marked for `snakemake --report`.
# Only SSL models are trained: baselines (random, random_features, cellprofiler, external,
# oracle) have no curves, nor do models that embed with another's weights (weights_from).
TRAINED_MODELS = [
    m
    for m in RUN_MODELS
    if is_trained(config["models"][m]["method"]) and WEIGHTS_FROM.get(m, m) == m
]
FIGURES = [
    "results/figures/umap.png",
    *collect("results/figures/gene_families/{model}.png", model=RUN_MODELS),
    *collect("results/figures/training/{model}.png", model=TRAINED_MODELS),
    "results/figures/map_vs_nsb.png",
    "results/figures/f1_at_k.png",
]


rule plot_umap:
    input:
        **{model: f"results/profiles/{model}/well.parquet" for model in RUN_MODELS},
    output:
        png=report(
            "results/figures/umap.png",
            caption="../report/plot_umap.rst",
            category="Comparison",
            labels={"figure": "UMAP of well profiles"},
        ),
        pdf="results/figures/umap.pdf",
    log:
        "logs/plot_umap/plot_umap.log",
    benchmark:
        "benchmarks/plot_umap/plot_umap.tsv"
    conda:
        "../envs/profiling.yaml"
    resources:
        mem_mb=8000,
        runtime=60,
    params:
        models=RUN_MODELS,
        umap=lookup(dpath="figures/umap", within=config),
        seed=lookup(dpath="seed", within=config),
    script:
        "../scripts/plot_umap.py"


rule plot_gene_families:
    input:
        consensus="results/profiles/{model}/consensus.parquet",
    output:
        png=report(
            "results/figures/gene_families/{model}.png",
            caption="../report/plot_gene_families.rst",
            category="Evaluation",
            subcategory="{model}",
            labels={"model": "{model}", "figure": "gene-family clustering"},
        ),
        pdf="results/figures/gene_families/{model}.pdf",
    log:
        "logs/plot_gene_families/{model}.log",
    benchmark:
        "benchmarks/plot_gene_families/{model}.tsv"
    conda:
        "../envs/profiling.yaml"
    resources:
        mem_mb=4000,
        runtime=10,
    script:
        "../scripts/plot_gene_families.py"


rule plot_training_curves:
    input:
        metrics="results/pretrain/{model}/metrics.jsonl",
    output:
        png=report(
            "results/figures/training/{model}.png",
            caption="../report/plot_training_curves.rst",
            category="Evaluation",
            subcategory="{model}",
            labels={"model": "{model}", "figure": "training curves"},
        ),
        pdf="results/figures/training/{model}.pdf",
    log:
        "logs/plot_training_curves/{model}.log",
    benchmark:
        "benchmarks/plot_training_curves/{model}.tsv"
    conda:
        "../envs/profiling.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        model=get_model,
    script:
        "../scripts/plot_training_curves.py"


rule plot_map_vs_nsb:
    input:
        tables=collect("results/eval/{model}.tsv", model=RUN_MODELS),
    output:
        png=report(
            "results/figures/map_vs_nsb.png",
            caption="../report/plot_map_vs_nsb.rst",
            category="Comparison",
            labels={"figure": "mAP vs nearest-neighbour accuracy"},
        ),
        pdf="results/figures/map_vs_nsb.pdf",
    log:
        "logs/plot_map_vs_nsb/plot_map_vs_nsb.log",
    benchmark:
        "benchmarks/plot_map_vs_nsb/plot_map_vs_nsb.tsv"
    conda:
        "../envs/profiling.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        models=RUN_MODELS,
    script:
        "../scripts/plot_map_vs_nsb.py"


rule plot_f1_at_k:
    input:
        tables=collect("results/eval/{model}/f1.tsv", model=RUN_MODELS),
    output:
        png=report(
            "results/figures/f1_at_k.png",
            caption="../report/plot_f1_at_k.rst",
            category="Comparison",
            labels={"figure": "F1 at k"},
        ),
        pdf="results/figures/f1_at_k.pdf",
    log:
        "logs/plot_f1_at_k/plot_f1_at_k.log",
    benchmark:
        "benchmarks/plot_f1_at_k/plot_f1_at_k.tsv"
    conda:
        "../envs/profiling.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        models=RUN_MODELS,
    script:
        "../scripts/plot_f1_at_k.py"
